"""The bench's test-side corruptions: one unfaithful variant per article, of a named kind,
never equal to the human summary, never borrowing from the same article."""

from __future__ import annotations

from bench.factuality_corrupt import KINDS, rule_test_set
from tests.helpers import factuality_pair


def test_rule_test_set_pairs_each_summary_with_one_corruption() -> None:
    rows = [
        {**p, "right_summary": p["summary"], "idx": i}
        for i, p in enumerate(map(factuality_pair, range(30)))
    ]
    out = rule_test_set(rows, rows, seed=3)
    faithful = [r for r in out if r["label"] == 1]
    unfaithful = [r for r in out if r["label"] == 0]
    assert len(faithful) == 30 and 25 <= len(unfaithful) <= 30
    assert {r["kind"] for r in unfaithful} <= set(KINDS) and len(
        {r["kind"] for r in unfaithful}
    ) >= 4
    human = {r["idx"]: r["summary"] for r in faithful}
    assert all(r["summary"] != human[r["idx"]] for r in unfaithful)


def test_scores_of_without_a_model_uses_the_given_fallback(tmp_path) -> None:
    """`--no-model`: no classifier rows; `--fallback FILE`: that stacker, not the shipped one."""
    import numpy as np

    from bench.factuality import scores_of
    from tasks.factcheck.scorer import FALLBACK, FactualityScorer
    from tasks.factcheck.stack import Stacker

    rows = [factuality_pair(i) for i in range(6)]
    shipped = FactualityScorer(None)
    sc = scores_of(rows, None, shipped)
    assert set(sc) == {
        "length (-words)",
        "entity precision (old)",
        "coverage mean",
        "fallback stacker",
    }
    flipped = Stacker.load(FALLBACK)
    flipped.coef, flipped.bias = [-c for c in flipped.coef], -flipped.bias  # P -> 1 - P
    other = FactualityScorer(None)
    other.stacker = flipped
    got = scores_of(rows, None, other)["fallback stacker"]
    assert np.allclose(got, 1 - sc["fallback stacker"])
