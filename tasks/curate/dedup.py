"""Dedup: exact → quality → near → semantic decisions for every row, nothing deleted.

`dedup` runs the steps in order over DuckDB views `work` (new rows) and `prior` (earlier curated
snapshots); each step fills one temp table (`ex`, `qual`, `near`, `sem`), and one statement turns
them into a decision per row (the first reason wins). The CPU-heavy per-shard work — MinHash
sketches (`sketches.minhash_shard`) and sentence embeddings (`semantic.embed_shard`) — goes
through a `ShardMap`: `thread_map` here, or one Prefect task per shard inside a flow
(`tasks.curate.curate.prefect_map`).

Model-based row scores (machine text, factuality) and thresholds on them come after, in
`tasks.curate.scores` and `tasks.curate.decide`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasks.curate.config import FILTERS, DedupConfig, DedupError
from tasks.curate.exact import exact_step
from tasks.curate.near import near_step
from tasks.curate.quality import quality_step
from tasks.curate.semantic import embed_shard, semantic_step
from tasks.curate.shards import DedupStats, Prior, Shard, ShardMap, connect
from warehouse.sql import sql_list, sql_str


def run_shard(kind: str, shard: Shard, params: Any) -> Any:
    if kind == "minhash":
        from tasks.curate.sketches import minhash_shard

        return minhash_shard(shard, params)
    if kind == "embed":
        return embed_shard(shard, params)
    raise ValueError(f"unknown shard kind {kind!r}")


def thread_map(workers: int = 2) -> ShardMap:
    """Run shards on a thread pool (the sketch kernels and torch release the GIL)."""

    def _map(kind: str, shards: list[Shard], params: Any) -> list[Any]:
        if len(shards) <= 1 or workers <= 1 or kind == "embed":  # torch already uses all cores
            return [run_shard(kind, s, params) for s in shards]
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(lambda s: run_shard(kind, s, params), shards))

    return _map


def dedup(
    work: str,
    out_dir: Path,
    scratch: Path,
    cfg: DedupConfig,
    filters: list[str],
    *,
    priors: list[Prior] | None = None,
    new_from: int = 0,
    shard_map: ShardMap | None = None,
) -> tuple[str, DedupStats]:
    """Decide every row of `work` (Parquet `doc, id, text`): write `decisions.parquet`.

    `out_dir` receives the lake files worth keeping (`_minhash/`, `_embeddings/`); `scratch`
    the rest. `priors` are earlier curated snapshots (their docs have keys below `new_from`).
    Returns (path of the decisions file in doc order, stats).
    """
    for f in filters:  # mgt and factuality are row scores, computed by tasks.curate.scores
        if f not in FILTERS:
            raise DedupError(f"unknown dedup filter {f!r}")
    priors = priors or []
    shard_map = shard_map or thread_map(cfg.runner.workers)
    stats = DedupStats()
    con = connect(scratch, cfg.memory_limit)
    try:
        con.execute(f"CREATE VIEW work AS SELECT doc, id, text FROM read_parquet({sql_str(work)})")
        prior_files = [f for p in priors for f in p.files]
        if prior_files:
            con.execute(
                f"CREATE VIEW prior AS SELECT doc_key AS doc, id, text, keep, near_dup_cluster "
                f"FROM read_parquet({sql_list(prior_files)}, union_by_name = true)"
            )
        else:
            con.execute(
                "CREATE VIEW prior AS SELECT NULL::BIGINT AS doc, NULL::VARCHAR AS id, "
                "NULL::VARCHAR AS text, NULL::BOOLEAN AS keep, NULL::BIGINT AS near_dup_cluster "
                "WHERE false"
            )
        stats.rows = con.execute("SELECT count(*) FROM work").fetchall()[0][0]
        stats.prior_rows = con.execute("SELECT count(*) FROM prior").fetchall()[0][0]

        # ---------------------------------------------------------------- exact
        t0 = time.monotonic()
        exact_step(con, cfg.exact, "exact" in filters, stats)
        stats.seconds["exact"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- quality
        con.execute("CREATE TEMP TABLE qual (doc BIGINT, quality_reason VARCHAR)")
        if "quality" in filters:
            t0 = time.monotonic()
            quality_step(con, scratch, cfg.quality, stats)
            stats.seconds["quality"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- near
        con.execute("CREATE TEMP TABLE near (doc BIGINT, cluster BIGINT, dup BOOLEAN)")
        if "near" in filters:
            t0 = time.monotonic()
            near_step(con, out_dir, scratch, cfg, priors, new_from, shard_map, stats)
            stats.seconds["near"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- semantic
        con.execute("CREATE TEMP TABLE sem (doc BIGINT, of_doc BIGINT, sim FLOAT)")
        if "semantic" in filters:
            t0 = time.monotonic()
            semantic_step(con, out_dir, scratch, cfg, priors, new_from, shard_map, stats)
            stats.seconds["semantic"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- decisions
        near_on = "near" in filters
        out = scratch / "decisions.parquet"
        con.execute(
            f"""
            COPY (
              WITH ids AS (SELECT doc, id FROM work UNION ALL SELECT doc, id FROM prior),
              cl AS (SELECT doc, cluster FROM near
                     UNION ALL SELECT doc, near_dup_cluster FROM prior),
              d AS (
                SELECT w.doc, ex.exact_hash, ex.exact_dup_of, ex.empty, q.quality_reason,
                       CASE WHEN {near_on}
                         THEN coalesce(nr.cluster, ocl.cluster, ex.dup_doc, w.doc) END
                         AS near_dup_cluster,
                       coalesce(nr.dup, false) AS near_dup,
                       sid.id AS semantic_dup_of
                FROM work w JOIN ex USING (doc)
                LEFT JOIN qual q ON q.doc = w.doc
                LEFT JOIN near nr ON nr.doc = w.doc
                LEFT JOIN cl ocl ON ocl.doc = ex.dup_doc
                LEFT JOIN sem s ON s.doc = w.doc
                LEFT JOIN ids sid ON sid.doc = s.of_doc
              )
              SELECT doc,
                     reason IS NULL AS keep, reason, exact_hash, exact_dup_of,
                     quality_reason, near_dup_cluster, semantic_dup_of
              FROM (SELECT *, CASE WHEN empty THEN 'empty_text'
                                   WHEN exact_dup_of IS NOT NULL THEN 'exact_dup'
                                   WHEN quality_reason IS NOT NULL THEN 'quality'
                                   WHEN near_dup THEN 'near_dup'
                                   WHEN semantic_dup_of IS NOT NULL THEN 'semantic_dup' END
                                 AS reason FROM d)
              ORDER BY doc
            ) TO {sql_str(str(out))} (FORMAT parquet)
            """
        )
        stats.near_dups, stats.semantic_dups, stats.kept = con.execute(
            f"SELECT count(*) FILTER (reason = 'near_dup'), count(*) FILTER "
            f"(reason = 'semantic_dup'), count(*) FILTER (keep) FROM read_parquet({sql_str(str(out))})"
        ).fetchall()[0]
    finally:
        con.close()
    return str(out), stats
