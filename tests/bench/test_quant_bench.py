"""The quantization benchmark's CI profile: every backend runs, in one process, and the
figures are the ones the issue's targets are about (no timings asserted)."""

from __future__ import annotations

import math

import pytest

from bench.quant import IN_MEMORY, report, run


@pytest.mark.slow
def test_tiny_profile_runs_every_backend_and_measures_the_optimizer_state() -> None:
    out = run("tiny")
    rows = {r["method"]: r for r in out["rows"]}
    assert list(rows) == list(IN_MEMORY) and all("ppl" in r for r in rows.values())
    for r in rows.values():
        assert math.isfinite(r["ppl"]) and r["fwd tok/s"] > 0 and r["gen tok/s"] > 0
        assert 0 < r["weight ratio"] < 0.35 and 0 < r["disk ratio"] < 0.5
        assert abs(r["Δppl %"]) < 5  # a smooth random model: every backend stays close
    assert rows["nf4"]["weight ratio"] < 0.18  # packed 4-bit, double-quantized scales
    assert rows["nf4"]["weight ratio"] < rows["int8"]["weight ratio"]
    opt = out["optimizer_bytes_per_param"]
    assert opt["adamw"] == pytest.approx(8.0, rel=1e-3) and 1.9 < opt["adamw8bit"] < 2.5
    assert "8bit_meeting_target" in out["summary"] and "method" in report(out)
