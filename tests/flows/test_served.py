"""`llm4all serve` and `llm4all run` against a real local Prefect server (the session's, on a
free loopback port): a cron schedule fires, overlapping triggers queue and both complete, a
failed run exits non-zero with its reason, and a deployment nobody serves is refused at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import default_sigint, news_docs, write_jsonl
from tests.tiny import tiny_pipeline_config

pytestmark = [pytest.mark.flow, pytest.mark.slow(minutes=2)]

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, source: Path) -> Path:
    """The smallest pipeline that does every stage's real work, every minute."""
    return tiny_pipeline_config(
        tmp, refresh={"sources": [str(source)], "pipeline_cron": "* * * * *", "steps": 2}
    )


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "LLM4ALL_HOME": str(home), "PYTHONPATH": str(ROOT)}


def _llm4all(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=_env(home),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _runs(deployment: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    flow_name, _, name = deployment.partition("/")
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
        )
    return [r for r in runs if r.name and _flow_of(r) == flow_name]


def _flow_of(run: Any) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow(run.flow_id).name


def _wait_until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_and_run_against_a_real_server(
    tmp_path: Path, home: Path, prefect_harness: None
) -> None:
    from flows.deployments import follow

    source = write_jsonl(tmp_path / "news.jsonl", news_docs(24))
    cfg = _config(tmp_path, source)
    first = CliRunner().invoke(app, ["pipeline", "-d", "news_feed", "-c", str(cfg), "--json"])
    assert first.exit_code == 0, first.output  # builds the dataset and records its settings

    # Not served yet: refused at once, with one line (not "started" and a run that never goes).
    unknown = _llm4all(home, "run", "pipeline", "-d", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: no deployment pipeline/nope on this Prefect server: serve it with "
        "`llm4all serve -d nope`"
    )

    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "-d", "news_feed"],  # recorded settings
        cwd=ROOT, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    try:
        assert serve.stderr is not None
        seen = []
        for line in serve.stderr:  # the schedule comes from the recorded settings
            seen.append(line)
            if "serving refresh/news_feed" in line:
                break
        assert any("serving pipeline/news_feed (* * * * *)" in s for s in seen), seen
        _wait_until("the runner's first poll", lambda: _polled("pipeline/news_feed"), 120)

        # Two overlapping triggers: both complete, one after the other.
        started = []
        for _ in range(2):
            r = _llm4all(home, "run", "pipeline", "-d", "news_feed", "--json")
            assert r.returncode == 0, r.stderr
            started.append(json.loads(r.stdout))
        assert all(s["state"] == "Scheduled" for s in started)
        finals = [follow(UUID(s["flow_run_id"]), echo=lambda _: None) for s in started]
        assert [f.name for f in finals] == ["Completed", "Completed"]
        a, b = (_read_run(s["flow_run_id"]) for s in started)
        assert b.start_time >= a.end_time  # queued, not run at the same time nor cancelled

        # A failed run: --wait follows it and exits 1 with the reason.
        bad = _llm4all(
            home, "run", "pipeline", "-d", "news_feed", "--wait", "--json",
            "--param", f"sources=['{tmp_path / 'missing.jsonl'}']",
        )  # fmt: skip
        assert bad.returncode == 1, bad.stderr
        out = json.loads(bad.stdout)
        assert out["ok"] is False and out["state"] == "Failed"
        assert "source not found" in out["message"] and "missing.jsonl" in out["message"]
        assert "Traceback" not in bad.stderr

        # The cron schedule (every minute) fires on its own.
        def scheduled_done() -> bool:
            return any(
                r.auto_scheduled and r.state_name == "Completed"
                for r in _runs("pipeline/news_feed")
            )

        _wait_until("a scheduled pipeline run to complete", scheduled_done, 240)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)


def test_a_deployment_nobody_serves_is_refused(
    tmp_path: Path, home: Path, prefect_harness: None
) -> None:
    from flows.config import load_config
    from flows.deployments import build_deployments

    for d in build_deployments("idle_ds", load_config(None)):
        d.apply()  # registered, but no runner polls for it
    r = _llm4all(home, "run", "refresh", "-d", "idle_ds")
    assert r.returncode == 1
    assert "no runner serves refresh/idle_ds (polled never)" in r.stderr


def _polled(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).last_polled is not None
        except ObjectNotFound:
            return False


def _read_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)
