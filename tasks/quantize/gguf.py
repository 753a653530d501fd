"""The quantize stage's gguf-* branch: calibrate on training blocks, write the GGUF variant,
load it back through transformers (what the gate evaluates), and run it through llama.cpp
when llama-cpp-python is installed (its perplexity and tokens/s beside fp32 PyTorch's).

    make_gguf(fp32, parent_spec, teacher_spec, qcfg, cfg, blocks, final, ...) -> (model, metrics)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.gguf_export import GGUF_FILE, reference_tokenizer
from models.gguf_quant import load_variant, needs_calibration, write_variant
from models.loading import ModelLoadError, load_tokenizer, resolve
from models.loading_config import ModelSpec
from models.quant_config import QuantConfig
from tasks.quantize.config import QuantizeConfig, QuantizeError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from tasks.distill.data import TokenBlocks

log = logging.getLogger(__name__)


def teacher_reference(teacher: ModelSpec) -> dict[str, Any] | None:
    """The teacher GGUF's tokens and pre-tokenizer name (models/gguf_export.py: which
    pre-tokenizer llama.cpp applies), when the teacher is a GGUF file."""
    try:
        where, file = resolve(teacher)
    except ModelLoadError:
        return None
    return reference_tokenizer(Path(where) / file) if file else None


def calibration_blocks(blocks: TokenBlocks, cfg: QuantizeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(statistics blocks, sensitivity blocks): training blocks only, never held-out ones;
    the sensitivity ones follow the statistics ones (or reuse them when the split is short)."""
    train = blocks.train()
    if len(train) == 0:
        raise QuantizeError("calibration needs training blocks: the tokens snapshots have none")
    stats = train[: cfg.calib_blocks]
    sens = train[cfg.calib_blocks : cfg.calib_blocks + cfg.sensitivity_blocks]
    if len(sens) == 0:
        sens = stats[: cfg.sensitivity_blocks]
    return blocks.input_ids[stats], blocks.input_ids[sens]


def make_gguf(
    fp32: torch.nn.Module,
    parent_spec: ModelSpec,
    teacher: ModelSpec,
    qcfg: QuantConfig,
    cfg: QuantizeConfig,
    blocks: TokenBlocks,
    final: Path,
    *,
    name: str,
    parent_key: str,
    device: str,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Write the variant into `final` and return it loaded back, with its metrics."""
    calib = sens = None
    if needs_calibration(qcfg):
        calib, sens = calibration_blocks(blocks, cfg)
    info = write_variant(
        fp32, load_tokenizer(parent_spec), qcfg, final, calib_ids=calib, sensitivity_ids=sens,
        reference=teacher_reference(teacher), metadata={"parent": parent_key}, name=name,
    )  # fmt: skip
    model = load_variant(final, device)
    metrics = {
        "format": "gguf",
        "file": GGUF_FILE,
        "calibration": info["calibration"],
        "quantized_layers": info["quantized_tensors"],
        "weight_bytes": info["weight_bytes"],
        "weight_bytes_fp32": info["weight_bytes_fp32"],
        "bits_per_weight": round(8 * info["weight_bytes"] / (info["weight_bytes_fp32"] / 4), 3),
        "tensor_types": info["tensor_types"],
    }
    for k in ("calibration_tokens", "statistics_s", "sensitivity_s", "most_sensitive"):
        if k in info:
            metrics[k] = info[k]
    metrics["quantize_s"] = (
        info["quantize_s"] + info.get("statistics_s", 0) + info.get("sensitivity_s", 0)
    )
    return model, metrics


def llama_cpp_figures(
    final: Path, blocks: TokenBlocks, val: np.ndarray, cfg: QuantizeConfig, parent_ppl: float
) -> dict[str, Any]:
    """The file through llama.cpp on the held-out blocks: perplexity (weighted as the gate's
    evaluation), prompt and greedy-generation tokens/s; {} without llama-cpp-python."""
    from models import llamacpp

    reason = llamacpp.available()
    if reason:
        log.info("%s: not run through llama.cpp (%s)", final, reason)
        return {"runtime": f"transformers (dequantized); {reason}"}
    with llamacpp.open_gguf(str(final / GGUF_FILE), n_ctx=max(512, blocks.block_size)) as llm:
        r = llamacpp.nll(llm, blocks.input_ids[val], blocks.loss_mask[val])
        speed = llamacpp.nll(llm, blocks.input_ids[val[: cfg.speed_blocks]])
        gen = llamacpp.generate(llm, blocks.input_ids[val[0], :16].tolist(), cfg.speed_tokens)
    return {
        "runtime": f"llama.cpp (llama-cpp-python {llamacpp.version()})",
        "llama_cpp_ppl": round(r["ppl"], 4),
        "llama_cpp_ppl_delta_pct": round(100 * (r["ppl"] / parent_ppl - 1), 4),
        "fwd_tokens_per_s": round(speed["fwd_tokens_per_s"], 1),
        "gen_tokens_per_s": round(gen["gen_tokens_per_s"], 1),
    }
