"""The near-duplicate step of `dedup` (curate, and `score` with other filters than exact/near).

1. New rows that take part (non-empty, not an exact duplicate, not rejected by a quality rule)
   are written as shards; each shard is sketched (`sketches.minhash_shard`, mapped by the
   flow's `ShardMap`) into `<snapshot>/_minhash/sketch-NNNNN.parquet`, with `params.json`.
2. Earlier snapshots' sketches are read back when their params match; otherwise they are
   recomputed once from their text and kept in this snapshot's `_minhash/prior-<key>/` for
   later runs (the earlier snapshot's folder is never written to).
3. All sketches go into one out-of-core `SketchStore` (earlier rows first), LSH candidates
   from band keys recomputed for this run's layout (new-new and new-old pairs only), each
   verified by exact Jaccard (or the estimate), connected components.
4. One SQL statement decides each new row: a component's id is the smallest stored cluster of
   its earlier rows, else its smallest doc; it keeps an earlier row if it has one (every new
   member is then a duplicate), else its first (or longest) new row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.curate import lsh
from tasks.curate.config import DedupConfig
from tasks.curate.minhash import SketchParams, band_keys
from tasks.curate.shards import (
    MINHASH_DIR,
    PARAMS_FILE,
    DedupStats,
    Prior,
    Shard,
    ShardMap,
    params_match,
    prior_shards,
    write_shards,
)
from tasks.curate.sketches import SKETCH_GLOB, SketchShardResult, SketchStore, read_sketch_files
from warehouse import arrow

# The rows near dedup sketches: what `prior_shards` selects when it recomputes them.
SKETCHED = "coalesce(reason, '') NOT IN ('empty_text', 'exact_dup', 'quality')"


def _prior_key(p: Prior) -> str:
    return p.key.replace("/", "_").replace("@", "_")


def prior_sketch_files(
    con: Any, p: Prior, later: list[Prior], mh_dir: Path, scratch: Path, params: SketchParams,
    shard_map: ShardMap, shard_rows: int, stats: DedupStats,
) -> list[str]:  # fmt: skip
    """Sketch files of an earlier snapshot under `params`: its own, or a recomputed copy kept
    by a later snapshot; else recomputed now into `mh_dir/prior-<key>/` (one time)."""
    pdict = params.to_dict()
    sub = f"prior-{_prior_key(p)}"
    for folder in [Path(p.dir) / MINHASH_DIR, *(Path(q.dir) / MINHASH_DIR / sub for q in later)]:
        if params_match(folder, pdict):
            return sorted(str(f) for f in folder.glob(SKETCH_GLOB))
    out = mh_dir / sub
    shards = prior_shards(con, p, scratch, "mh", shard_rows, where=SKETCHED)
    shards = [Shard(s.index, s.path, str(out)) for s in shards]
    results: list[SketchShardResult] = shard_map("minhash", shards, params) if shards else []
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).write_text(json.dumps(pdict))
    stats.recomputed_prior_signatures += sum(r.docs for r in results)
    return [r.path for r in results]


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
    """Fill the temp table `near(doc, cluster, dup)` for the new rows of `work`."""
    nc = cfg.near
    params = SketchParams.from_config(nc)
    bands, rows = nc.layout()
    stats.near_bands, stats.near_rows = bands, rows
    mh_dir = out_dir / MINHASH_DIR
    shards = write_shards(
        con,
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "LEFT JOIN qual q USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL AND q.quality_reason IS NULL "
        "ORDER BY w.doc",
        scratch / "near-in",
        "near-in",
        cfg.runner.shard_rows,
    )
    shards = [Shard(s.index, s.path, str(mh_dir)) for s in shards]
    results: list[SketchShardResult] = shard_map("minhash", shards, params) if shards else []
    mh_dir.mkdir(parents=True, exist_ok=True)
    (mh_dir / PARAMS_FILE).write_text(json.dumps(params.to_dict()))
    stats.without_shingles = sum(r.without_shingles for r in results)
    stats.truncated_docs = sum(r.truncated for r in results)
    old_files: list[str] = []
    for i, p in enumerate(priors):
        old_files += prior_sketch_files(
            con, p, priors[i + 1 :], mh_dir, scratch, params, shard_map,
            cfg.runner.shard_rows, stats,
        )  # fmt: skip

    store = SketchStore(scratch / "near-store", nc.num_perm, bands, nc.verify == "estimate")
    for docs, s in read_sketch_files(old_files):
        store.append(s, band_keys(s.sig, bands, rows), docs)
    n_old = store.n  # earlier snapshots' rows come first: pairs among them are skipped
    for docs, s in read_sketch_files([r.path for r in results]):
        store.append(s, band_keys(s.sig, bands, rows), docs)
    store.close()
    workers = cfg.runner.workers
    a, b = lsh.candidate_pairs(store.band_key_matrix(), None, nc.bucket_window, n_old, workers)
    stats.candidate_pairs = int(a.size)
    if nc.verify == "exact":
        sh, off = store.shingles()
        j = lsh.jaccard_exact(sh, off, a, b, workers)
    else:
        j = lsh.jaccard_estimate(store.signatures(), a, b, workers)
    ok = j >= nc.threshold
    stats.verified_pairs = int(ok.sum())
    cluster = lsh.clusters(store.n, a[ok], b[ok])
    members = np.flatnonzero(np.bincount(cluster, minlength=store.n)[cluster] > 1)
    if members.size == 0:
        return
    con.register(
        "cc_arrow",
        pa.Table.from_arrays(
            [
                arrow.numeric(store.docs[members]),
                arrow.numeric(cluster[members]),
                arrow.numeric(store.chars[members]),
            ],
            names=["doc", "label", "chars"],
        ),
    )
    # A component's id: the smallest stored cluster of its earlier rows, else its smallest doc;
    # its kept row: an earlier row if it has any (nothing new is kept), else by the keep rule.
    order = "m.doc" if nc.keep == "first" else "m.chars DESC, m.doc"
    con.execute(
        f"""
        INSERT INTO near
        WITH m AS (SELECT c.doc, c.label, coalesce(p.near_dup_cluster, c.doc) AS cid,
                          p.doc IS NOT NULL AS old, c.chars
                   FROM cc_arrow c LEFT JOIN prior p ON p.doc = c.doc),
        g AS (SELECT label, min(cid) AS cluster, bool_or(old) AS has_old FROM m GROUP BY label),
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
