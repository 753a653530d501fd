"""`llm4all train-factuality`: train -> register (lineage) -> gate -> promote, then `score`
and `curate` use the promoted model and say so."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import factuality_pair, write_jsonl

runner = CliRunner()


def _json(result) -> dict:
    out = result.stdout.strip()
    assert out.count("\n") == 0, f"stdout must hold exactly one JSON object, got:\n{out}"
    return json.loads(out)


def _tiny_sets(base: str) -> list[str]:
    """Training settings that take seconds on the tiny encoder; a gate it can pass."""
    sets = {
        "factcheck.base_model": base, "factcheck.train_examples": 60,
        "factcheck.dev_examples": 16, "factcheck.dev_pairs": 20, "factcheck.gate_pairs": 20,
        "factcheck.dev_share": 0.2, "factcheck.gate_share": 0.2, "factcheck.epochs": 1.0,
        "factcheck.eval_every": 4, "factcheck.max_length": 64, "factcheck.freeze_layers": 1,
        "gates.factuality.min_auroc": 0.0,
    }  # fmt: skip
    return [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]


@pytest.mark.slow
def test_train_register_then_score_and_curate_use_it(
    prefect_harness: None, home: Path, tmp_path: Path
) -> None:
    from tests.tiny import make_tiny_cross_encoder_base

    base = make_tiny_cross_encoder_base(tmp_path / "base")
    rows = [{"text": p["document"], "summary": p["summary"]} for p in map(factuality_pair, range(40))]  # fmt: skip
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert runner.invoke(app, ["ingest", str(src), "-d", "news"]).exit_code == 0

    sets = _tiny_sets(base)
    r = runner.invoke(app, ["train-factuality", "-d", "news", *sets, "--json"])
    assert r.exit_code == 0, r.stderr
    out = _json(r)
    m = out["model"]
    assert m["key"] == "models/factuality@1" and m["gate_passed"] and m["promoted"]
    assert out["source"] == ["raw/news@1"] and m["tokens"] == ["raw/news@1"]  # lineage
    assert m["metrics"]["pairs"] == 40 and "gate_auroc" in m["metrics"]
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0 and "model models/factuality@1 (promoted)" in status.stdout
    assert "factuality: gate AUROC" in status.stdout and "tokens raw/news@1" in status.stdout
    again = runner.invoke(app, ["train-factuality", "-d", "news", *sets])
    assert again.exit_code == 0 and "already holds this run" in again.stdout

    scored = tmp_path / "scored.parquet"
    r = runner.invoke(app, ["score", str(src), "-o", str(scored), "--filters", "factuality", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert _json(r)["factuality"]["scorer"] == "factuality model models/factuality@1"
    scores = pq.read_table(scored).column("factuality_score").to_pylist()
    assert len(scores) == 40 and all(s is not None and 0.0 <= s <= 1.0 for s in scores)

    r = runner.invoke(app, ["curate", "-d", "news", "--json"])
    assert r.exit_code == 0, r.stderr
    (version,) = _json(r)["versions"]
    assert version["factuality"]["scorer"] == "factuality model models/factuality@1"


def test_train_factuality_without_pairs_is_one_clear_error(
    prefect_harness: None, home: Path, tmp_path: Path
) -> None:
    from tests.helpers import news_docs

    src = write_jsonl(tmp_path / "docs.jsonl", news_docs(10))  # texts, no summaries
    assert runner.invoke(app, ["ingest", str(src), "-d", "docs"]).exit_code == 0
    r = runner.invoke(app, ["train-factuality", "-d", "docs"])
    assert r.exit_code == 1
    assert "has no row with a summary" in r.stderr and "Traceback" not in r.stderr
