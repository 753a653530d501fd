"""The near-duplicate benchmark's CI profile: a tiny real corpus, every tool as a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.dedup import run


@pytest.mark.slow
def test_tiny_profile_runs_every_tool_and_ours_is_exact(tmp_path: Path) -> None:
    report = run([300], threshold=0.8, root=tmp_path)
    (corpus,) = report["corpora"]
    runs = {r["tool"]: r for r in corpus["runs"]}
    assert list(runs) == ["llm4all", "llm4all_estimate", "datasketch", "datasketch_exact"]
    for r in runs.values():
        assert r["rc"] == 0, r.get("stderr")
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0.0 <= r["f1"] <= 1.0
    ours = runs["llm4all"]
    assert ours["true_pairs"] > 0  # the injected copies are there
    assert ours["f1"] >= 0.95 and ours["pred_share_j_ge_0.5"] >= 0.99
    assert runs["datasketch_exact"]["precision"] == 1.0  # verified edges are never wrong
    assert corpus["truth_check"]["max_abs_diff"] == 0.0  # engine shingles = string shingles
    assert "datasketch / llm4all" in report["text"]
