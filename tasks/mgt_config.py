"""Settings of the machine-generated-text score (`dedup.mgt` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MgtConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Score every row with Fast-DetectGPT (one forward pass of the scoring LM "
        "per text; off by default because it is the costliest filter).",
    )
    model: str | None = Field(
        None, description="Scoring LM (folder, .gguf, pkg:NAME or HF id); default the teacher."
    )
    max_tokens: int = Field(256, ge=2, description="Tokens of each text that are scored.")
    batch_size: int = Field(8, ge=1, description="Texts per forward pass.")
    threshold: float | None = Field(
        None,
        description="Rows scoring above this are marked `machine_generated`; None: score only "
        "(set it from a calibration on human-written text).",
    )
