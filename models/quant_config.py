"""Settings of one quantization backend (models/quant.py).

Kept free of torch so the CLI and configs can name methods without importing the stack.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# The methods `quantize` knows, in the order the benchmark reports them; a config naming
# another one fails validation with the list of these. gguf-TYPE writes one GGUF file (every
# 2-D tensor, the embeddings included, in GGML blocks of TYPE: models/gguf_quant.py);
# gguf-TYPE-mixed raises the tensors that measure most sensitive to higher types within a byte
# budget.
QuantMethod = Literal[
    "int8", "nf4", "torchao-int8", "torchao-int4", "dynamic-int8",
    "gguf-q8_0", "gguf-q5_1", "gguf-q5_0", "gguf-q4_1", "gguf-q4_0",
    "gguf-q5_1-mixed", "gguf-q5_0-mixed", "gguf-q4_1-mixed", "gguf-q4_0-mixed",
]  # fmt: skip
METHODS: tuple[str, ...] = get_args(QuantMethod)
GGUF_TYPES = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0")  # the block types a GGUF export writes

_BITS = {"int8": 8, "nf4": 4, "torchao-int8": 8, "torchao-int4": 4, "dynamic-int8": 8}
_BITS |= {m: int(m.split("-")[1][1]) for m in METHODS if m.startswith("gguf-")}
_BACKEND = {
    "int8": "bitsandbytes",
    "nf4": "bitsandbytes",
    "torchao-int8": "torchao",
    "torchao-int4": "torchao",
    "dynamic-int8": "torch",
}
_BACKEND |= {m: "gguf" for m in METHODS if m.startswith("gguf-")}


class QuantError(RuntimeError):
    """A method unknown, or not available on this platform; the message is one line saying
    which and why (the CLI prints it as is)."""


def gguf_method(gguf_type: str) -> str:
    """The method of `llm4all export --type TYPE[,mixed]` (gguf-TYPE[-mixed]); QuantError (one
    line) for a type the writer cannot produce."""
    base, _, extra = gguf_type.partition(",")
    method = f"gguf-{base}" + ("-mixed" if extra == "mixed" else "")
    if base not in GGUF_TYPES or extra not in ("", "mixed") or method not in METHODS:
        raise QuantError(
            f"unsupported GGUF type {gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}, or "
            f"{', '.join(t + ',mixed' for t in GGUF_TYPES[1:])} (q8_0 is the highest block type)"
        )
    return method


class QuantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    method: QuantMethod = ...
    """int8 (bitsandbytes LLM.int8), nf4 (bitsandbytes 4-bit NormalFloat), torchao-int8 /
    torchao-int4 (torchao weight-only), dynamic-int8 (torch dynamic quantization: int8 weights,
    activations quantized per batch), gguf-TYPE[-mixed] (one GGUF file in GGML blocks of TYPE:
    q8_0, q5_1, q5_0, q4_1, q4_0; -mixed: sensitive tensors at higher types)."""
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
    calibration: Literal["gptq", "imatrix", "rtn"] = "gptq"
    """gguf-* below 8 bits: gptq (GPTQ into the GGML blocks, on calibration blocks), imatrix
    (round to nearest with block scales searched, weighted by the inputs' mean square) or rtn
    (plain round to nearest, as llama.cpp's reference quantizers; no data). q8_0 is always rtn."""
    mixed_budget: float = Field(0.16, gt=0.0, le=1.0)
    """gguf-*-mixed: the tensors' bytes may reach this fraction of their fp32 bytes (q4_0
    everywhere is 0.141, q5_0 0.172, q8_0 0.266)."""

    @property
    def bits(self) -> int:
        """Bits per quantized weight (scales and zero points not counted)."""
        return _BITS[self.method]

    @property
    def backend(self) -> str:
        """The library that does the work: bitsandbytes, torchao, torch or gguf."""
        return _BACKEND[self.method]

    @property
    def gguf_type(self) -> str | None:
        """gguf-*: the base block type (q4_0 for gguf-q4_0-mixed); None for other methods."""
        return self.method.split("-")[1] if self.backend == "gguf" else None

    @property
    def mixed(self) -> bool:
        return self.method.endswith("-mixed")


def quant_config(method: str, **fields: object) -> QuantConfig:
    """A QuantConfig, with an unknown method reported as QuantError (one line)."""
    if method not in METHODS:
        raise QuantError(
            f"unknown quantization method {method!r}; expected one of {', '.join(METHODS)}"
        )
    return QuantConfig(method=method, **fields)
