"""Deployments that `llm4all serve` runs: the pipeline (on demand, or on refresh.pipeline_cron)
and the refresh (on refresh.cron, weekly by default), each limited to one run at a time —
a run that would overlap is cancelled, not queued behind a lock."""

from __future__ import annotations

from typing import Any

from flows.config import load_config
from flows.pipeline import pipeline_flow
from flows.refresh import refresh_flow


def deployment_name(dataset: str) -> str:
    return dataset.replace("_", "-")


def build_deployments(dataset: str, config_path: str | None = None) -> list[Any]:
    """The two RunnerDeployments of DATASET (not yet served)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    cfg = load_config(config_path)
    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
    )
    params = {"dataset": dataset, "config_path": config_path}
    plan = [
        (pipeline_flow, cfg.refresh.pipeline_cron,
         f"ingest -> curate -> tokens -> logits -> distill for {dataset}"),
        (refresh_flow, cfg.refresh.cron, f"continual refresh of the {dataset} student"),
    ]  # fmt: skip
    return [
        flow.to_deployment(
            name=deployment_name(dataset),
            cron=cron,
            parameters=params,
            concurrency_limit=one_at_a_time,
            description=description,
        )
        for flow, cron, description in plan
    ]
