"""The pipeline and refresh flows end to end on a tiny teacher, through the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog
from warehouse.registry import list_models

pytestmark = [pytest.mark.flow, pytest.mark.slow]


def _config(tmp: Path) -> Path:
    cfg = {
        "teacher": {"path": str(make_tiny_llama(tmp / "teacher"))},
        "dedup": {"semantic": {"enabled": False}, "quality": {"enabled": False}},
        "tokens": {"block_size": 16, "validation_share": 0.25},
        "logits": {"mode": "sampled", "samples": 16, "shard_blocks": 4},
        "distill": {
            "max_steps": 4, "batch_blocks": 2, "eval_every": 2, "checkpoint_every": 2,
            "eval_speed_tokens": 4, "rouge_pairs": 0, "lr": 3e-3, "ce_weight": 1.0,
        },
        "refresh": {"steps": 6, "max_old_regression": 10.0},
        "gates": {"student": {"max_ppl_ratio": 100.0}, "curated": {"min_rows_for_shares": 10}},
    }  # fmt: skip
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _latest_run_logs(flow_name: str) -> list[str]:
    """The log messages of the newest run of `flow_name`, as the Prefect API serves them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        run = max(runs, key=lambda r: r.created)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return [entry.message for entry in logs]


def _flow_runs(flow_name: str) -> int:
    """How many runs of `flow_name` the Prefect API knows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        flows = FlowFilter(name=FlowFilterName(any_=[flow_name]))
        return len(client.read_flow_runs(flow_filter=flows))


def _cli(*args: str) -> tuple[int, dict]:
    res = CliRunner().invoke(app, [*args, "--json"])
    return res.exit_code, (json.loads(res.stdout) if res.stdout.strip() else {"output": res.output})


def test_pipeline_then_refresh(
    tmp_path: Path, home: Path, catalog: Catalog, prefect_harness: None,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    cfg = str(_config(tmp_path))
    a = str(write_jsonl(tmp_path / "a.jsonl", news_docs(80)))
    code, out = _cli("pipeline", "-d", "news", a, "-c", cfg)
    assert code == 0, out
    assert out["ingest"][0]["accepted"] == 80 and out["distill"]["model"]["promoted"]
    # The Logs tab of the run (the API the UI reads): the project's own lines, not only
    # Prefect's "Beginning ..."/"Finished ...".
    pipeline_logs = "\n".join(_latest_run_logs("pipeline"))
    assert (
        "ingest: " in pipeline_logs and "80 in = 80 accepted + 0 already present" in pipeline_logs
    )
    assert "distill: models/news-student@1 (trained)" in pipeline_logs
    distill_logs = "\n".join(_latest_run_logs("distill"))
    assert "step 1/4: loss" in distill_logs and "tokens/s" in distill_logs
    assert "student gate passed for models/news-student@1" in distill_logs

    runs = _flow_runs("pipeline")
    code, again = _cli("pipeline", "-d", "news", a, "-c", cfg)  # nothing changed
    assert code == 0, again
    assert again["ingest"][0]["ref"] is None and again["curate"]["versions"] == []
    assert again["tokens"]["refs"] == [] and again["distill"]["skipped"]
    assert _flow_runs("pipeline") == runs  # answered from the catalog: no flow run
    human = CliRunner().invoke(app, ["pipeline", "-d", "news", a, "-c", cfg])
    assert human.exit_code == 0 and "nothing new" in human.stdout
    assert "distill  models/news-student@1 (already there)" in human.stdout
    # Other settings for the dataset: the flow runs (every stage skips) and records them.
    code, told = _cli("pipeline", "-d", "news", a, "-c", cfg, "--set", "locks.progress_s=30")
    assert code == 0, told
    assert told["distill"]["skipped"] and _flow_runs("pipeline") == runs + 1
    assert Catalog(home).settings("news")["overrides"] == {"locks.progress_s": 30}

    b = str(write_jsonl(tmp_path / "b.jsonl", news_docs(80, prefix="court")))
    # Another run of the dataset holds its run lock until the refresh queues behind it: the
    # refresh waits its turn, saying whom it waits for, then runs.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom pathlib import Path\n"
         "from warehouse.lock import RunLock\n"
         f"home = Path({str(home)!r})\n"
         "with RunLock(home, 'news', label='other'):\n"
         "    print('held', flush=True)\n"
         "    while len(list((home / 'runs' / 'news.queue').glob('*.ticket'))) < 2:\n"
         "        time.sleep(0.1)\n"
         "    time.sleep(1)"],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    caplog.set_level(logging.INFO, logger="warehouse.lock")
    code, ref = _cli("refresh", "-d", "news", b)  # the settings recorded by the pipeline
    assert holder.wait() == 0
    assert code == 0, ref
    assert f"held by pid {holder.pid}" in caplog.text  # it said whom it waited for
    r = ref["refresh"]
    assert r["parent"] == "models/news-student@1" and r["decision"]["promote"]
    assert r["promoted"] == "models/news-student@2"
    (v2,) = [m for m in list_models(catalog) if m.version == 2]
    assert v2.parent == "models/news-student@1" and v2.promoted
    # Nothing new since: told other settings, the flow runs, trains nothing and records them;
    # then the same refresh answers from the catalog, with what that flow run returned.
    code, flowed = _cli("refresh", "-d", "news", b, "--set", "locks.progress_s=31")
    assert code == 0, flowed
    assert flowed["refresh"]["model"] is None and flowed["refresh"]["skipped"]
    runs = _flow_runs("refresh")
    code, answered = _cli("refresh", "-d", "news", b)
    assert code == 0, answered
    assert _flow_runs("refresh") == runs
    assert _untimed(answered) == _untimed(flowed)


def _untimed(out: dict) -> dict:
    """A pipeline or refresh result without what a clock or an ingest run's id decides (an
    answer from the catalog records no ingest run; it names the raw version instead)."""
    drop = ("run_id", "seconds", "unchanged_since")
    ingest = [{k: v for k, v in i.items() if k not in drop} for i in out["ingest"]]
    return out | {"ingest": ingest, "logits": out["logits"] | {"seconds": None}}


def test_deployments_are_named_as_the_dataset_and_carry_their_settings(tmp_path: Path) -> None:
    from flows.config import load_config
    from flows.deployments import build_deployments

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"refresh": {"cron": "0 4 * * 0"}}))
    pipe, refresh = build_deployments("my_news", load_config(path))
    assert (pipe.flow_name, pipe.name, refresh.name) == ("pipeline", "my_news", "my_news")
    assert pipe.schedules == [] and refresh.schedules[0].schedule.cron == "0 4 * * 0"
    for d in (pipe, refresh):  # runs queue (runner limit + run lock), never cancelled
        assert d.concurrency_limit is None
        # no settings given: each run resolves the dataset's recorded ones when it starts
        assert d.parameters == {"dataset": "my_news", "config_path": None, "overrides": None}
    told = build_deployments("my_news", load_config(path), str(path), {"distill.max_steps": 3})
    assert told[0].parameters["overrides"] == {"distill.max_steps": 3}
