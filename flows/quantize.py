"""Quantize flow: a registered model (or the teacher) -> quantized variant, evaluated against
its fp32 parent -> registry (lineage to the parent) -> gate."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.config import load_config
from tasks.quantize import quantize_registered
from warehouse import resolve_home


@flow(name="quantize")
def quantize_flow(
    model: str,
    dataset: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Quantize MODEL (NAME[:VERSION] or `teacher`) with `quantize.method`, evaluate it on
    DATASET's validation blocks (default: the data MODEL was trained on), register and gate."""
    cfg = load_config(config_path, overrides)
    home = str(resolve_home(cfg.home))
    result = quantize_registered(model, home, cfg.teacher, cfg.quantize, cfg.gates, dataset)
    return result.to_dict()
