"""Pipeline flow: ingest -> curate -> tokens -> logits -> distill -> quantize, each stage gated.

Every stage is idempotent on its inputs (content-hash ingest, per-version curate/tokenize/cache,
a distill run key), so a rerun whose inputs have not changed skips each stage in seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from flows.config import Config
from flows.curate import curate_flow, make_task_runner
from flows.distill import distill_flow
from flows.ingest import ingest_flow
from flows.logits import cache_logits_flow
from flows.quantize import quantize_variants
from flows.runtime import dataset_run
from tasks.report.markdown import pipeline_markdown, publish_markdown, stage_summaries

log = logging.getLogger(__name__)


@flow(name="pipeline")
def pipeline_flow(
    dataset: str,
    sources: list[str] | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every stage for DATASET on SOURCES (default: refresh.sources of the config)."""
    with dataset_run("pipeline", dataset, config_path, overrides) as run:
        cfg = run.cfg
        params = {"config_path": config_path, "overrides": overrides}
        out = update_data(dataset, sources, cfg, params)
        out["distill"] = distill_flow(dataset=dataset, **params)
        log_stages({"distill": out["distill"]})
        out["quantize"] = quantize_variants(out["distill"]["model"]["name"], dataset, cfg)
        log_stages({"quantize": out["quantize"]})
        run.remember(replace=True)
    publish_markdown(f"pipeline-{dataset}", pipeline_markdown(dataset, out), "pipeline report")
    return out


def update_data(
    dataset: str, sources: list[str] | None, cfg: Config, params: dict[str, Any]
) -> dict[str, Any]:
    """The data half of the pipeline and of a refresh: ingest SOURCES (default:
    refresh.sources), curate what is new on the configured task runner, then tokens and
    logits for it; each stage gated."""
    out: dict[str, Any] = {"dataset": dataset, "ingest": []}
    for source in sources if sources is not None else cfg.refresh.sources:
        out["ingest"].append(ingest_flow(source=source, dataset=dataset, **params))
    log_stages({"ingest": out["ingest"]})
    runner = make_task_runner(cfg.dedup.runner)
    out["curate"] = curate_flow.with_options(task_runner=runner)(dataset=dataset, **params)
    log_stages({"curate": out["curate"]})
    out |= cache_logits_flow(dataset=dataset, **params)
    log_stages({"tokens": out["tokens"], "logits": out["logits"]})
    return out


def log_stages(part: dict[str, Any]) -> None:
    """One line per finished stage in this flow run's own logs (the UI's Logs tab of a
    pipeline or refresh run): rows in and kept, blocks, caches, the model and its gate."""
    for stage, summary in stage_summaries(part):
        log.info("%s: %s", stage, summary)
