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
    signs: dict[str, int] | None = None,
) -> Stacker:
    """L2-regularised logistic regression (`C`, as sklearn's) on standardised, transformed
    features. `signs` (feature -> +1, -1 or 0): each weight is kept >= 0, <= 0 or free, so a
    feature can only push the score the way it means (sklearn has no bounds, so that fit is
    L-BFGS-B on the same objective)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(labels)) < 2:
        raise ValueError("the stacker needs consistent and inconsistent examples")
    x = np.array([[transform(f, r[f]) for f in features] for r in rows], dtype=float)
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z, y = (x - mean) / scale, np.asarray(labels, dtype=float)
    if signs is None:
        lr = LogisticRegression(C=C, max_iter=5000).fit(z, y)
        coef, bias = lr.coef_[0], float(lr.intercept_[0])
    else:
        coef, bias = _fit_bounded(z, y, [signs.get(f, 0) for f in features], C)
    return Stacker(list(features), mean.tolist(), scale.tolist(), coef.tolist(), bias, C, fitted_on)


def _fit_bounded(z: np.ndarray, y: np.ndarray, signs: list[int], C: float) -> tuple:
    """(coef, bias) minimising sklearn's objective, 0.5 |w|^2 + C * sum(log-loss), with each
    weight's sign bounded by `signs`."""
    from scipy.optimize import minimize

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        logit = z @ w[:-1] + w[-1]
        p = 1 / (1 + np.exp(-np.clip(logit, -60, 60)))
        loss = 0.5 * w[:-1] @ w[:-1] + C * np.sum(np.logaddexp(0, logit) - y * logit)
        grad = np.append(w[:-1] + C * z.T @ (p - y), C * np.sum(p - y))
        return float(loss), grad

    bounds = [(0, None) if s > 0 else (None, 0) if s < 0 else (None, None) for s in signs]
    res = minimize(objective, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B",
                   bounds=[*bounds, (None, None)])  # fmt: skip
    if not res.success:  # never save weights from a fit that did not converge
        raise ValueError(f"the bounded stacker fit did not converge: {res.message}")
    return res.x[:-1], float(res.x[-1])
