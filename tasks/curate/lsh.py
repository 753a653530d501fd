"""Near duplicates from MinHash signatures: LSH buckets in DuckDB -> candidate pairs ->
verification -> connected components -> one kept row per cluster.

1. `candidate_pairs`: one DuckDB `GROUP BY` per band finds buckets with more than one member;
   each member is paired with the next `bucket_window` members of its bucket. Memory stays flat
   in the corpus size: the band rows live in Parquet, DuckDB spills.
2. `verify_pairs`: estimated Jaccard of each candidate pair from the stored signatures, in
   chunks; pairs below `threshold` are dropped, so collisions cannot chain clusters together.
3. `connected_components` -> `near_dup_cluster`; `near_step` keeps one row per cluster (an
   earlier snapshot's row if the cluster has one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.curate.config import DedupConfig
from tasks.curate.minhash import MinHashParams, MinHashShardResult
from tasks.curate.shards import (
    MINHASH_DIR,
    PARAMS_FILE,
    DedupStats,
    Prior,
    Shard,
    ShardMap,
    fixed_list_numpy,
    params_match,
    prior_shards,
    write_shards,
)
from warehouse.sql import sql_list


def candidate_pairs(con: Any, band_files: list[str], bands: int, new_from: int, window: int) -> int:
    """Fill table `pairs(a, b)` (a < b, b a new doc) from LSH buckets, one band at a time."""
    con.execute("CREATE OR REPLACE TEMP TABLE cand (a BIGINT, b BIGINT)")
    if band_files:
        src = f"read_parquet({sql_list(band_files)})"
        for band in range(bands):
            con.execute(
                f"""
                INSERT INTO cand
                WITH bk AS (SELECT band_hash, doc FROM {src} WHERE band = {band}),
                hot AS (SELECT band_hash FROM bk GROUP BY band_hash
                        HAVING count(*) > 1 AND max(doc) >= {int(new_from)}),
                m AS (SELECT bk.band_hash, bk.doc,
                             row_number() OVER (PARTITION BY bk.band_hash ORDER BY bk.doc) AS r
                      FROM bk SEMI JOIN hot USING (band_hash))
                SELECT x.doc, y.doc FROM m x JOIN m y
                  ON x.band_hash = y.band_hash AND y.r > x.r AND y.r <= x.r + {int(window)}
                WHERE y.doc >= {int(new_from)}
                """
            )
    con.execute("CREATE OR REPLACE TEMP TABLE pairs AS SELECT DISTINCT a, b FROM cand")
    con.execute("DROP TABLE cand")
    return con.execute("SELECT count(*) FROM pairs").fetchall()[0][0]


def verify_pairs(
    con: Any, sig_files: list[str], num_perm: int, threshold: float, chunk: int = 50_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, estimated Jaccard) of the candidate pairs whose estimate reaches `threshold`."""
    keep_a: list[np.ndarray] = []
    keep_b: list[np.ndarray] = []
    keep_j: list[np.ndarray] = []
    if sig_files:
        src = f"read_parquet({sql_list(sig_files)})"
        reader = con.sql(
            f"SELECT p.a, p.b, sa.sig AS sa, sb.sig AS sb FROM pairs p "
            f"JOIN {src} sa ON sa.doc = p.a JOIN {src} sb ON sb.doc = p.b"
        ).to_arrow_reader(chunk)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            sa = fixed_list_numpy(batch.column("sa"), num_perm)
            sb = fixed_list_numpy(batch.column("sb"), num_perm)
            est = (sa == sb).mean(axis=1)
            ok = est >= threshold
            keep_a.append(batch.column("a").to_numpy()[ok])
            keep_b.append(batch.column("b").to_numpy()[ok])
            keep_j.append(est[ok])
    if not keep_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(keep_a), np.concatenate(keep_b), np.concatenate(keep_j)


def connected_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges (a, b): (nodes, label of each node), the
    label being the smallest node of its component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as components

    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    if nodes.size == 0:
        return nodes, nodes.copy()
    n = nodes.size
    graph = coo_matrix((np.ones(a.size, np.int8), (inv[: a.size], inv[a.size :])), shape=(n, n))
    _, comp = components(graph, directed=False)
    first = np.full(comp.max() + 1, n)
    np.minimum.at(first, comp, np.arange(n))  # nodes are sorted: the first index is the smallest
    return nodes, nodes[first[comp]]


def near_step(
    con: Any,
    out_dir: Path,
    scratch: Path,
    cfg: DedupConfig,
    priors: list[Prior],
    new_from: int,
    shard_map: ShardMap,
    stats: DedupStats,
) -> None:
    params = MinHashParams.from_config(cfg.near)
    pdict = params.to_dict()
    mh_dir = out_dir / MINHASH_DIR
    # New rows that need a signature: non-empty, not an exact duplicate.
    shards = write_shards(
        con,
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "LEFT JOIN qual q USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL AND q.quality_reason IS NULL",
        scratch / "near-in",
        "near-in",
        cfg.runner.shard_rows,
    )
    shards = [Shard(s.index, s.path, str(mh_dir)) for s in shards]
    results: list[MinHashShardResult] = shard_map("minhash", shards, params) if shards else []
    mh_dir.mkdir(parents=True, exist_ok=True)
    (mh_dir / PARAMS_FILE).write_text(json.dumps(pdict))
    sig_files = [r.signatures for r in results]
    band_files = [r.bands for r in results]
    stats.without_shingles = sum(r.without_shingles for r in results)
    stats.truncated_docs = sum(r.truncated for r in results)
    # Earlier snapshots: reuse their signatures; recompute (into scratch) only on a params change.
    for p in priors:
        pdir = Path(p.dir) / MINHASH_DIR
        if params_match(pdir, pdict):
            sig_files += sorted(str(f) for f in pdir.glob("sig-*.parquet"))
            band_files += sorted(str(f) for f in pdir.glob("bands-*.parquet"))
            continue
        redo = prior_shards(con, p, scratch, "mh", cfg.runner.shard_rows)
        rr: list[MinHashShardResult] = shard_map("minhash", redo, params) if redo else []
        sig_files += [r.signatures for r in rr]
        band_files += [r.bands for r in rr]
        stats.recomputed_prior_signatures += sum(r.docs for r in rr)

    band_files = [f for f in band_files if pq.ParquetFile(f).metadata.num_rows]
    sig_files = [f for f in sig_files if pq.ParquetFile(f).metadata.num_rows]
    stats.candidate_pairs = candidate_pairs(
        con, band_files, params.bands, new_from, cfg.near.bucket_window
    )
    a, b, _j = verify_pairs(con, sig_files, params.num_perm, cfg.near.threshold)
    stats.verified_pairs = int(a.size)
    nodes, labels = connected_components(a, b)
    if nodes.size == 0:
        return
    con.register("cc_arrow", pa.table({"doc": nodes, "label": labels}))
    # A component's id: the smallest stored cluster of its earlier rows, else its smallest doc;
    # its kept row: an earlier row if it has any (nothing new is kept), else by the keep rule.
    order = "m.doc" if cfg.near.keep == "first" else "m.chars DESC, m.doc"  # a fixed choice
    sig_src = f"read_parquet({sql_list(sig_files)})" if sig_files else None
    chars = (
        f"(SELECT doc, chars FROM {sig_src} SEMI JOIN cc_arrow USING (doc))"
        if sig_src
        else "(SELECT NULL::BIGINT AS doc, NULL::BIGINT AS chars WHERE false)"
    )
    con.execute(
        f"""
        INSERT INTO near
        WITH m AS (SELECT c.doc, c.label, coalesce(p.near_dup_cluster, c.doc) AS cid,
                          p.doc IS NOT NULL AS old, coalesce(ch.chars, 0) AS chars
                   FROM cc_arrow c LEFT JOIN prior p ON p.doc = c.doc
                   LEFT JOIN {chars} ch ON ch.doc = c.doc),
        g AS (SELECT label, min(cid) AS cluster, bool_or(old) AS has_old,
                     count(*) AS size FROM m GROUP BY label),
        r AS (SELECT label, first(m.doc ORDER BY {order}) AS rep FROM m GROUP BY label)
        SELECT m.doc, g.cluster, g.has_old OR m.doc <> r.rep
        FROM m JOIN g USING (label) JOIN r USING (label) WHERE NOT m.old
        """
    )
    con.unregister("cc_arrow")
    stats.near_clusters, stats.largest_cluster = con.execute(
        "SELECT count(DISTINCT cluster), coalesce(max(n), 1) FROM "
        "(SELECT cluster, count(*) OVER (PARTITION BY cluster) AS n FROM near)"
    ).fetchall()[0]
