"""Distil flow: gated tokens (+ their logit caches) -> trained student -> registry -> gate."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.runtime import dataset_run
from tasks.distill.distill import distill_student


@flow(name="distill")
def distill_flow(
    dataset: str, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train a student of the teacher on DATASET, evaluate it, register it and gate it."""
    with dataset_run("distill", dataset, config_path, overrides) as run:
        cfg = run.cfg
        out = distill_student(dataset, run.home, cfg.teacher, cfg.distill, cfg.gates).to_dict()
        run.remember()
    return out
