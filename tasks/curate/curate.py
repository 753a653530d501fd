"""Curate: the oldest raw version of a dataset not yet curated -> a `curated` snapshot with
every row plus decision columns: exact → quality → near → semantic (`tasks.curate.dedup`), then
machine-text and factuality scores (`tasks.curate.scores`) and the thresholds on them
(`tasks.curate.decide`). New rows are deduplicated against all earlier curated versions, whose
persisted signatures and embeddings are reused.

A curated snapshot's folder holds its data (`part-0.parquet`, which `DatasetRef.files()` sees)
and, beside it, the lake files later runs reuse: `_minhash/` (signatures and shingle sets,
params) and `_embeddings/` (embeddings, params).

`llm4all score` runs the same steps on any file without the warehouse (`tasks.curate.score`).
Inside a flow, the per-shard work runs as one Prefect task per shard (`prefect_map`).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE

from models.loading_config import ModelSpec
from tasks.curate.config import DedupConfig, SemanticConfig
from tasks.curate.decide import decide
from tasks.curate.dedup import dedup
from tasks.curate.minhash import SketchParams
from tasks.curate.pending import pending_raw_versions
from tasks.curate.scores import row_scores
from tasks.curate.semantic import EmbedShardResult, embed_shard
from tasks.curate.shards import Prior, Shard, ShardMap, connect, require_readable
from tasks.curate.sketches import SketchShardResult, minhash_shard
from warehouse import Catalog, DatasetRef, validate_name
from warehouse.sql import sql_list, sql_str

log = logging.getLogger(__name__)


VERSION_SHIFT = 32  # doc key = curated version << 32 | row: earlier snapshots sort first


@dataclass
class CurateResult:
    dataset: str
    raw: str | None  # key of the raw version curated
    ref: DatasetRef | None  # None: nothing pending
    rows: int = 0
    kept: int = 0
    filters: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    factuality: dict[str, Any] | None = None  # which scorer, notes (tasks.curate.scores)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ref"] = self.ref.to_dict() if self.ref else None
        return d


def curate_next(
    dataset: str, catalog: Catalog, cfg: DedupConfig | None = None,
    filters: list[str] | None = None,
    *, shard_map: ShardMap | None = None, flow_run_id: str | None = None,
    teacher: ModelSpec | None = None,
) -> CurateResult:  # fmt: skip
    """Curate the oldest pending raw version of `dataset` into a new curated version.

    `teacher` is the default scoring LM of the `mgt` filter.
    """
    cfg = cfg or DedupConfig()
    filters = cfg.filters() if filters is None else filters
    validate_name(dataset)
    started = time.monotonic()
    with catalog.writing():
        pending = pending_raw_versions(catalog, dataset)
        if not pending:
            return CurateResult(dataset, None, None, filters=filters)
        raw = pending[0]
        curated = catalog.versions("curated", dataset)
        version = (curated[-1].ref.version if curated else 0) + 1
        priors = [
            Prior(v.ref.key, [str(f) for f in v.ref.files()], v.ref.path)
            for v in curated
            if v.gate_passed
        ]
        new_from = version << VERSION_SHIFT
        scratch = catalog.scratch_dir()
        staged = catalog.stage_snapshot("curated", dataset)
        try:
            work = scratch / "work.parquet"
            con = connect(scratch, cfg.memory_limit)
            try:
                files = [str(f) for f in raw.files()]
                con.execute(
                    f"""
                    COPY (
                      SELECT {new_from} + row_number() OVER (ORDER BY filename, file_row_number)
                               - 1 AS doc,
                             * EXCLUDE (filename, file_row_number)
                      FROM read_parquet({sql_list(files)}, filename = true,
                                        file_row_number = true,
                                        hive_partitioning = false)  -- no `v` column
                      ORDER BY doc
                    ) TO {sql_str(str(work))} (FORMAT parquet, ROW_GROUP_SIZE 10000)
                    """
                )
            finally:
                con.close()
            decisions, stats = dedup(
                str(work),
                staged.dir,
                scratch,
                cfg,
                filters,
                priors=priors,
                new_from=new_from,
                shard_map=shard_map,
            )
            scores, scored = row_scores(work, scratch, cfg, filters, teacher, catalog.home)
            con = connect(scratch, cfg.memory_limit)
            try:
                final = decide(con, decisions, str(scores), cfg, filters)
                con.execute(
                    f"""
                    COPY (
                      SELECT w.* EXCLUDE (doc), d.doc AS doc_key, f.keep, f.reason,
                             d.exact_hash, d.exact_dup_of,
                             d.quality_reason, d.near_dup_cluster, d.semantic_dup_of,
                             s.mgt_score, s.factuality_score, f.sample_weight
                      FROM read_parquet({sql_str(str(work))}) w
                      JOIN read_parquet({sql_str(decisions)}) d USING (doc)
                      JOIN read_parquet({sql_str(str(scores))}) s USING (doc)
                      JOIN {final} f USING (doc)
                      ORDER BY d.doc
                    ) TO {sql_str(str(staged.dir / "part-0.parquet"))}
                      (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 10000)
                    """
                )
                # Score thresholds may reject rows that dedup kept: count from the file.
                stats.kept = con.execute(
                    "SELECT count(*) FILTER (keep) FROM read_parquet("
                    f"{sql_str(str(staged.dir / 'part-0.parquet'))})"
                ).fetchall()[0][0]
            finally:
                con.close()
            meta = {
                "raw_version": raw.version,
                "filters": filters,
                "stats": stats.to_dict(),
                "config": cfg.model_dump(),
                "factuality": scored.get("factuality"),
            }
            with catalog.transaction() as tx:
                ref = tx.publish(staged, parent=raw.key, flow_run_id=flow_run_id, meta=meta)
        except BaseException:
            shutil.rmtree(staged.dir, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    result = CurateResult(
        dataset=dataset,
        raw=raw.key,
        ref=ref,
        rows=stats.rows,
        kept=stats.kept,
        filters=filters,
        stats=stats.to_dict(),
        seconds=round(time.monotonic() - started, 3),
        factuality=scored.get("factuality"),
    )
    log.info(
        "curate %s: %s -> %s, %d rows, %d kept (%d exact, %d near, %d semantic dups)",
        dataset,
        raw.key,
        ref.key,
        stats.rows,
        stats.kept,
        stats.exact_dups,
        stats.near_dups,
        stats.semantic_dups,
    )
    return result


@task(name="compute-minhash-signatures", cache_policy=NO_CACHE)
def compute_minhash_signatures(shard: Shard, params: SketchParams) -> SketchShardResult:
    """Signatures and shingle sets of one shard (see `minhash_shard`)."""
    require_readable(shard)
    return minhash_shard(shard, params)


@task(name="compute-embeddings", cache_policy=NO_CACHE)
def compute_embeddings(shard: Shard, cfg: SemanticConfig) -> EmbedShardResult:
    """Sentence embeddings of one shard (see `embed_shard`)."""
    require_readable(shard)
    return embed_shard(shard, cfg)


def prefect_map(kind: str, shards: list[Shard], params: Any) -> list[Any]:
    """A `ShardMap` for use inside a flow: one mapped task per shard, on the flow's runner."""
    task = compute_minhash_signatures if kind == "minhash" else compute_embeddings
    futures = task.map(shards, unmapped(params))
    return [f.result() for f in futures]
