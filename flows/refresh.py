"""Refresh flow (scheduled): new data -> curate -> tokens + logits for it -> continue the
promoted student with replay -> promote or keep -> quantize the promoted version (variants of
a version already quantized are skipped). One refresh per warehouse at a time."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.config import load_config
from flows.pipeline import update_data
from flows.quantize import quantize_variants
from tasks.refresh.refresh import refresh_student_task
from tasks.report.markdown import publish_markdown, refresh_markdown
from warehouse import WarehouseBusy, resolve_home
from warehouse.lock import WriterLock


class RefreshRunning(WarehouseBusy):
    """A second refresh of the same warehouse was started while one runs."""


@flow(name="refresh")
def refresh_flow(
    dataset: str,
    sources: list[str] | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bring DATASET's student up to date with what is new in SOURCES (default:
    refresh.sources of the config)."""
    cfg = load_config(config_path, overrides)
    home = resolve_home(cfg.home)
    params = {"config_path": config_path, "overrides": overrides}
    lock = WriterLock(home, name="refresh.lock")
    try:
        lock.acquire()
    except WarehouseBusy as e:
        raise RefreshRunning(f"a refresh is already running: {e}") from None
    try:
        out = update_data(dataset, sources, cfg, params)
        result = refresh_student_task(
            dataset, str(home), cfg.teacher, cfg.distill, cfg.refresh, cfg.gates
        )
        out["refresh"] = result.to_dict()
        # the promoted version, new or not: variants already made of it are skipped
        out["quantize"] = quantize_variants(cfg.distill.student_name(dataset), dataset, cfg)
    finally:
        lock.release()
    publish_markdown(f"refresh-{dataset}", refresh_markdown(dataset, out), "refresh report")
    return out
