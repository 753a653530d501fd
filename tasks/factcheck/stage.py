"""The train-factuality stage: a dataset's (document, summary) pairs -> a factuality model,
registered as the next version of `factuality` with its lineage (the snapshots it read),
gated on its held-out synthetic pairs (`gates.factuality`) and promoted when it passes — the
model `curate` and `score` then use.

It reads the kept rows of the dataset's gated curated snapshots (every delta), or its gated
raw snapshots when it has not been curated. A rerun on the same snapshots and settings is a
no-op (tasks/publish.py run keys).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GatesConfig
from tasks.factcheck.classifier import BASE_MODEL
from tasks.factcheck.config import FactcheckConfig, FactcheckError
from tasks.factcheck.scorer import MODEL_NAME
from tasks.factcheck.train import GENERATOR_VERSION, train_factuality
from tasks.publish import Lineage, done_run, publish, run_key
from tasks.runtime import current_flow_run_id
from warehouse import Catalog
from warehouse.registry import ModelInfo

log = logging.getLogger(__name__)


@dataclass
class TrainFactualityResult:
    dataset: str
    source: list[str]  # the snapshots read (curated or raw keys)
    model: dict[str, Any]  # the registry row
    skipped: bool  # the registry already held this run
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_pairs(catalog: Catalog, dataset: str, limit: int | None) -> tuple[list[dict], list[Any]]:
    """The (document, summary) pairs of `dataset`, ordered by content hash (a stable choice
    under `limit`), and the snapshot refs they came from: kept rows of the gated curated
    versions, else the gated raw versions."""
    import duckdb

    curated = [v for v in catalog.versions("curated", dataset) if v.gate_passed]
    raw = [v for v in catalog.versions("raw", dataset) if v.gate_passed]
    stage, where, versions = ("curated", "keep AND ", curated) if curated else ("raw", "", raw)
    if not versions:
        raise FactcheckError(f"dataset {dataset!r} has no gated raw or curated snapshot")
    files = [str(f) for v in versions for f in v.ref.files()]
    sql = (
        "SELECT text AS document, summary FROM read_parquet(?) "
        f"WHERE {where}summary IS NOT NULL AND trim(summary) <> '' ORDER BY content_sha256"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with duckdb.connect() as con:
        rows = con.execute(sql, [files]).fetchall()
    if not rows:
        raise FactcheckError(
            f"{stage}/{dataset} has no row with a summary: train-factuality needs "
            "(document, summary) pairs (ingest with --summary-field)"
        )
    return [{"document": d, "summary": s} for d, s in rows], [v.ref for v in versions]


def train_model(
    dataset: str, catalog: Catalog, cfg: FactcheckConfig, gates: GatesConfig
) -> TrainFactualityResult:
    """Train, register, gate (and on a pass promote) a factuality model of `dataset`'s pairs.
    A failed gate registers the version unpromoted and raises GateFailed."""
    pairs, refs = read_pairs(catalog, dataset, cfg.max_pairs)
    keys = [r.key for r in refs]
    settings = cfg.model_dump()
    key = run_key(
        {"snapshots": [[r.key, r.sha256] for r in refs], "config": settings,
         "generator": GENERATOR_VERSION, "gate": gates.factuality.model_dump()}
    )  # fmt: skip
    if (done := done_run(catalog, MODEL_NAME, key)) is not None:
        return TrainFactualityResult(dataset, keys, done.to_dict(), True, done.metrics)
    work = catalog.home / "work" / "factuality" / dataset / key
    log.info("train-factuality %s: %d pairs from %s", dataset, len(pairs), ", ".join(keys))
    metrics = train_factuality(pairs, work / "final", cfg)
    lineage = Lineage(
        teacher=cfg.base_model or BASE_MODEL, tokens=keys, logits=[],
        config_hash=run_key(settings), flow_run_id=current_flow_run_id(),
    )  # fmt: skip
    info: ModelInfo = publish(
        catalog, MODEL_NAME, work / "final", lineage, {**metrics, "run_key": key},
        gate="factuality", gates=gates, work=work,
    )  # fmt: skip
    return TrainFactualityResult(dataset, keys, info.to_dict(), False, info.metrics)


@task(name="train-factuality", task_run_name="train-factuality {dataset}", cache_policy=NO_CACHE)
def train_factuality_model(
    dataset: str, home: str, cfg: FactcheckConfig, gates: GatesConfig
) -> TrainFactualityResult:
    """Train, register and gate a factuality model (see `train_model`)."""
    return train_model(dataset, Catalog(Path(home)), cfg, gates)
