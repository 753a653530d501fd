"""Curate the noisy corpus with the product's own filters (`tasks.curate.score.score_file`:
the configured `dedup` filters, the machine-text and factuality ones switched on), calibrate
thresholds left unset on clean human data, and score each filter against the known noise."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from models.loading_config import ModelSpec
from tasks.ablation.corpus import NOISE_KINDS, labelled, write_jsonl
from tasks.curate.config import DedupConfig
from tasks.ingest.config import IngestConfig

log = logging.getLogger(__name__)

# Which noise each filter is meant to catch (its precision is also given against any noise).
TARGET = {
    "exact": "duplicate",
    "near": "duplicate",
    "semantic": "duplicate",
    "quality": None,
    "machine_generated": "machine",
    "mgt_share_cap": "machine",
    "unfaithful": "unfaithful",
}
REASON_FILTER = {
    "exact_dup": "exact",
    "near_dup": "near",
    "semantic_dup": "semantic",
    "empty_text": "exact",
}


def curation_config(dedup: DedupConfig) -> DedupConfig:
    """The product's dedup config with the machine-text and factuality filters switched on (the
    issue's 'default filters, including the factuality and machine-text ones')."""
    return dedup.model_copy(
        update={
            "mgt": dedup.mgt.model_copy(update={"enabled": True}),
            "factuality": dedup.factuality.model_copy(update={"enabled": True}),
        },
        deep=True,
    )


def factuality_threshold(scores: list[float | None], fpr: float) -> float:
    """The threshold under which at most `fpr` of these faithful pairs' scores fall (the rule
    is `factuality_score < threshold`); pairs with no score never fall under it."""
    vals = sorted(s for s in scores if s is not None and s == s)
    if not vals:
        return 0.0
    k = math.floor(fpr * len(vals) + 1e-9)  # pairs allowed under the threshold
    return float(vals[min(k, len(vals) - 1)]) if k < len(vals) else math.inf


def calibrate(
    dedup: DedupConfig, calibration: list[dict[str, Any]], teacher: ModelSpec, work: Path,
    mgt_fpr: float, factuality_fpr: float,
) -> tuple[DedupConfig, dict[str, Any]]:  # fmt: skip
    """Set the machine-text and factuality thresholds the config leaves unset, each at its
    stated false-positive rate on the clean calibration pairs (never on corpus or test rows)."""
    import pyarrow.parquet as pq

    from tasks.curate.calibrate import calibrate_file, fpr_interval
    from tasks.curate.score import score_file

    out: dict[str, Any] = {"calibration_rows": len(calibration)}
    path = work / "calibration.jsonl"
    write_jsonl(calibration, path, ("id", "text", "summary"))
    mgt, fact = dedup.mgt, dedup.factuality
    if mgt.threshold is None:
        got = calibrate_file(str(path), dedup, IngestConfig(), teacher, target_fpr=mgt_fpr)
        mgt = mgt.model_copy(update={"threshold": got["threshold"]})
        out["mgt"] = {
            "threshold": got["threshold"], "fpr": mgt_fpr, "calibrated": True,
            "fpr_interval_90": got["fpr_interval_90"],
        }  # fmt: skip
    else:
        out["mgt"] = {"threshold": mgt.threshold, "calibrated": False}
    if fact.threshold is None:
        scored = work / "calibration-scores.parquet"
        score_file(str(path), str(scored), dedup, ["factuality"], IngestConfig(), teacher=teacher)
        scores = pq.read_table(scored, columns=["factuality_score"]).column(0).to_pylist()
        t = factuality_threshold(scores, factuality_fpr)
        fact = fact.model_copy(update={"threshold": min(max(t, 0.0), 1.0)})
        valid = [v for v in scores if v is not None and v == v]
        under = sum(v < fact.threshold for v in valid)
        out["factuality"] = {
            "threshold": fact.threshold, "fpr": factuality_fpr, "calibrated": True,
            "fpr_interval_90": fpr_interval(len(valid), under) if under < len(valid) else None,
        }  # fmt: skip
    else:
        out["factuality"] = {"threshold": fact.threshold, "calibrated": False}
    return dedup.model_copy(update={"mgt": mgt, "factuality": fact}), out


def curate_rows(
    rows: list[dict[str, Any]], dedup: DedupConfig, teacher: ModelSpec, work: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row's decision by the product's filters: [{id, keep, reason, mgt_score,
    factuality_score}] in row order, and the run's summary."""
    import pyarrow.parquet as pq

    from tasks.curate.score import score_file

    src, out = work / "corpus.jsonl", work / "curated.parquet"
    write_jsonl(rows, src, ("id", "text", "summary"))
    result = score_file(str(src), str(out), dedup, None, IngestConfig(), teacher=teacher)
    table = pq.read_table(out).to_pylist()
    if len(table) != len(rows):
        raise RuntimeError(f"curation returned {len(table)} rows for {len(rows)}")
    return table, {
        "filters": result.filters,
        "kept": result.kept,
        "rows": result.rows,
        "seconds": result.seconds,
    }


def filter_report(rows: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """Per filter (the reason it dropped rows for): how many it dropped, its precision against
    its own kind of noise and against any noise, and its recall of its kind; then the whole
    curation's precision and recall of each kind. Needs rows labelled with `noise`."""
    if not labelled(rows):
        return {}
    by_reason: dict[str, list[int]] = {}
    for i, d in enumerate(decisions):
        if not d["keep"]:
            reason = str(d["reason"]).split(":")[0]
            by_reason.setdefault(reason, []).append(i)
    kinds = {k: {i for i, r in enumerate(rows) if k in r["noise"]} for k in NOISE_KINDS}
    noisy = {i for i, r in enumerate(rows) if r["noise"]}
    filters = []
    for reason, idx in sorted(by_reason.items()):
        name = REASON_FILTER.get(reason, reason)
        target = TARGET.get(name) or TARGET.get(reason)
        hit = set(idx)
        row = {"filter": name, "dropped": len(idx), "precision_any": len(hit & noisy) / len(hit)}
        if target:
            row |= {
                "target": target,
                "precision": len(hit & kinds[target]) / len(hit),
                "recall": len(hit & kinds[target]) / max(len(kinds[target]), 1),
            }
        filters.append(row)
    dropped = {i for i, d in enumerate(decisions) if not d["keep"]}
    overall = {
        k: {
            "rows": len(v),
            "removed": len(v & dropped),
            "recall": len(v & dropped) / max(len(v), 1),
        }
        for k, v in kinds.items()
    }
    overall["clean"] = {
        "rows": len(rows) - len(noisy),
        "removed": len(dropped - noisy),
        "recall": len(dropped - noisy) / max(len(rows) - len(noisy), 1),
    }
    return {
        "filters": filters,
        "by_kind": overall,
        "precision": len(dropped & noisy) / max(len(dropped), 1),
        "recall": len(dropped & noisy) / max(len(noisy), 1),
    }
