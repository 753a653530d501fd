"""Refresh flow (scheduled): new data -> curate -> tokens + logits for it -> continue the
promoted student with replay -> promote or keep -> quantize the promoted version (variants of
a version already quantized are skipped). Runs of one dataset take turns (its run lock)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.pipeline import log_stages, update_data
from flows.quantize import quantize_variants
from flows.runtime import dataset_run
from tasks.refresh.refresh import refresh_student_task
from tasks.report.markdown import publish_markdown, refresh_markdown


@flow(name="refresh")
def refresh_flow(
    dataset: str,
    sources: list[str] | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bring DATASET's student up to date with what is new in SOURCES (default:
    refresh.sources of the config)."""
    params = {"config_path": config_path, "overrides": overrides}
    with dataset_run("refresh", dataset, config_path, overrides) as run:
        cfg = run.cfg
        out = update_data(dataset, sources, cfg, params)
        result = refresh_student_task(
            dataset, run.home, cfg.teacher, cfg.distill, cfg.refresh, cfg.gates
        )
        out["refresh"] = result.to_dict()
        log_stages({"refresh": out["refresh"]})
        # the promoted version, new or not: variants already made of it are skipped
        out["quantize"] = quantize_variants(cfg.distill.student_name(dataset), dataset, cfg)
        log_stages({"quantize": out["quantize"]})
        run.remember(replace=True)
    publish_markdown(f"refresh-{dataset}", refresh_markdown(dataset, out), "refresh report")
    return out
