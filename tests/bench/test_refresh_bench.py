"""The refresh benchmark's CI profile: replay against naive fine-tuning, at toy scale."""

from __future__ import annotations

import math

import pytest
import torch

from bench.refresh import run


@pytest.mark.slow
def test_tiny_profile_replay_forgets_less_than_naive_fine_tuning() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from 2 threads; on busy cores they spin
    try:
        out = run("tiny", device="cpu")
    finally:
        torch.set_num_threads(threads)
    rows = {r["variant"]: r for r in out["rows"]}
    assert list(rows) == [
        "base (promoted)", "naive (new only)", "replay 25%", "replay 50%", "full retrain (old+new)"
    ]  # fmt: skip
    for r in rows.values():
        assert all(math.isfinite(r[k]) for k in ("old ppl", "new ppl", "wall s")), r
        assert r["wall s"] > 0
    naive, replay = rows["naive (new only)"], rows["replay 25%"]
    assert naive["old regr %"] > 10  # the new domain really differs: fine-tuning on it forgets
    assert replay["old regr %"] < naive["old regr %"]  # replay forgets less (seeds 0-2 checked)
    for r in (naive, replay, rows["replay 50%"]):  # every refresh learns the new domain
        assert r["new gain %"] > 20
        assert r["steps"] == 60
    assert rows["full retrain (old+new)"]["steps"] == 360
    s = out["summary"]
    assert s["refresh_over_full_steps"] == pytest.approx(60 / 360)
    assert 0 < s["refresh_over_full_seconds"] < 1
