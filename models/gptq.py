"""Calibrated quantization into GGML blocks: input statistics, GPTQ, measured sensitivity and a
mixed-precision plan.

    H     = collect_inputs(model, calib_ids)              # E[x x^T] of every Linear's input
    codes = quantize_codes(model, plan, H, "gptq")        # {GGUF name: Quantized}
    sens  = sensitivity(model, calib_ids, codes)          # measured delta-NLL per tensor
    plan  = mixed_plan(model, sens, low, budget, H)       # sensitive tensors at more bits

GPTQ (Frantar et al. 2022) with the GGML block quantizer inside: the inputs (columns) of a
weight are quantized left to right, each block of 32 gets its (d, m) when GPTQ reaches it (from
the error-compensated values, the scale searched with diag(H) as the importance of each
input), and each column's rounding error is spread over the columns not yet quantized through
the Cholesky factor of the inverse Hessian. The codes go into the GGUF as they are. The tied
embedding matrix is also the head: it is quantized against the head's input statistics.

Every statistic comes from calibration blocks (the training split): the caller keeps held-out
blocks out of it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from models.ggml_blocks import (
    BLOCK,
    FORMATS,
    Quantized,
    block_params,
    codes_for,
    dequant_codes,
    round_codes,
)
from models.ggml_blocks import quantize as rtn
from models.gguf_export import gguf_name

SEARCH = tuple(float(s) for s in np.round(np.arange(0.80, 1.061, 0.02), 3))
LEVELS = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")  # cheapest first
CALIBRATIONS = ("gptq", "imatrix", "rtn")


def linear_names(model: torch.nn.Module) -> dict[str, str]:
    """{module name: GGUF tensor name} of the Linear layers (the head included)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            g = gguf_name(name + ".weight")
            if g is not None:
                out[name] = g
    return out


def _stats_module(model: torch.nn.Module) -> dict[str, str]:
    """{GGUF name: module whose input statistics quantize it}; the tied embedding -> the head."""
    out = {g: n for n, g in linear_names(model).items()}
    if getattr(model.config, "tie_word_embeddings", False) and "output.weight" in out:
        out["token_embd.weight"] = out["output.weight"]
    return out


@torch.inference_mode()
def collect_inputs(
    model: torch.nn.Module, ids: np.ndarray, batch: int = 4
) -> dict[str, torch.Tensor]:
    """{module name: H = mean over tokens of x x^T} of each Linear's input, from one forward
    pass of the model over the calibration blocks ids [B, L]. Layers that read the same input
    (q/k/v, gate/up) share one H."""
    names = linear_names(model)
    H: dict[str, torch.Tensor] = {}
    n: dict[str, int] = {}
    owner: dict[str, str] = {}
    # The input tensor is held until the batch ends, so its id() is not reused meanwhile.
    shared: dict[int, tuple[torch.Tensor, str]] = {}

    def hook(name: str) -> Any:
        def f(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            first = shared.setdefault(id(inp[0]), (inp[0], name))[1]
            if first != name:
                owner[name] = first
                return
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()
            if name not in H:
                H[name] = torch.zeros(x.shape[1], x.shape[1])
                n[name] = 0
            H[name] += x.T @ x
            n[name] += x.shape[0]

        return f

    hooks = [m.register_forward_hook(hook(nm)) for nm, m in model.named_modules() if nm in names]
    try:
        for lo in range(0, len(ids), batch):
            shared.clear()
            model(input_ids=torch.from_numpy(np.asarray(ids[lo : lo + batch], np.int64)))
    finally:
        for h in hooks:
            h.remove()
    for k in H:
        H[k] /= max(n[k], 1)
    for k, first in owner.items():
        H[k] = H[first]
    return H


def gptq_quantize(
    W: torch.Tensor,
    H: torch.Tensor,
    fmt: str,
    *,
    percdamp: float = 0.01,
    blocksize: int = 128,
    search: tuple[float, ...] = SEARCH,
) -> Quantized:
    """GPTQ of one weight [rows, cols] against its input second moments H [cols, cols]."""
    f = FORMATS[fmt]
    W = W.detach().float().clone()
    rows, cols = W.shape
    if cols % BLOCK or blocksize % BLOCK:
        raise ValueError(f"GPTQ into {fmt} needs rows of a multiple of {BLOCK} values")
    H = H.clone().double()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    importance = torch.diag(H).float().clone()
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype)
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(H))
    Hinv = torch.linalg.cholesky(Hinv, upper=True).float()
    codes = torch.zeros(rows, cols, dtype=torch.int16)
    ds = torch.zeros(rows, cols // BLOCK)
    ms = None if f.symmetric else torch.zeros(rows, cols // BLOCK)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = m = None
        for i in range(i2 - i1):
            col = i1 + i
            if col % BLOCK == 0:  # a new block: its scale from the compensated values
                blk = W1[:, i : i + BLOCK].unsqueeze(1)
                wt = importance[col : col + BLOCK].reshape(1, 1, BLOCK)
                d, m = block_params(blk, f, weights=wt, search=search)
                d, m = d[:, 0], (m[:, 0] if m is not None else None)  # [rows, 1]
                ds[:, col // BLOCK] = d[:, 0]
                if ms is not None and m is not None:
                    ms[:, col // BLOCK] = m[:, 0]
            assert d is not None
            w = W1[:, i : i + 1]
            q = codes_for(w, f, d, m)
            codes[:, col] = q[:, 0]
            err = (w - dequant_codes(q, f, d, m)) / Hinv1[i, i]
            W1[:, i:] -= err @ Hinv1[i : i + 1, i:]
            err1[:, i] = err[:, 0]
        W[:, i2:] -= err1 @ Hinv[i1:i2, i2:]
    return Quantized(f, codes, ds, ms)


def quantize_codes(
    model: torch.nn.Module,
    plan: dict[str, str],
    H: dict[str, torch.Tensor] | None,
    calibration: str = "gptq",
    only: set[str] | None = None,
) -> dict[str, Quantized]:
    """{GGUF name: Quantized} for the 2-D tensors of `plan` (tensor_plan's) at a block type
    (`only`: these names alone). calibration: rtn (no data: gguf.quants' reference rounding,
    dithered where the weights sit near a grid it would round them back onto:
    ggml_blocks.round_codes), imatrix (scales searched per block, weighted by diag(H)), gptq."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {calibration!r}")
    stats = _stats_module(model)
    out = {}
    for hf_name, t in model.state_dict().items():
        g = gguf_name(hf_name)
        typ = plan.get(g or "")
        if g is None or typ not in FORMATS or t.ndim != 2 or (only is not None and g not in only):
            continue
        h = H.get(stats.get(g, "")) if H is not None else None
        if calibration == "rtn" or h is None:
            out[g] = round_codes(t, typ)
        elif calibration == "imatrix":
            out[g] = rtn(t, typ, weights=torch.diag(h).float(), search=SEARCH)
        else:
            out[g] = gptq_quantize(t, h, typ)
    return out


def apply_codes(model: torch.nn.Module, codes: dict[str, Quantized]) -> torch.nn.Module:
    """A copy of `model` computing with the dequantized codes: what a GGUF reader computes."""
    m = copy.deepcopy(model)
    params = dict(m.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for hf_name, p in params.items():
            g = gguf_name(hf_name)
            if g in codes:
                p.copy_(codes[g].dequantize())
    return m


@torch.inference_mode()
def nll(model: torch.nn.Module, ids: np.ndarray, batch: int = 4) -> tuple[float, int]:
    """Summed next-token NLL (nats) and the number of predicted tokens over blocks ids [B, L]."""
    total, count = 0.0, 0
    for lo in range(0, len(ids), batch):
        x = torch.from_numpy(np.asarray(ids[lo : lo + batch], np.int64))
        logits = model(input_ids=x).logits[:, :-1].float()
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(ce)
        count += x[:, 1:].numel()
    return total, count


@torch.inference_mode()
def sensitivity(
    model: torch.nn.Module, ids: np.ndarray, codes: dict[str, Quantized], batch: int = 4
) -> dict[str, float]:
    """{GGUF name: measured NLL increase (nats per token) on blocks ids when that tensor alone
    computes with its codes}: one forward pass per tensor."""
    base, count = nll(model, ids, batch)
    params = dict(model.named_parameters(remove_duplicate=False))
    out: dict[str, float] = {}
    for hf_name, p in params.items():
        g = gguf_name(hf_name)
        if g not in codes or g in out:
            continue
        orig = p.detach().clone()
        p.copy_(codes[g].dequantize())
        try:
            total, _ = nll(model, ids, batch)
        finally:
            p.copy_(orig)
        out[g] = (total - base) / count
    return out


def _output_error(W: torch.Tensor, qz: Quantized, h: torch.Tensor | None) -> float:
    """tr(dW H dW^T) (what GPTQ minimizes); sum(dW^2) without statistics."""
    dW = qz.dequantize() - W.detach().float()
    if h is None:
        return float((dW**2).sum())
    return float(((dW @ h) * dW).sum())


def level_sensitivity(
    model: torch.nn.Module,
    measured: dict[str, float],
    codes: dict[str, Quantized],
    H: dict[str, torch.Tensor] | None,
    levels: tuple[str, ...] = LEVELS,
) -> dict[str, dict[str, float]]:
    """{type: {GGUF name: NLL increase}} at every level: the measured figure at the codes'
    level, and at another level that figure scaled by the ratio of the output errors
    tr(dW H dW^T) (round-to-nearest at that level over the codes'): a second-order estimate,
    so only one forward pass per tensor is measured."""
    stats = _stats_module(model)
    sd = model.state_dict()
    by_g = {gguf_name(k): k for k in sd}
    out: dict[str, dict[str, float]] = {f: {} for f in levels}
    for g, s in measured.items():
        W = sd[by_g[g]]
        h = H.get(stats.get(g, "")) if H is not None else None
        base = _output_error(W, codes[g], h)
        for f in levels:
            if f == codes[g].fmt.name:
                out[f][g] = s
            else:
                e = _output_error(W, rtn(W, f, reference=True), h)
                out[f][g] = s * e / base if base > 0 else 0.0
    return out


def mixed_plan(
    model: torch.nn.Module,
    sens: dict[str, dict[str, float]],
    low: str,
    budget_bytes: float,
    levels: tuple[str, ...] = LEVELS,
) -> dict[str, str]:
    """Every 2-D tensor at `low`, then greedy upgrades: of all (tensor, higher level) moves, the
    one that removes the most NLL increase per extra byte, while the tensors stay within
    `budget_bytes` (1-D tensors counted in fp32). sens: level_sensitivity's."""
    tied = getattr(model.config, "tie_word_embeddings", False)
    sizes, plan = {}, {}
    used = 0.0
    for hf_name, t in model.state_dict().items():
        g = gguf_name(hf_name)
        if g is None or (g == "output.weight" and tied):
            continue
        if t.ndim == 1:
            used += t.numel() * 4
        else:
            sizes[g], plan[g] = t.numel(), low
    bpw = {f: FORMATS[f].type_size / BLOCK for f in levels}
    used += sum(sizes[g] * bpw[low] for g in plan)
    ups = [f for f in levels if bpw[f] > bpw[low]]
    while True:
        best, move = 0.0, None
        for g, cur in plan.items():
            for f in ups:
                extra = sizes[g] * (bpw[f] - bpw[cur])
                if extra <= 0 or used + extra > budget_bytes:
                    continue
                gain = (sens[cur].get(g, 0.0) - sens[f].get(g, 0.0)) / extra
                if gain > best:
                    best, move = gain, (g, f, extra)
        if move is None:
            return plan
        g, f, extra = move
        plan[g] = f
        used += extra
