"""What every flow does around its work: settings, the dataset's run lock, run logs.

    with dataset_run("pipeline", dataset, config_path, overrides) as run:
        ... run.cfg, run.home ...
        run.remember(replace=True)     # record what it was told, once it succeeded

`dataset_run` resolves the settings (flows/config.py: the dataset's recorded config unless told
otherwise), bounds the lock waits, sends the project's log lines to the Prefect run's logs, and
(with `lock=True`) holds the dataset's run lock: runs of one dataset take turns, in the order
they were scheduled (`warehouse.lock.RunLock`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flows.config import Config, Settings, resolve_settings
from warehouse import Catalog
from warehouse.lock import RunLock, configure_waits

log = logging.getLogger(__name__)

# Our packages: their loggers also go to the Prefect run's logs (the UI's Logs tab).
PROJECT_LOGGERS = ("warehouse", "data_quality", "tasks", "models", "flows")


@dataclass
class DatasetRun:
    dataset: str
    cfg: Config
    home: str
    settings: Settings
    catalog: Catalog

    def remember(self, replace: bool = False) -> None:
        """Record the settings as the dataset's when it has none yet or, with `replace`, when
        this run was told other settings than the recorded ones."""
        remember_settings(self.catalog, self.dataset, self.settings, replace)


@contextmanager
def dataset_run(
    kind: str,
    dataset: str,
    config_path: str | None,
    overrides: dict[str, Any] | None,
    *,
    lock: bool = True,
) -> Iterator[DatasetRun]:
    settings, home = resolve_settings(dataset, config_path, overrides)
    cfg = settings.load()
    configure_waits(cfg.locks.writer_timeout_s, cfg.locks.run_timeout_s, cfg.locks.progress_s)
    attach_run_logs()
    run = DatasetRun(dataset, cfg, str(home), settings, Catalog(home))
    if settings.origin != "defaults":
        log.info("%s %s: settings %s", kind, dataset, settings.describe())
    if not lock:
        yield run
        return
    with RunLock(home, dataset, order=scheduled_at(), label=f"{kind} {dataset}{_run_name()}"):
        yield run


def remember_settings(catalog: Catalog, dataset: str, settings: Settings, replace: bool) -> None:
    if not settings_to_record(catalog, dataset, settings, replace):
        return
    with catalog.writing():
        catalog.record_settings(
            dataset, settings.config_path, _recordable(settings.data), settings.overrides,
            _flow_run_id(),
        )  # fmt: skip
    log.info("recorded the settings of %s (%s)", dataset, settings.describe())


def settings_to_record(catalog: Catalog, dataset: str, settings: Settings, replace: bool) -> bool:
    """Whether a run of `dataset` with `settings` records them once it succeeds (`remember`):
    when none are recorded yet or, with `replace`, when it was told others than the recorded
    ones. Compared as the catalog stores them (no `home`, through JSON), so settings resolved
    from the recorded ones are the same settings."""
    recorded = catalog.settings(dataset)
    if recorded is None:
        return True
    if not (replace and settings.told):
        return False
    told = _as_stored(_recordable(settings.data)), _as_stored(settings.overrides)
    return told != (recorded["config"], recorded["overrides"])


def _recordable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "home"}  # where it is found, not what it is


def _as_stored(value: dict[str, Any]) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def scheduled_at() -> float | None:
    """When the deployment run we are in was scheduled (its place in the dataset's queue);
    None outside a deployment run (the queue then uses the time of asking)."""
    try:
        from prefect.context import FlowRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency
        return None
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None or run.deployment_id is None or run.expected_start_time is None:
        return None
    return run.expected_start_time.timestamp()


def _flow_run_id() -> str | None:
    from tasks.runtime import current_flow_run_id

    return current_flow_run_id()


def _run_name() -> str:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return f" (flow run {ctx.flow_run.name})" if ctx and ctx.flow_run else ""


def attach_run_logs() -> None:
    """Send our packages' log records (INFO and up) to the Prefect run they are emitted in, and
    to the console; records outside a run go to the console only. Idempotent."""
    from prefect.logging.handlers import APILogHandler

    class RunLogHandler(APILogHandler):
        """Prefect's API handler, silent outside a run (our code also runs without one)."""

        def emit(self, record: logging.LogRecord) -> None:
            from prefect.context import FlowRunContext, TaskRunContext

            if FlowRunContext.get() or TaskRunContext.get() or getattr(record, "flow_run_id", 0):
                super().emit(record)

    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        if not any(type(h).__name__ == "RunLogHandler" for h in logger.handlers):
            logger.addHandler(RunLogHandler())
