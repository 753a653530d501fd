"""GGML block formats Q8_0, Q5_1, Q5_0, Q4_1, Q4_0 in torch: codes, scales and file bytes.

A weight matrix [rows, cols] is cut into blocks of 32 consecutive values of a row (for a
Linear weight [out, in]: 32 inputs of one output). Each block stores an fp16 scale d (the *_1
types also an fp16 minimum m) and one code per value:

    q4_0  x = d * (q - 8),    q in 0..15            18 bytes / 32 values (4.5 bits)
    q4_1  x = d * q + m,      q in 0..15            20 bytes (5.0 bits)
    q5_0  x = d * (q - 16),   q in 0..31            22 bytes (5.5 bits)
    q5_1  x = d * q + m,      q in 0..31            24 bytes (6.0 bits)
    q8_0  x = d * q,          q in -127..127 (int8)  34 bytes (8.5 bits)

`quantize(w, fmt)` makes (codes, d, m): by round-to-nearest exactly as gguf.quants and
llama.cpp's reference quantizers do (`reference=True`: byte-identical files), or with the
fp16-rounded scale and an optional search over candidate scales weighted per column
(`weights`, e.g. the calibration inputs' mean square: llama.cpp's "importance matrix").
`round_codes(w, fmt)`, the rtn recipe: the reference rounding, except for a tensor that sits
near the grid it rounds to (weights a fraction of a step off one they were dequantized from,
e.g. fine-tuned): rounding to nearest would undo that change, so it is rounded with a dither.
`pack` lays codes out as a GGUF file stores them, so codes chosen by any method (GPTQ
included, models/gptq.py) are written as they are and every reader (llama.cpp,
transformers' GGUF loader) computes with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 32  # values per block, every legacy GGML type


@dataclass(frozen=True)
class Fmt:
    name: str
    bits: int
    symmetric: bool  # *_0: x = d * (q - offset); *_1: x = d * q + m
    type_size: int  # bytes per block of 32 values

    @property
    def qmax(self) -> int:
        return 254 if self.name == "q8_0" else (1 << self.bits) - 1

    @property
    def offset(self) -> int:
        """The code of zero in the symmetric formats."""
        return 127 if self.name == "q8_0" else 1 << (self.bits - 1)

    @property
    def bits_per_weight(self) -> float:
        return self.type_size * 8 / BLOCK


FORMATS: dict[str, Fmt] = {
    f.name: f
    for f in (
        Fmt("q8_0", 8, True, 34),
        Fmt("q5_1", 5, False, 24),
        Fmt("q5_0", 5, True, 22),
        Fmt("q4_1", 4, False, 20),
        Fmt("q4_0", 4, True, 18),
    )
}


def fmt_of(fmt: str | Fmt) -> Fmt:
    return FORMATS[fmt] if isinstance(fmt, str) else fmt


def _fp16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float32)


def block_params(
    blocks: torch.Tensor,
    fmt: Fmt,
    *,
    reference: bool = False,
    weights: torch.Tensor | None = None,
    search: tuple[float, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d, m) of blocks [..., 32], keepdim (the fp32 values of the fp16 numbers stored; m is
    None for the symmetric formats). reference: gguf.quants' arithmetic (d kept in fp32 while
    the codes are computed, as its quantizers do). weights [..., 32] + search: per block, the
    candidate scale (d0 times each factor) with the least weighted squared error."""
    if fmt.symmetric:
        if fmt.name == "q8_0":
            d = blocks.abs().amax(-1, keepdim=True) / 127
        else:  # the signed value of largest magnitude maps to code 0 (= -offset)
            idx = blocks.abs().argmax(-1, keepdim=True)
            d = torch.gather(blocks, -1, idx) / -fmt.offset
        m = None
    else:
        mx, mn = blocks.amax(-1, keepdim=True), blocks.amin(-1, keepdim=True)
        d, m = (mx - mn) / fmt.qmax, mn
    if reference:
        return d, m
    d = _fp16(d)
    m = _fp16(m) if m is not None else None
    if search and weights is not None:
        d, m = _search(blocks, fmt, d, m, weights, search)
    return d, m


def _search(
    blocks: torch.Tensor,
    fmt: Fmt,
    d0: torch.Tensor,
    m0: torch.Tensor | None,
    weights: torch.Tensor,
    factors: tuple[float, ...],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    w = weights.expand_as(blocks)
    best_d, best_m = d0, m0
    best = _err(blocks, fmt, d0, m0, w)
    for s in factors:
        if fmt.symmetric:
            d, m = _fp16(d0 * s), None
        else:  # shrink the range around its centre, the minimum on the fp16 grid
            assert m0 is not None
            mx = m0 + d0 * fmt.qmax
            c, half = (mx + m0) / 2, (mx - m0) / 2 * s
            d, m = _fp16(2 * half / fmt.qmax), _fp16(c - half)
        e = _err(blocks, fmt, d, m, w)
        better = e < best
        best = torch.where(better, e, best)
        best_d = torch.where(better, d, best_d)
        if m is not None and best_m is not None:
            best_m = torch.where(better, m, best_m)
    return best_d, best_m


def _err(
    blocks: torch.Tensor, fmt: Fmt, d: torch.Tensor, m: torch.Tensor | None, w: torch.Tensor
) -> torch.Tensor:
    q = codes_for(blocks, fmt, d, m)
    return ((dequant_codes(q, fmt, d, m) - blocks) ** 2 * w).sum(-1, keepdim=True)


def codes_for(
    x: torch.Tensor,
    fmt: Fmt,
    d: torch.Tensor,
    m: torch.Tensor | None,
    dither: torch.Tensor | None = None,
) -> torch.Tensor:
    """The stored codes of values x given their block's (d, m) (broadcast), as int16, rounded
    as ggml-quants.c rounds; dither (uniform in [0, 1), x's shape): rounded down or up at
    random instead, with the probability of up the fraction (unbiased: E[code] = x's)."""
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    if fmt.name == "q8_0":
        v = x * inv
        if dither is not None:
            q = torch.floor(v + dither)
        else:  # round half away from zero, as C's roundf
            q = torch.sign(v) * torch.floor(v.abs() + 0.5)
        return q.clamp(-127, 127).to(torch.int16)
    if fmt.symmetric:  # x * inv + (offset + 0.5) in this order, as gguf.quants
        v, half = x * inv, fmt.offset + 0.5
    else:
        assert m is not None
        v, half = (x - m) * inv, 0.5
    q = torch.floor(v + (half - 0.5) + dither) if dither is not None else torch.trunc(v + half)
    return q.clamp(0, fmt.qmax).to(torch.int16)


def dequant_codes(
    q: torch.Tensor, fmt: Fmt, d: torch.Tensor, m: torch.Tensor | None
) -> torch.Tensor:
    if fmt.name == "q8_0":
        return q.float() * d
    if fmt.symmetric:
        return (q.float() - fmt.offset) * d
    assert m is not None
    return q.float() * d + m


@dataclass
class Quantized:
    """One tensor in a block format: codes [rows, cols] (int16), d and m [rows, cols // 32]
    (fp32 holding fp16 values; m None for the symmetric formats)."""

    fmt: Fmt
    codes: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor | None

    def dequantize(self) -> torch.Tensor:
        rows, cols = self.codes.shape
        q = self.codes.reshape(rows, cols // BLOCK, BLOCK)
        m = self.m.unsqueeze(-1) if self.m is not None else None
        return dequant_codes(q, self.fmt, self.d.unsqueeze(-1), m).reshape(rows, cols)

    def rows(self, order: torch.Tensor) -> Quantized:
        """The same codes with the rows reordered (q/k rows into GGML's RoPE order)."""
        m = self.m[order] if self.m is not None else None
        return Quantized(self.fmt, self.codes[order], self.d[order], m)

    @property
    def nbytes(self) -> int:
        return self.codes.numel() // BLOCK * self.fmt.type_size

    def pack(self) -> np.ndarray:
        return pack(self)


def quantize(
    w: torch.Tensor,
    fmt: str | Fmt,
    *,
    reference: bool = False,
    weights: torch.Tensor | None = None,
    search: tuple[float, ...] = (),
) -> Quantized:
    """Round-to-nearest block quantization of a 2-D weight whose rows are a multiple of 32
    values. weights [cols]: the importance of each column, used by `search`."""
    fmt = fmt_of(fmt)
    w = w.detach().float()
    rows, cols = w.shape
    if cols % BLOCK:
        raise ValueError(f"{fmt.name} needs rows of a multiple of {BLOCK} values, not {cols}")
    b = w.reshape(rows, cols // BLOCK, BLOCK)
    wt = weights.float().reshape(1, cols // BLOCK, BLOCK) if weights is not None else None
    d, m = block_params(b, fmt, reference=reference, weights=wt, search=search)
    q = codes_for(b, fmt, d, m)
    d = _fp16(d).squeeze(-1)  # what the file stores
    m = _fp16(m).squeeze(-1) if m is not None else None
    return Quantized(fmt, q.reshape(rows, cols), d, m)


# grid_ratio below this (and above ON_GRID): the weights sit near a grid round-to-nearest
# reproduces, and round_codes dithers them (generic weights: ~0.97; the demo's distilled
# student, cut from a teacher whose weights sit on a Q4_1 grid: 0.24-0.5 at q4_1)
NEAR_GRID = 0.5
ON_GRID = 1e-3  # at or below: on the grid, round-to-nearest writes the weights back exactly


def grid_ratio(w: torch.Tensor, qz: Quantized) -> float:
    """How close w's values sit to the grid round-to-nearest (qz, w's reference rounding)
    puts them on: the median over blocks (d > 0) of the blocks' rms rounding error over
    d / sqrt(12), the rms of an error spread evenly over a step. ~1 for weights spread
    continuously (any smooth distribution), 0 for weights on the grid (dequantized from this
    format, cut the same way), in between for weights a little off it (such weights
    fine-tuned or distilled)."""
    e = (qz.dequantize() - w.detach().float()).reshape(-1, BLOCK)
    d = qz.d.reshape(-1)
    keep = d > 0
    if not bool(keep.any()):
        return 0.0
    r = e[keep].pow(2).mean(-1).sqrt() / (d[keep] / 12**0.5)
    return float(r.median())


def round_codes(w: torch.Tensor, fmt: str | Fmt, seed: int = 0) -> Quantized:
    """The rtn recipe (no calibration data): gguf.quants' round-to-nearest (`quantize(w, fmt,
    reference=True)`, byte-identical) unless w sits near, but not on, the grid it rounds to
    (grid_ratio between ON_GRID and NEAR_GRID). There round-to-nearest would move each value
    back onto the grid: it undoes whatever moved the weights a fraction of a step off it, e.g.
    a student distilled from a teacher whose weights were dequantized from this format (the
    demo's: q4_1 perplexity +232 % where q4_0's, on another grid, was +25 %). Such a tensor is
    rounded with a seeded dither instead (down or up, up with the probability of the fraction):
    noisier per value, but unbiased, so the change off the grid survives on average."""
    fmt = fmt_of(fmt)
    nearest = quantize(w, fmt, reference=True)
    if not ON_GRID < grid_ratio(w, nearest) < NEAR_GRID:
        return nearest
    w = w.detach().float()
    rows, cols = w.shape
    b = w.reshape(rows, cols // BLOCK, BLOCK)
    d, m = block_params(b, fmt)  # fp16-rounded: the codes are rounded against what is stored
    gen = torch.Generator().manual_seed(seed)
    q = codes_for(b, fmt, d, m, dither=torch.rand(b.shape, generator=gen))
    m = m.squeeze(-1) if m is not None else None
    return Quantized(fmt, q.reshape(rows, cols), d.squeeze(-1), m)


def pack(qz: Quantized) -> np.ndarray:
    """GGML block bytes, [rows, cols // 32 * type_size] uint8: the layout gguf.quants writes
    (d, then m, then for 5-bit types the 32 high bits, then the low nibbles with value j in
    the low half of byte j and value j + 16 in its high half)."""
    fmt = qz.fmt
    rows, cols = qz.codes.shape
    nb = rows * cols // BLOCK
    q = qz.codes.reshape(nb, BLOCK).numpy()
    parts = [qz.d.reshape(nb, 1).numpy().astype(np.float16).view(np.uint8)]
    if qz.m is not None:
        parts.append(qz.m.reshape(nb, 1).numpy().astype(np.float16).view(np.uint8))
    if fmt.name == "q8_0":
        parts.append(q.astype(np.int8).view(np.uint8))
    else:
        q = q.astype(np.uint8)
        if fmt.bits == 5:
            parts.append(np.packbits((q >> 4) & 1, axis=-1, bitorder="little"))
        lo = q & 0x0F
        parts.append(lo[:, :16] | (lo[:, 16:] << 4))
    out = np.concatenate(parts, axis=-1)
    assert out.shape[1] == fmt.type_size
    return out.reshape(rows, cols // BLOCK * fmt.type_size)


def fake_quant(w: torch.Tensor, fmt: str | Fmt, **kw: object) -> torch.Tensor:
    """w quantized and dequantized: what a reader of the GGUF computes with."""
    return quantize(w, fmt, **kw).dequantize().to(w.dtype)  # type: ignore[arg-type]
