"""Logits flow: gated snapshots -> tokens (packed blocks) -> gate -> teacher logit cache -> gate."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.runtime import dataset_run
from tasks.gates import check_gate, gate_pending
from tasks.logits.cache import cache_teacher_logits
from tasks.tokens.tokenize import tokenize_dataset


@flow(name="cache-logits")
def cache_logits_flow(
    dataset: str, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Tokenize what is new in DATASET, then cache the teacher's distributions over it."""
    with dataset_run("cache-logits", dataset, config_path, overrides, lock=False) as run:
        cfg, home = run.cfg, run.home
        for stage in ("tokens", "logits"):
            gate_pending(stage, dataset, home, cfg.gates)
        tokens = tokenize_dataset(dataset, home, cfg.teacher, cfg.tokens, cfg.gates)
        for ref in tokens.refs:
            check_gate("tokens", ref, home, cfg.gates)
        logits = cache_teacher_logits(dataset, home, cfg.teacher, cfg.logits, cfg.gates)
        gates = [check_gate("logits", ref, home, cfg.gates).to_dict() for ref in logits.refs]
        run.remember()
    return {"tokens": tokens.to_dict(), "logits": logits.to_dict(), "gates": gates}
