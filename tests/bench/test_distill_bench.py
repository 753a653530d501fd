"""The distillation benchmark's CI profile: the issue's quality targets, at toy scale."""

from __future__ import annotations

import math

from bench.distill import run


def test_tiny_profile_kd_beats_ce_and_the_sampled_cache_matches_online_kd() -> None:
    out = run("tiny", device="cpu")
    runs = {r["run"]: r for r in out["rows"]}
    assert list(runs) == ["CE only", "online full KD", "top-k cache KD", "sampled cache KD"]
    assert all(math.isfinite(r["held-out ppl"]) for r in runs.values())
    s = out["summary"]
    assert s["kd_vs_ce_ppl_gain_pct"] >= 5.0  # KD beats CE-only at equal tokens
    assert abs(s["sampled_vs_online_ppl_pct"]) <= 3.0  # the unbiased cache ~ the full teacher
    assert runs["sampled cache KD"]["held-out ppl"] < runs["CE only"]["held-out ppl"]
    assert 0.5 < s["param_share"] < 0.7  # 2 of 4 layers, embeddings kept
    assert runs["sampled cache KD"]["cache B/token"] < runs["top-k cache KD"]["cache B/token"]
