"""The stacker: one logistic model over the features a scorer has (cheap text features, the
classifier's aggregates), fitted on a synthetic DEV split (never on rows anyone evaluates);
its probability is `factuality_score` = P(consistent).

Stored as plain JSON (feature names, standardisation, weights, bias), so the registry and the
repository hold no pickle, and a reader can see what each feature weighs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Counts and ratios spread over orders of magnitude: logs make them linear enough for one
# logistic model; the classifier's logit is clipped so one extreme pair cannot dominate.
_LOG1P = frozenset({"n_words", "n_sents", "n_unsupported", "neg_mismatch", "gender_clash"})


def transform(name: str, value: float) -> float:
    """The value of feature `name` as the logistic model sees it."""
    if name in _LOG1P:
        return math.log1p(max(value, 0.0))
    if name == "len_ratio":
        return math.log(max(value, 1e-4))
    if name == "xc_minlogit":
        return max(min(value, 12.0), -12.0)
    return value


@dataclass
class Stacker:
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    bias: float
    C: float = 1.0
    fitted_on: str = ""  # what it was fitted on, for a person reading the JSON

    def matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        x = np.array([[transform(f, r[f]) for f in self.features] for r in rows], dtype=float)
        x = x.reshape(len(rows), len(self.features))
        return (x - np.asarray(self.mean)) / np.asarray(self.scale)

    def predict(self, rows: list[dict[str, float]]) -> np.ndarray:
        """P(consistent) per row (each row a dict holding at least `features`)."""
        z = self.matrix(rows) @ np.asarray(self.coef) + self.bias
        return 1 / (1 + np.exp(-np.clip(z, -60, 60)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Stacker:
        return cls(**json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> Stacker:
        return cls.from_json(Path(path).read_text())


def fit(
    rows: list[dict[str, float]],
    labels: list[int],
    features: list[str],
    C: float = 1.0,
    fitted_on: str = "",
) -> Stacker:
    """sklearn's LogisticRegression (L2, `C`) on standardised, transformed features."""
    from sklearn.linear_model import LogisticRegression

    if len(set(labels)) < 2:
        raise ValueError("the stacker needs consistent and inconsistent examples")
    x = np.array([[transform(f, r[f]) for f in features] for r in rows], dtype=float)
    mean, scale = x.mean(0), x.std(0) + 1e-9
    lr = LogisticRegression(C=C, max_iter=5000).fit((x - mean) / scale, np.asarray(labels))
    return Stacker(
        list(features),
        mean.tolist(),
        scale.tolist(),
        lr.coef_[0].tolist(),
        float(lr.intercept_[0]),
        C,
        fitted_on,
    )
