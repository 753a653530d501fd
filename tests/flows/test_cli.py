"""The CLI contract: exit codes, one JSON object on stdout with --json, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import good_records, news_docs, write_jsonl

runner = CliRunner()


def _json(result) -> dict:
    out = result.stdout.strip()
    assert out.count("\n") == 0, f"stdout must hold exactly one JSON object, got:\n{out}"
    return json.loads(out)


def test_help_does_not_import_the_heavy_stack() -> None:
    code = (
        "import sys, flows.cli\n"
        "heavy = {'torch', 'transformers', 'prefect', 'great_expectations', 'datasets'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert runner.invoke(app, ["--help"]).exit_code == 0


def test_third_party_install_warnings_are_quiet_unless_debug() -> None:
    import logging

    from flows.cli.app import QUIET_LOGGERS, set_log_levels

    names = (*QUIET_LOGGERS, "tasks", "flows")
    before = {n: logging.getLogger(n).level for n in names}
    try:
        set_log_levels(debug=False)
        # torchao's "Failed to load ...so" and its children's ("Detected no triton") stay
        # quiet; our own INFO lines and a third party's errors still print.
        assert not logging.getLogger("torchao").isEnabledFor(logging.WARNING)
        assert not logging.getLogger("torchao.kernel.intmm").isEnabledFor(logging.WARNING)
        assert logging.getLogger("torchao").isEnabledFor(logging.ERROR)
        assert not logging.getLogger("torch.utils._pytree").isEnabledFor(logging.WARNING)
        assert logging.getLogger("tasks.curate.scores").isEnabledFor(logging.INFO)
        set_log_levels(debug=True)
        assert logging.getLogger("torchao").level == logging.NOTSET
        assert logging.getLogger("flows").isEnabledFor(logging.DEBUG)
    finally:
        for n, level in before.items():
            logging.getLogger(n).setLevel(level)


def test_usage_errors_exit_2(home: Path) -> None:
    r = runner.invoke(app, ["ingest", "x.jsonl"])  # no --dataset
    assert r.exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_status_of_an_empty_warehouse(home: Path) -> None:
    r = runner.invoke(app, ["status", "--json"])
    assert r.exit_code == 0
    assert _json(r) == {
        "ok": True,
        "home": str(home.resolve()),
        "datasets": [],
        "settings": {},
        "ingest_runs": [],
        "models": [],
    }


def test_errors_are_one_line_and_exit_1(home: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(tmp_path / "missing.jsonl"), "-d", "news"])
    assert r.exit_code == 1
    assert r.stderr.strip().startswith("error: source not found")
    assert "Traceback" not in r.stderr
    r = runner.invoke(app, ["ingest", str(tmp_path / "x.jsonl"), "-d", "../up", "--json"])
    assert r.exit_code == 1 and _json(r)["error"] == "InvalidName"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  bogus: 1\n")
    r = runner.invoke(app, ["status", "--config", str(cfg)])
    assert r.exit_code == 1 and "unknown key 'ingest.bogus'" in r.stderr


@pytest.mark.flow
def test_ingest_reingest_and_status(prefect_harness: None, home: Path, tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "news.jsonl",
        [*good_records(1000), b"{broken", {"text": ""}, b"\xff\xfe", {"text": "  "}],
    )
    r = runner.invoke(app, ["ingest", str(src), "--dataset", "news", "--json"])
    assert r.exit_code == 0, r.stderr
    out = _json(r)
    assert (out["accepted"], out["quarantined"], out["already_present"]) == (1000, 4, 0)
    assert [q["line"] for q in out["quarantine_examples"]] == [1001, 1002, 1003, 1004]
    assert out["gate"]["passed"] is True and out["ref"]["version"] == 1

    r = runner.invoke(app, ["ingest", str(src), "--dataset", "news"])  # human output
    assert r.exit_code == 0, r.stderr
    assert "accepted                  0" in r.stdout and "line 1001: malformed JSON" in r.stdout

    status = _json(runner.invoke(app, ["status", "--json"]))
    (news,) = status["datasets"]
    assert (news["name"], news["rows"]) == ("news", 1000)
    assert [v["gate_passed"] for v in news["versions"]] == [True]
    assert news["versions"][0]["flow_run_id"]  # lineage to the Prefect run
    assert len(status["ingest_runs"]) == 2

    q = _json(runner.invoke(app, ["quarantine", "news", "--json"]))
    assert [row["line"] for row in q["rows"]] == [1001, 1002, 1003, 1004] * 2

    from prefect.artifacts import Artifact

    artifact = Artifact.get("gate-raw-news-1")  # the gate's table, for the Prefect UI
    assert artifact is not None and artifact.type == "table"
    assert "raw gate passed" in (artifact.description or "")


@pytest.mark.flow
def test_a_mostly_garbage_file_exits_3_naming_the_expectation(
    prefect_harness: None, home: Path, tmp_path: Path
) -> None:
    src = write_jsonl(tmp_path / "junk.jsonl", [{"text": "one good row"}] + [b"<html>"] * 30)
    r = runner.invoke(app, ["ingest", str(src), "-d", "junk", "--json"])
    assert r.exit_code == 3
    out = _json(r)
    assert out["error"] == "gate_failed" and out["quarantined"] == 30
    (failure,) = [e for e in out["gate"]["expectations"] if not e["success"]]
    assert failure["column"] == "quarantined_share"
    assert "quarantined_share" in r.stderr and "Traceback" not in r.stderr
    status = _json(runner.invoke(app, ["status", "--json"]))
    assert status["datasets"][0]["versions"][0]["gate_passed"] is False
    assert status["datasets"][0]["rows"] == 0  # a failed version is not part of the dataset


@pytest.mark.slow
def test_ui_serves_prefect_on_localhost_and_sigterm_stops_its_server(
    home: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import time

    from flows.cli.prefect_env import free_port, healthy

    port = free_port()
    env = {**os.environ, "LLM4ALL_HOME": str(home), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from flows.cli import main; main()", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    info_path = home / "prefect" / "server.json"
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (info_path.exists() and healthy(api)):
            time.sleep(1)
        assert healthy(api), "the Prefect server did not come up"
        info = json.loads(info_path.read_text())
        assert info["api_url"] == api and info["kind"] == "ui"
        server_pid = int(info["pid"])
    finally:
        proc.send_signal(signal.SIGTERM)  # what a service manager sends; not the group
        proc.wait(timeout=60)
    assert not info_path.exists()  # no stale pointer to a dead server
    assert not healthy(api, timeout=1.0)
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)  # the server went with it


@pytest.mark.flow
def test_cache_logits_command(prefect_harness: None, home: Path, tmp_path: Path) -> None:
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "teacher")
    docs = news_docs(40)
    src = write_jsonl(tmp_path / "news.jsonl", docs)
    assert runner.invoke(app, ["ingest", str(src), "-d", "news"]).exit_code == 0
    args = ["cache-logits", "-d", "news", "--teacher", str(teacher), "--mode", "topk"]
    args += ["--set", "tokens.block_size=16", "--set", "logits.k=4", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    out = _json(r)
    (tokens,) = out["tokens"]["refs"]
    (logits,) = out["logits"]["refs"]
    assert logits["rows"] == tokens["rows"] * 16
    assert [g["passed"] for g in out["gates"]] == [True]
    status = _json(runner.invoke(app, ["status", "--json"]))
    stages = {d["stage"]: d for d in status["datasets"]}
    assert stages["logits"]["versions"][0]["parent"] == "tokens/news@1"
    assert stages["tokens"]["versions"][0]["gate_passed"] is True
    again = _json(runner.invoke(app, args))  # nothing new: answered from the catalog
    assert again["tokens"] == out["tokens"] | {"refs": [], "skipped": ["raw/news@1"]}
    assert again["logits"].keys() == out["logits"].keys()  # the flow's shape
    assert again["logits"]["refs"] == [] and again["logits"]["skipped"] == ["tokens/news@1"]
    other = _json(runner.invoke(app, [*args[:-1], "--set", "logits.k=8", "--json"]))
    assert [r["version"] for r in other["logits"]["refs"]] == [2]  # another cache key: work
    r = runner.invoke(app, ["cache-logits", "-d", "news", "--teacher", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "not found" in r.stderr


@pytest.mark.flow
def test_distill_command_and_models_in_status(
    prefect_harness: None, home: Path, tmp_path: Path
) -> None:
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "teacher")
    src = write_jsonl(tmp_path / "news.jsonl", news_docs(40))
    assert runner.invoke(app, ["ingest", str(src), "-d", "news"]).exit_code == 0
    common = ["--set", f"teacher.path={teacher}", "--set", "tokens.block_size=16"]
    common += ["--set", "tokens.validation_share=0.2"]
    r = runner.invoke(app, ["cache-logits", "-d", "news", *common, "--set", "logits.samples=8"])
    assert r.exit_code == 0, r.stderr
    args = ["distill", "-d", "news", "--steps", "2", *common, "--set", "distill.batch_blocks=2"]
    args += ["--set", "distill.eval_speed_tokens=2", "--set", "gates.student.max_ppl_ratio=100"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.stderr
    out = _json(r)
    assert out["ok"] and out["model"]["key"] == "models/news-student@1"
    assert out["model"]["gate_passed"] is True and out["train"]["steps"] == 2
    status = _json(runner.invoke(app, ["status", "--json"]))
    (m,) = status["models"]
    assert m["tokens"] == ["tokens/news@1"] and m["logits"] == ["logits/news@1"]
    assert m["teacher"] == str(teacher) and m["promoted"]
    r = runner.invoke(app, [*args, "--set", "distill.max_steps=3", "--set", "distill.name=strict",
                            "--set", "gates.student.max_ppl_ratio=0.01", "--json"])  # fmt: skip
    assert r.exit_code == 3 and _json(r)["error"] == "gate_failed"
    human = runner.invoke(app, ["status"]).stdout
    assert "model models/news-student@1 (promoted)" in human and "models/strict@1" in human
