"""`llm4all calibrate`: the machine-text threshold for a target false-positive rate, measured on
a file of human-written text, and writing it into a YAML config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from models.loading_config import ModelSpec
from tasks.curate.config import CurateError, DedupConfig
from tasks.ingest.config import IngestConfig
from tasks.ingest.readers import read_source
from warehouse.files import atomic_write_text


def calibrate_file(
    source: str,
    cfg: DedupConfig,
    ingest_cfg: IngestConfig,
    teacher: ModelSpec | None,
    target_fpr: float = 0.01,
) -> dict[str, Any]:
    """Score a file of human-written texts with the configured machine-text scorer and return
    the threshold that marks at most `target_fpr` of them (`tasks.curate.mgt.threshold_for_fpr`),
    with the YAML to put it into a config."""
    import numpy as np

    from tasks.curate.mgt import MgtError, load_scorer, threshold_for_fpr

    started = time.monotonic()
    texts = [
        t
        for parsed in read_source(source, ingest_cfg)
        for t in parsed.table.column("text").to_pylist()
        if t and t.strip()
    ]
    try:
        if not texts:
            raise MgtError(f"{source} holds no texts to calibrate on")
        scorer = load_scorer(cfg.mgt, teacher)
        scores = scorer.score(texts, progress=True)
        threshold = threshold_for_fpr(scores, target_fpr)
    except MgtError as e:
        raise CurateError(str(e)) from None
    finite = np.asarray([v for v in scores if v == v])
    above = int((finite > threshold).sum())
    return {
        "reference": source,
        "texts": len(texts),
        "scored": int(finite.size),
        "too_short": len(texts) - int(finite.size),
        "scorer": scorer.method,
        "model": cfg.mgt.model or (teacher.path if teacher else None),
        "performer": cfg.mgt.performer,
        "prefix": cfg.mgt.prefix,  # a threshold holds for this prefix only
        "target_fpr": target_fpr,
        "threshold": threshold,
        "human_above": above,
        "fpr_interval_90": fpr_interval(int(finite.size), above),
        "yaml": f"dedup:\n  mgt:\n    threshold: {threshold!r}\n",
        "seconds": round(time.monotonic() - started, 3),
    }


def fpr_interval(n: int, beyond: int, level: float = 0.9) -> tuple[float, float]:
    """Where the false-positive rate of a threshold set on `n` human-written texts truly lies
    (on new text from the same source), when `beyond` of them are past it: the threshold is
    then the (beyond+1)-th most extreme score, and the share of new scores past that order
    statistic is Beta(beyond + 1, n - beyond) distributed whatever the scores' distribution.
    The central `level` interval: with 60 texts and 3 past the threshold (a 5% target) it is
    2.3%-12.4%; more texts narrow it."""
    from scipy.stats import beta

    if not 0 <= beyond < n:
        raise ValueError(f"need 0 <= beyond < n, got beyond={beyond}, n={n}")
    dist, tail = beta(beyond + 1, n - beyond), (1.0 - level) / 2
    return float(dist.ppf(tail)), float(dist.ppf(1.0 - tail))


def write_threshold(config_file: str | Path, threshold: float) -> None:
    """Set `dedup.mgt.threshold` in a YAML config file (atomically; other keys kept, comments
    are not: PyYAML does not keep them)."""
    import yaml

    path = Path(config_file)
    data = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    if not isinstance(data, dict):
        raise CurateError(f"{path} is not a YAML mapping")
    data.setdefault("dedup", {}).setdefault("mgt", {})["threshold"] = float(threshold)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
