"""The pipeline and refresh flows end to end on a tiny teacher, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog
from warehouse.lock import WriterLock
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


def _cli(*args: str) -> tuple[int, dict]:
    res = CliRunner().invoke(app, [*args, "--json"])
    return res.exit_code, (json.loads(res.stdout) if res.stdout.strip() else {"output": res.output})


def test_pipeline_then_refresh(
    tmp_path: Path, home: Path, catalog: Catalog, prefect_harness: None
) -> None:
    cfg = str(_config(tmp_path))
    a = str(write_jsonl(tmp_path / "a.jsonl", news_docs(80)))
    code, out = _cli("pipeline", "-d", "news", a, "-c", cfg)
    assert code == 0, out
    assert out["ingest"][0]["accepted"] == 80 and out["distill"]["model"]["promoted"]

    code, again = _cli("pipeline", "-d", "news", a, "-c", cfg)  # nothing changed
    assert code == 0, again
    assert again["ingest"][0]["ref"] is None and again["curate"]["versions"] == []
    assert again["tokens"]["refs"] == [] and again["distill"]["skipped"]

    b = str(write_jsonl(tmp_path / "b.jsonl", news_docs(80, prefix="court")))
    with WriterLock(home, name="refresh.lock"):  # another refresh holds the warehouse
        code, busy = _cli("refresh", "-d", "news", b, "-c", cfg)
    assert code == 1 and "a refresh is already running" in busy["message"]

    code, ref = _cli("refresh", "-d", "news", b, "-c", cfg)
    assert code == 0, ref
    r = ref["refresh"]
    assert r["parent"] == "models/news-student@1" and r["decision"]["promote"]
    assert r["promoted"] == "models/news-student@2"
    (v2,) = [m for m in list_models(catalog) if m.version == 2]
    assert v2.parent == "models/news-student@1" and v2.promoted


def test_deployments_have_their_schedules_and_run_one_at_a_time(tmp_path: Path) -> None:
    from flows.deployments import build_deployments

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"refresh": {"cron": "0 4 * * 0"}}))
    pipe, refresh = build_deployments("my_news", str(path))
    assert (pipe.flow_name, pipe.name, refresh.name) == ("pipeline", "my-news", "my-news")
    assert pipe.schedules == [] and refresh.schedules[0].schedule.cron == "0 4 * * 0"
    for d in (pipe, refresh):
        assert d.concurrency_limit == 1
        assert d.concurrency_options.collision_strategy.value == "CANCEL_NEW"
        assert d.parameters == {"dataset": "my_news", "config_path": str(path)}
