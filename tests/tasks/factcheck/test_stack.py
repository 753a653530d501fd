"""The stacker: plain JSON that round-trips to the same predictions."""

from __future__ import annotations

import json
import random

import numpy as np

from tasks.factcheck.stack import Stacker, fit


def test_stacker_json_round_trip_predicts_the_same() -> None:
    rng = random.Random(0)
    rows = [{"n_words": rng.randint(5, 60), "cov_mean": rng.random(), "xc_minlogit": rng.gauss(0, 20)} for _ in range(80)]  # fmt: skip
    labels = [int(r["cov_mean"] > 0.5) for r in rows]
    st = fit(rows, labels, ["n_words", "cov_mean", "xc_minlogit"], fitted_on="test rows")
    text = st.to_json()
    assert json.loads(text)["features"] == ["n_words", "cov_mean", "xc_minlogit"]
    back = Stacker.from_json(text)
    assert np.array_equal(back.predict(rows), st.predict(rows))
    p = st.predict(rows)
    assert ((p > 0.5) == np.array(labels, dtype=bool)).mean() > 0.9  # it learnt the signal


def test_the_shipped_fallback_loads_and_uses_only_text_features() -> None:
    from tasks.factcheck.scorer import FALLBACK
    from tasks.factcheck.text import CHEAP_FEATURE_SIGNS, CHEAP_FEATURES

    st = Stacker.load(FALLBACK)
    assert st.features == list(CHEAP_FEATURES) and "TRAIN articles" in st.fitted_on
    for f, c in zip(st.features, st.coef, strict=True):  # fitted with CHEAP_FEATURE_SIGNS
        assert c * CHEAP_FEATURE_SIGNS[f] >= 0, f


def test_signs_bound_the_weights_and_free_fits_match_sklearn() -> None:
    rng = random.Random(1)
    rows = [{"cov_mean": rng.random(), "n_words": rng.randint(5, 60)} for _ in range(200)]
    # The labels follow cov_mean *downwards*: a free fit gives it a negative weight.
    labels = [int(r["cov_mean"] < 0.5) for r in rows]
    free = fit(rows, labels, ["cov_mean", "n_words"])
    bounded = fit(rows, labels, ["cov_mean", "n_words"], signs={"cov_mean": 1, "n_words": 0})
    assert free.coef[0] < -1.0 and bounded.coef[0] == 0.0  # held at the bound, not flipped
    # With no bound that binds, the L-BFGS-B fit is sklearn's (same objective, same optimum).
    ok = [int(r["cov_mean"] > 0.5) for r in rows]
    a = fit(rows, ok, ["cov_mean", "n_words"])
    b = fit(rows, ok, ["cov_mean", "n_words"], signs={"cov_mean": 1})
    assert np.allclose(a.coef, b.coef, atol=1e-2) and abs(a.bias - b.bias) < 1e-2  # solver tol
