"""Deployments that `llm4all serve` runs, and how `llm4all run` triggers and follows them.

Two deployments per dataset, named after it as written: `pipeline/<dataset>` (on demand, or on
refresh.pipeline_cron) and `refresh/<dataset>` (on refresh.cron, weekly by default). They are
served by one runner per dataset that runs one flow run at a time, oldest scheduled first, and
every run of a dataset holds its run lock (flows/runtime.py), so overlapping triggers queue
instead of being cancelled or colliding. Runs use the dataset's recorded settings unless the
deployment was served with its own (`serve --config/--set`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from flows.config import Config

# A served deployment's runner polls the server every PREFECT_RUNNER_POLL_FREQUENCY (10 s);
# one that has not polled for this long is taken to be gone.
RUNNER_SILENT_S = 60.0


class RunFailed(RuntimeError):
    """A triggered run ended Failed, Crashed or Cancelled (or could not be triggered)."""

    def __init__(self, out: dict[str, Any]) -> None:
        message = (out.get("message") or "").strip().splitlines()
        reason = message[0] if message else "no reason given"
        super().__init__(
            f"{out['deployment']}: flow run {out['flow_run']} {out['state']}: {reason}"
        )
        self.payload = out
        self.exit_code = 3 if "GateFailed" in (out.get("message") or "") else 1


class NotServed(RuntimeError):
    """No deployment of that name, or no runner serving it."""


def deployment_name(dataset: str) -> str:
    """Deployments are named after the dataset as written (`prefect deployment run
    refresh/my_news` works as the dataset is spelled)."""
    return dataset


def build_deployments(
    dataset: str,
    cfg: Config,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[Any]:
    """The two RunnerDeployments of DATASET (not yet served), scheduled per `cfg`. Their runs
    get `config_path`/`overrides` as parameters: None (the default) means the dataset's
    recorded settings, resolved when each run starts."""
    from flows.pipeline import pipeline_flow  # the flows (and torch): not for `llm4all run`
    from flows.refresh import refresh_flow

    params = {"dataset": dataset, "config_path": config_path, "overrides": overrides}
    plan = [
        (pipeline_flow, cfg.refresh.pipeline_cron,
         f"ingest -> curate -> tokens -> logits -> distill -> quantize for {dataset}"),
        (refresh_flow, cfg.refresh.cron, f"continual refresh of the {dataset} student"),
    ]  # fmt: skip
    return [
        flow.to_deployment(
            name=deployment_name(dataset), cron=cron, parameters=params, description=description
        )
        for flow, cron, description in plan
    ]


def trigger(flow_name: str, dataset: str, parameters: dict[str, Any]) -> Any:
    """Create a run of `flow_name/dataset` now and return it (its state Scheduled); raises
    NotServed when there is no such deployment or no runner has polled for it lately."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"{flow_name}/{deployment_name(dataset)}"
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise NotServed(
                f"no deployment {name} on this Prefect server: serve it with "
                f"`llm4all serve -d {dataset}`"
            ) from None
        served = deployment.last_polled
        stopped = deployment.paused  # `serve` pauses its deployments when it stops
        if stopped or served is None or time.time() - served.timestamp() > RUNNER_SILENT_S:
            when = "never" if served is None else f"last at {served:%Y-%m-%d %H:%M:%S} UTC"
            raise NotServed(
                f"no runner serves {name} (polled {when}): start `llm4all serve -d {dataset}`, "
                "or the run would wait forever"
            )
    return run_deployment(name=name, parameters=parameters, timeout=0)


def follow(flow_run_id: UUID, echo: Callable[[str], None], poll_s: float = 2.0) -> Any:
    """Print a flow run's state changes and log lines until it ends; its final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    logs_of = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    seen, last, last_pass = 0, None, False
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            final = run.state is not None and run.state.is_final()
            if run.state_name != last:
                last = run.state_name
                echo(f"[{run.name}] state: {last}")
            while batch := client.read_logs(
                log_filter=logs_of, offset=seen, limit=200, sort=LogSort.TIMESTAMP_ASC
            ):
                for entry in batch:  # first lines: a traceback belongs in the UI, not here
                    lines = entry.message.strip().splitlines() or [""]
                    more = " (...)" if len(lines) > 1 else ""
                    echo(f"[{run.name}] {entry.timestamp:%H:%M:%S} {lines[0]}{more}")
                seen += len(batch)
            if final:
                if last_pass:
                    return run.state
                last_pass = True  # the last log lines may land just after the state
            time.sleep(poll_s)
