"""`llm4all demo --ablation --tiny`: the curation ablation as a product command — a noisy
corpus built from the embedded articles, raw and curated students (the test profile: a random
2-layer teacher, a few dozen rows, two seeds), and a report whose figures are the run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = [pytest.mark.flow, pytest.mark.slow(minutes=2)]


def test_demo_ablation_tiny_writes_the_report(home: Path, prefect_harness: None) -> None:
    # the config's filters are the ones that run (here without quality heuristics)
    args = ["demo", "--ablation", "--tiny", "--set", "dedup.quality.enabled=false", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    on = out["curation"]["filters_on"]
    assert "quality" not in on and {"exact", "near", "mgt", "factuality"} <= set(on)

    assert out["seeds"] == 2
    raw, cur = out["raw"], out["curated"]
    assert raw["seeds"] == cur["seeds"] == 2 and "skipped" not in out  # ci: no deadline
    # the curated student trains on the rows the filters kept: fewer, so fewer steps and tokens
    assert 0 < cur["rows"] < raw["rows"] and cur["steps"] <= raw["steps"]
    assert out["verdict"]["cost_ratio"] == pytest.approx(cur["cost_tokens"] / raw["cost_tokens"])
    assert out["verdict"]["cost_ratio"] < 1.0

    report = Path(out["report"]["report"])
    assert report.is_relative_to(home / "reports" / "ablation")
    text = report.read_text()
    assert (report.parent / "ablation.png").stat().st_size > 1000 and "](ablation.png)" in text
    # the report's figures are the run's
    ppl = f"{raw['ppl_mean']:.2f} ± {raw['ppl_sd']:.2f}"
    assert f"| raw rows | {raw['rows']} | {raw['steps']} | 2 | {ppl} |" in text
    assert f"{out['verdict']['cost_ratio']:.2f}×" in text
    # the built corpus labels its noise: the oracle student (no known noise) and its bars
    oracle = out["oracle"]
    assert 0 < oracle["rows"] < raw["rows"]
    assert f"| oracle: no known noise | {oracle['rows']} | {oracle['steps']} | 1 |" in text
    assert "what perfect filters would buy" in text
    summary = out["report"]["summary"]
    assert len(summary) == 5 and f"curated {cur['ppl_mean']:.1f}" in summary[1]
