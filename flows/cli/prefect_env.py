"""The CLI's side of Prefect: where its state lives (`<home>/prefect`), which server a flow run
reports to (the `llm4all ui` server when one is running, else a temporary one), and logs on
stderr that a person can read."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any


def prefect_env(home: Path) -> None:
    """Settings Prefect reads at import: a project-local PREFECT_HOME, no analytics."""
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect won't
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A temporary server starts for a flow run when none is configured; 2 busy cores need time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if "PREFECT_API_URL" not in os.environ:
        server = ui_server(home)
        if server:  # `llm4all ui` is running: report runs to it, live
            os.environ["PREFECT_API_URL"] = server["api_url"]


def ui_server(home: Path) -> dict[str, Any] | None:
    """The running `llm4all ui` server of this home ({pid, api_url, url}), if any."""
    try:
        info = json.loads((home / "prefect" / "ui-server.json").read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError):
        return None


def configure_logging(debug: bool) -> None:
    """Logs on stderr through Prefect's console handler: our packages at INFO, third parties
    (GX, httpx, ...) only when they warn, and no tracebacks unless --debug: Prefect logs a
    failed task's traceback, where we print one line instead."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()  # idempotent; we need its handlers in place to adjust them
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for ours in ("warehouse", "data_quality", "tasks", "models", "flows"):
        logging.getLogger(ours).setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("great_expectations").setLevel(logging.DEBUG if debug else logging.WARNING)
    if debug:
        return
    for h in root.handlers:
        if isinstance(h, PrefectConsoleHandler) and not isinstance(h.formatter, _NoTracebacks):
            h.setFormatter(_NoTracebacks(h.formatter))


class _NoTracebacks(logging.Formatter):
    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
