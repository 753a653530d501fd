"""Settings of one quantization backend (models/quant.py).

Kept free of torch so the CLI and configs can name methods without importing the stack.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# The methods `quantize` knows, in the order the benchmark reports them; a config naming
# another one fails validation with the list of these.
QuantMethod = Literal["int8", "nf4", "torchao-int8", "torchao-int4", "dynamic-int8"]
METHODS: tuple[str, ...] = get_args(QuantMethod)

_BITS = {"int8": 8, "nf4": 4, "torchao-int8": 8, "torchao-int4": 4, "dynamic-int8": 8}
_BACKEND = {
    "int8": "bitsandbytes",
    "nf4": "bitsandbytes",
    "torchao-int8": "torchao",
    "torchao-int4": "torchao",
    "dynamic-int8": "torch",
}


class QuantError(RuntimeError):
    """A method unknown, or not available on this platform; the message is one line saying
    which and why (the CLI prints it as is)."""


class QuantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    method: QuantMethod = ...
    """int8 (bitsandbytes LLM.int8), nf4 (bitsandbytes 4-bit NormalFloat), torchao-int8 /
    torchao-int4 (torchao weight-only), dynamic-int8 (torch dynamic quantization: int8 weights,
    activations quantized per batch)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """nf4: dtype the 4-bit weights are dequantized to for the matmul (float32 on CPU; bfloat16 is
    faster on a GPU)."""
    double_quant: bool = True
    """nf4: quantize the per-block absmax constants too (QLoRA's double quantization; ~0.37
    bits/parameter saved)."""
    int8_threshold: float = Field(6.0, ge=0.0)
    """int8: LLM.int8 outlier threshold; activation columns above it run in 16-bit (0 turns the
    mixed-precision decomposition off)."""
    group_size: Literal[32, 64, 128, 256] = 32
    """torchao-int4: weights per quantization group (32, 64, 128 or 256; smaller is more accurate,
    with more scales to store)."""
    skip_modules: list[str] = Field(default_factory=lambda: ["lm_head"])
    """Linear layers left in full precision, by name (any module whose name ends with one of these).
    The output head stays fp32 by default: it is often tied to the input embeddings, which no
    backend quantizes."""
    device: str | None = None
    """cpu, cuda, cuda:1 ...; default: CUDA if present, else CPU."""

    @property
    def bits(self) -> int:
        """Bits per quantized weight (scales and zero points not counted)."""
        return _BITS[self.method]

    @property
    def backend(self) -> str:
        """The library that does the work: bitsandbytes, torchao or torch."""
        return _BACKEND[self.method]


def quant_config(method: str, **fields: object) -> QuantConfig:
    """A QuantConfig, with an unknown method reported as QuantError (one line)."""
    if method not in METHODS:
        raise QuantError(
            f"unknown quantization method {method!r}; expected one of {', '.join(METHODS)}"
        )
    return QuantConfig(method=method, **fields)
