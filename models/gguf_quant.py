"""The gguf-* quantization methods: a model -> one GGUF file in GGML blocks, saved as a folder.

    info = write_variant(model, tokenizer, cfg, folder, calib_ids=..., sensitivity_ids=...)
    model = load_variant(folder)     # through transformers' GGUF loader, dequantized to fp32

The folder holds model.gguf (weights, tokenizer, chat template, llm4all.* provenance keys),
config.json (the HF config; the registry wants one) and quantization.json ({"format": "gguf",
"file": "model.gguf", ...}), which models/loading.py reads to open the file. Every 2-D tensor
goes into blocks, the embedding matrix (and the head it is tied to) included: unlike the
bitsandbytes/torchao backends, nothing stays fp32 but the norms.

Recipes (models/quant_config.py, cfg.method):
  gguf-q8_0               every tensor q8_0, round to nearest (gguf.quants' bytes)
  gguf-TYPE               every tensor TYPE, with cfg.calibration: gptq | imatrix | rtn
  gguf-TYPE-mixed         GPTQ (or cfg.calibration) at TYPE, then the tensors whose measured
                          delta-NLL per extra byte is highest move to higher types while the
                          tensors' bytes stay within cfg.mixed_budget x their fp32 bytes
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.gguf_export import GGUF_FILE, export_gguf, plan_bytes, tensor_plan
from models.quant_config import QuantConfig, QuantError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

QUANT_FILE = "quantization.json"


def needs_calibration(cfg: QuantConfig) -> bool:
    """Whether the recipe reads calibration blocks (statistics, sensitivity)."""
    return cfg.gguf_type != "q8_0" and (cfg.calibration != "rtn" or cfg.mixed)


def choose_codes(
    model: torch.nn.Module,
    cfg: QuantConfig,
    calib_ids: np.ndarray | None,
    sensitivity_ids: np.ndarray | None,
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """(plan {GGUF name: type}, codes {GGUF name: Quantized}, info) for `cfg`'s recipe."""
    from models.gptq import (
        collect_inputs,
        level_sensitivity,
        mixed_plan,
        quantize_codes,
        sensitivity,
    )

    base = cfg.gguf_type
    if base is None:
        raise QuantError(f"{cfg.method} is not a GGUF method")
    calibration = "rtn" if base == "q8_0" else cfg.calibration
    info: dict[str, Any] = {"calibration": calibration}
    H = None
    if calibration != "rtn":
        if calib_ids is None or len(calib_ids) == 0:
            raise QuantError(f"{cfg.method} ({calibration}) needs calibration blocks")
        t = time.perf_counter()
        H = collect_inputs(model, calib_ids)
        info["statistics_s"] = round(time.perf_counter() - t, 3)
        info["calibration_tokens"] = int(np.asarray(calib_ids).size)
    plan = tensor_plan(model, base)
    t = time.perf_counter()
    codes = quantize_codes(model, plan, H, calibration)
    info["quantize_s"] = round(time.perf_counter() - t, 3)
    if cfg.mixed:
        if sensitivity_ids is None or len(sensitivity_ids) == 0:
            raise QuantError(f"{cfg.method} needs calibration blocks to measure sensitivity")
        t = time.perf_counter()
        measured = sensitivity(model, sensitivity_ids, codes)
        info["sensitivity_s"] = round(time.perf_counter() - t, 3)
        info["sensitivity_tokens"] = int(np.asarray(sensitivity_ids).size)
        ranked = sorted(measured.items(), key=lambda kv: -kv[1])
        info["most_sensitive"] = [[g, round(v, 6)] for g, v in ranked[:8]]
        sens = level_sensitivity(model, measured, codes, H)
        fp32 = plan_bytes(model, tensor_plan(model, "f32"))
        plan = tensor_plan(model, mixed_plan(model, sens, base, cfg.mixed_budget * fp32))
        raised = {g for g, typ in plan.items() if typ not in (base, "f32")}
        t = time.perf_counter()
        codes |= quantize_codes(model, plan, H, calibration, only=raised)
        info["quantize_s"] += round(time.perf_counter() - t, 3)
    return plan, codes, info


def write_variant(
    model: torch.nn.Module,
    tokenizer: Any,
    cfg: QuantConfig,
    folder: str | Path,
    *,
    calib_ids: np.ndarray | None = None,
    sensitivity_ids: np.ndarray | None = None,
    reference: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    name: str = "llm4all model",
) -> dict[str, Any]:
    """Quantize `model` (fp32) by `cfg`'s recipe into `folder`/model.gguf (+ config.json,
    quantization.json); returns what was done: tensor types, bytes, timings, calibration."""
    from models.gguf_export import check_supported

    check_supported(model)  # before any calibration work
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plan, codes, info = choose_codes(model, cfg, calib_ids, sensitivity_ids)
    meta = {"method": cfg.method, "calibration": info["calibration"], **(metadata or {})}
    path = export_gguf(
        model, tokenizer, folder / GGUF_FILE, plan, codes=codes, metadata=meta,
        reference=reference, name=name,
    )  # fmt: skip
    model.config.save_pretrained(str(folder))
    types: dict[str, int] = {}
    for typ in plan.values():
        types[typ] = types.get(typ, 0) + 1
    two_d = {g: t for g, t in plan.items() if t != "f32"}
    info |= {
        "tensor_types": types,
        "quantized_tensors": len(two_d),
        "weight_bytes": plan_bytes(model, two_d),
        "weight_bytes_fp32": plan_bytes(model, dict.fromkeys(two_d, "f32")),
        "file_bytes": path.stat().st_size,
    }
    (folder / QUANT_FILE).write_text(
        json.dumps(
            {
                "method": cfg.method,
                "bits": cfg.bits,
                "backend": "gguf",
                "format": "gguf",
                "file": GGUF_FILE,
                "config": cfg.model_dump(),
                "tensor_types": types,
                "plan": plan,
            },
            indent=1,
        )
    )
    return info


def gguf_file(folder: str | Path) -> str | None:
    """The GGUF file name of a gguf variant's folder (None: not one)."""
    path = Path(folder) / QUANT_FILE
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return meta.get("file") if meta.get("format") == "gguf" else None


def load_variant(folder: str | Path, device: str = "cpu") -> torch.nn.Module:
    """A gguf variant loaded back through transformers (dequantized to fp32), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    file = gguf_file(folder)
    if file is None:
        raise QuantError(f"{folder} holds no GGUF variant ({QUANT_FILE} says another format)")
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file, dtype=torch.float32)
    return model.to(device).eval()
