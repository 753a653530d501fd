"""Distil flow: gated tokens (+ their logit caches) -> trained student -> registry -> gate."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.config import load_config
from tasks.distill import distill_student
from warehouse import resolve_home


@flow(name="distill")
def distill_flow(
    dataset: str,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a student of the teacher on DATASET, evaluate it, register it and gate it."""
    cfg = load_config(config_path, overrides)
    home = str(resolve_home(cfg.home))
    return distill_student(dataset, home, cfg.teacher, cfg.distill, cfg.gates).to_dict()
