"""Settings of the quantization stage (`quantize:` in a config file)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.quant_config import QuantConfig, QuantMethod


class QuantizeError(RuntimeError):
    """Nothing to quantize or evaluate on (unknown model, no gated tokens, a model that is
    already quantized). Defined here, not in tasks/quantize/quantize.py, so the CLI can name it without
    importing torch."""


GGUF_FIELDS = {"calibration", "mixed_budget", "calib_blocks", "sensitivity_blocks"}


class QuantizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # ------------------------------------------------------------------ what
    method: QuantMethod = "int8"
    """Backend of `llm4all quantize`: int8, nf4, torchao-int8, torchao-int4, dynamic-int8
    (models/quant.py), or gguf-TYPE[-mixed] with TYPE q8_0, q5_1, q5_0, q4_1 or q4_0 (one GGUF
    file, embeddings included: models/gguf_quant.py; what `llm4all export` writes)."""
    methods: list[QuantMethod] = Field(default_factory=list)
    """Methods the pipeline applies to each new student after distillation (one registered variant
    each); empty: none. Not part of the run key."""
    name: str | None = None
    """Registry name of the quantized model; default `<parent name>-<method>` (`teacher-<method>`
    for the teacher)."""

    # ------------------------------------------------------------------ backend settings
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """nf4: dtype of the matmul (float32, bfloat16 or float16)."""
    double_quant: bool = True
    """nf4: quantize the block scales too (QLoRA)."""
    int8_threshold: float = Field(6.0, ge=0.0)
    """int8: LLM.int8 outlier threshold (0: no 16-bit columns)."""
    group_size: Literal[32, 64, 128, 256] = 32
    """torchao-int4: weights per group (32, 64, 128 or 256)."""
    skip_modules: list[str] = Field(default_factory=lambda: ["lm_head"])
    """Linear layers kept in full precision, by name suffix (the head: often tied to the
    embeddings)."""
    device: str | None = None
    """cpu, cuda ...; default: CUDA if present."""

    # ------------------------------------------------------------------ gguf-* methods
    calibration: Literal["gptq", "imatrix", "rtn"] = "gptq"
    """Below 8 bits: gptq (GPTQ into GGML blocks), imatrix (block scales searched, weighted by
    the calibration inputs' mean square) or rtn (round to nearest, no data). q8_0: always rtn."""
    mixed_budget: float = Field(0.16, gt=0.0, le=1.0)
    """gguf-*-mixed: the quantized tensors' bytes may reach this fraction of their fp32 bytes
    (q4_0 everywhere is 0.141x, q5_0 0.172x, q8_0 0.266x); the tensors that measure most
    sensitive per extra byte get the higher types."""
    calib_blocks: int = Field(16, ge=1)
    """Training blocks (never held-out ones) whose inputs GPTQ and imatrix are computed on."""
    sensitivity_blocks: int = Field(4, ge=1)
    """Further training blocks on which -mixed measures each tensor's sensitivity (one forward
    pass per tensor)."""

    # ------------------------------------------------------------------ evaluation
    eval_blocks: int | None = Field(64, ge=1)
    """Validation token blocks the perplexities are measured on (the first N of the dataset's gated
    tokens snapshots); None: all of them."""
    batch_blocks: int = Field(4, ge=1)
    """Blocks per forward pass in the evaluation."""
    speed_blocks: int = Field(4, ge=1)
    """Blocks of one timed forward pass (forward tokens/s)."""
    speed_tokens: int = Field(32, ge=1)
    """Greedy tokens generated, batch 1, to time generation tokens/s."""

    def quant_config(self, method: str | None = None) -> QuantConfig:
        """The backend settings for `method` (default: `self.method`)."""
        return QuantConfig(
            method=method or self.method,
            compute_dtype=self.compute_dtype,
            double_quant=self.double_quant,
            int8_threshold=self.int8_threshold,
            group_size=self.group_size,
            skip_modules=list(self.skip_modules),
            device=self.device,
            calibration=self.calibration,
            mixed_budget=self.mixed_budget,
        )

    def config_hash(self) -> str:
        """What determines the quantized weights and their evaluation (not `methods`, the
        name, the device or the timing settings; the gguf-* settings only for gguf-*)."""
        skip = {"methods", "name", "device", "speed_blocks", "speed_tokens", "batch_blocks"}
        if not self.method.startswith("gguf-"):
            skip |= GGUF_FIELDS
        elif not self.method.endswith("-mixed"):
            skip |= {"mixed_budget", "sensitivity_blocks"}
        payload = self.model_dump(exclude=skip)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
