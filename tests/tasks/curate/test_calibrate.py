"""The calibration interval: how far a threshold set on n human texts can be from its target."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.curate.calibrate import fpr_interval
from tasks.curate.mgt import threshold_for_fpr


def test_the_interval_covers_the_true_rate_as_often_as_it_says() -> None:
    # Human scores ~ U(0, 1): a threshold t marks exactly 1 - t of new human text.
    rng = np.random.default_rng(0)
    n, target, trials = 60, 0.05, 4000
    covered = 0
    for _ in range(trials):
        scores = rng.random(n)
        t = threshold_for_fpr(scores.tolist(), target)
        lo, hi = fpr_interval(n, int((scores > t).sum()))
        covered += lo <= 1.0 - t <= hi
    assert covered / trials == pytest.approx(0.90, abs=0.02)


def test_more_texts_narrow_it() -> None:
    lo60, hi60 = fpr_interval(60, 3)
    lo600, hi600 = fpr_interval(600, 30)
    assert lo60 < 0.05 < hi60 and lo600 < 0.05 < hi600
    assert hi600 - lo600 < (hi60 - lo60) / 2


def test_it_needs_a_text_on_the_safe_side() -> None:
    with pytest.raises(ValueError, match="beyond < n"):
        fpr_interval(10, 10)
