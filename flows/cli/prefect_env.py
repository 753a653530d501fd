"""The CLI's side of Prefect: where its state lives (`<home>/prefect`), which server a flow run
reports to, and logs on stderr that a person can read.

One local Prefect server per warehouse home. Flow commands use the server recorded in
`<home>/prefect/server.json` (`llm4all ui`'s, or a background one); when none is running, the
first flow command starts one in the background on 127.0.0.1 (a free port, its log in
`<home>/prefect/server.log`) and records it, and every later command reuses it — no temporary
server per command. `PREFECT_API_URL`, when set, wins over all of this.

Nothing here imports Prefect: the server must be chosen before Prefect reads its settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from warehouse.files import atomic_write_text


class ServerError(RuntimeError):
    """The local Prefect server could not be started or reached."""


def prefect_env(home: Path) -> None:
    """Settings Prefect reads at import: a project-local PREFECT_HOME, no analytics, our log
    lines in the run logs."""
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect won't
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def configured_api_url() -> str | None:
    """The API URL Prefect is already pointed at (environment, or settings of a Prefect that is
    already imported, e.g. a test harness), if any."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    return None


def connect(home: Path, start: bool = True) -> str:
    """Point Prefect at this home's server (starting one with `start`); its API URL."""
    url = configured_api_url()
    if url:
        return url
    info = running_server(home) if not start else ensure_server(home)
    if info is None:
        raise ServerError(
            f"no Prefect server is running for {home}: start one with `llm4all ui` (or run "
            "any flow command, which starts one in the background)"
        )
    os.environ["PREFECT_API_URL"] = info["api_url"]
    return info["api_url"]


def server_file(home: Path) -> Path:
    return home / "prefect" / "server.json"


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def running_server(home: Path) -> dict[str, Any] | None:
    """The live server recorded for this home ({pid, api_url, url, kind}), if any."""
    try:
        info = json.loads(server_file(home).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info if healthy(info["api_url"]) else None


def ensure_server(home: Path, timeout_s: float = 180.0) -> dict[str, Any]:
    """The running server of this home, started in the background if there is none. Two
    commands starting at once start one server (a lock around the start)."""
    if info := running_server(home):
        return info
    folder = home / "prefect"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if info := running_server(home):  # started while we waited
            return info
        port = free_port()
        info = start_server(home, "127.0.0.1", port, folder / "server.log", timeout_s)
        record_server(home, info | {"kind": "background"})
    logging.getLogger(__name__).info("started a Prefect server for %s: %s", home, info["url"])
    return info


def start_server(home: Path, host: str, port: int, log: Path, timeout_s: float) -> dict[str, Any]:
    """`prefect server start` detached (its own session, so it outlives this command), once it
    answers its health check."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_HOME", str(home / "prefect"))
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while not healthy(f"{url}/api", timeout=1.0):
        if proc.poll() is not None:
            raise ServerError(f"the Prefect server exited ({proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            stop_process(proc.pid)
            raise ServerError(f"the Prefect server did not answer within {timeout_s:.0f} s: {log}")
        time.sleep(0.3)
    return {"pid": proc.pid, "api_url": f"{url}/api", "url": url, "started": time.time()}


def record_server(home: Path, info: dict[str, Any]) -> None:
    server_file(home).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(server_file(home), json.dumps(info))


def stop_process(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM to the process group of `pid` (a server and its workers), SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure_logging(debug: bool) -> None:
    """Logs on stderr through Prefect's console handler: our packages at INFO, third parties
    (GX, httpx, ...) only when they warn, and no tracebacks unless --debug: Prefect logs a
    failed task's traceback, where we print one line instead."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()  # idempotent; we need its handlers in place to adjust them
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    from flows.cli.app import set_log_levels

    set_log_levels(debug)
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
