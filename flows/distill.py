"""Distil flow: gated tokens (+ their logit caches) -> trained student -> registry -> gate."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.config import run_config
from tasks.distill.distill import distill_student


@flow(name="distill")
def distill_flow(
    dataset: str, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train a student of the teacher on DATASET, evaluate it, register it and gate it."""
    cfg, home = run_config(config_path, overrides)
    return distill_student(dataset, home, cfg.teacher, cfg.distill, cfg.gates).to_dict()
