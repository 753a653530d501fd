"""`llm4all score --filters exact,near` as one streaming pass: JSONL/Parquet/CSV -> Parquet.

1. read: the ingest readers (`tasks.ingest.readers`: pyarrow's C++ JSON parser on 16 MiB
   blocks; unparseable records are kept in place as `invalid_row`);
2. sketch, on `dedup.runner.workers` threads (every kernel releases the GIL), in input order:
   exact key, shingle set, MinHash and band keys of each batch (`minhash.sketch`), appended to
   an on-disk `SketchStore` (memory stays flat as the input grows);
3. exact: the first row of each exact key is kept (empty texts: `empty_text`);
4. near: LSH candidates from the memory-mapped band keys, one band at a time; each verified by
   the exact Jaccard of the two shingle sets (or the MinHash estimate, `verify: estimate`);
   connected components -> clusters; the first (or longest) row of a cluster is kept;
5. write: the contract's columns, zstd Parquet, atomically.

No DuckDB, pandas, Prefect or model import: the command starts in about a second.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.curate import jit, lsh
from tasks.curate.config import CurateError, DedupConfig
from tasks.curate.minhash import (
    Sketch,
    SketchParams,
    band_keys,
    exact_keys_generic,
    is_default_exact,
    ordered_map,
    sketch,
)
from tasks.curate.score import SCORE_COLUMNS, ScoreResult
from tasks.curate.shards import DedupStats
from tasks.curate.sketches import SketchStore
from tasks.ingest.config import IngestConfig
from tasks.ingest.readers import read_source
from warehouse import arrow
from warehouse.files import atomic_path

REASONS = ["empty_text", "exact_dup", "near_dup"]  # codes 0, 1, 2; invalid rows follow


def _in_line_order(
    source: str, ingest_cfg: IngestConfig
) -> Iterator[tuple[pa.Array, pa.Array, list[tuple[int, str]]]]:
    """(ids, texts, [(position in batch, reason) of unparseable records]) per reader batch,
    rows in input order (an unparseable record is a row with null id and text)."""
    for parsed in read_source(source, ingest_cfg):
        t = parsed.table
        ids, texts = t.column("id").combine_chunks(), t.column("text").combine_chunks()
        if not parsed.quarantined:
            yield ids, texts, []
            continue
        k = len(parsed.quarantined)
        lines = np.concatenate(
            [t.column("line").to_numpy(), np.array([q.line for q in parsed.quarantined])]
        )
        order = np.argsort(lines, kind="stable")
        take = arrow.numeric(order)
        ids = pa.concat_arrays([ids, pa.nulls(k, pa.string())]).take(take)
        texts = pa.concat_arrays([texts, pa.nulls(k, pa.string())]).take(take)
        where = np.flatnonzero(order >= t.num_rows)
        reasons = [parsed.quarantined[order[p] - t.num_rows].reason for p in where]
        yield ids, texts, list(zip(where.tolist(), reasons, strict=True))


def score_exact_near(
    source: str, output: str, cfg: DedupConfig, filters: list[str], ingest_cfg: IngestConfig
) -> ScoreResult:
    """Exact and near-duplicate decisions for every row of `source`, written to `output`.
    A tiny input (`jit.is_tiny`) runs the kernels interpreted, on one thread."""
    tiny = jit.is_tiny(source)
    with jit.interpreted(tiny):
        return _score(source, output, cfg, filters, ingest_cfg, 1 if tiny else cfg.runner.workers)


def _score(
    source: str, output: str, cfg: DedupConfig, filters: list[str], ingest_cfg: IngestConfig,
    workers: int,
) -> ScoreResult:  # fmt: skip
    started = time.monotonic()
    stats = DedupStats()
    t_phase = time.monotonic()

    def phase(name: str) -> None:
        nonlocal t_phase
        now = time.monotonic()
        stats.seconds[name] = round(now - t_phase, 3)
        t_phase = now

    near_on, exact_on = "near" in filters, "exact" in filters
    nc = cfg.near
    params = SketchParams.from_config(nc)
    bands, rows = nc.layout()
    stats.near_bands, stats.near_rows = (bands, rows) if near_on else (0, 0)
    generic_exact = exact_on and not is_default_exact(cfg.exact)

    def work(
        batch: tuple[pa.Array, pa.Array, list],
    ) -> tuple[Sketch, np.ndarray, np.ndarray | None]:
        s = sketch(batch[1], params)
        if near_on:
            bk = band_keys(s.sig, bands, rows)
        else:  # exact only: nothing of the sets goes to the store
            bk = np.zeros((len(s), 0), np.uint64)
            s.shingles, s.offsets = s.shingles[:0], np.zeros_like(s.offsets)
        return s, bk, exact_keys_generic(batch[1], cfg.exact) if generic_exact else None

    with tempfile.TemporaryDirectory(prefix="llm4all-score-") as tmp:
        store = SketchStore(
            Path(tmp), nc.num_perm, bands if near_on else 0, nc.verify == "estimate"
        )
        ids: list[pa.Array] = []
        keys: list[np.ndarray] = []
        empties: list[np.ndarray] = []
        invalid: list[tuple[int, str]] = []
        rows_read = 0

        def batches() -> Iterator[tuple[pa.Array, pa.Array, list]]:
            nonlocal rows_read
            for b_ids, b_texts, b_invalid in _in_line_order(source, ingest_cfg):
                ids.append(b_ids)
                invalid.extend((rows_read + p, r) for p, r in b_invalid)
                rows_read += len(b_ids)
                yield b_ids, b_texts, b_invalid

        for s, bk, gkeys in ordered_map(work, batches(), workers):
            store.append(s, bk)
            keys.append(gkeys if gkeys is not None else s.exact)
            empties.append(s.empty)
        store.close()
        n = store.n
        phase("read_sketch")
        empty = np.concatenate(empties) if empties else np.zeros(0, bool)
        bad = np.zeros(n, bool)
        bad[[p for p, _ in invalid]] = True
        if n and (empty | bad).all():
            unreadable = f", {int(bad.sum()):,} unreadable" if bad.any() else ""
            raise CurateError(
                f"no row has a non-empty {ingest_cfg.text_field!r} field ({n:,} rows read"
                f"{unreadable}); pass --text-field"
            )
        empty &= ~bad
        idx = np.arange(n, dtype=np.int64)
        first = idx.copy()
        if exact_on and n:
            key = np.concatenate(keys)
            live = np.flatnonzero(~empty & ~bad)
            k = key[live]
            order = live[np.lexsort((live, k[:, 1], k[:, 0]))]
            ks = key[order]
            new_group = np.ones(order.size, bool)
            new_group[1:] = (ks[1:] != ks[:-1]).any(axis=1)
            group_start = np.maximum.accumulate(np.where(new_group, np.arange(order.size), 0))
            first[order] = order[group_start]
        exact_dup = first != idx
        phase("exact")
        cluster = idx.copy()
        near_dup = np.zeros(n, bool)
        if near_on and n:
            sh, off = store.shingles()
            valid = ~empty & ~bad & ~exact_dup & (store.sizes > 0)
            a, b = lsh.candidate_pairs(store.band_key_matrix(), valid, nc.bucket_window, 0, workers)
            phase("candidates")
            if nc.verify == "exact":
                j = lsh.jaccard_exact(sh, off, a, b, workers)
            else:
                j = lsh.jaccard_estimate(store.signatures(), a, b, workers)
            ok = j >= nc.threshold
            phase("verify")
            cluster = lsh.clusters(n, a[ok], b[ok])
            near_dup = lsh.near_decisions(cluster, 0, nc.keep, store.chars) & valid
            cluster = np.where(exact_dup, cluster[first], cluster)  # exact dups join theirs
            sizes = np.bincount(cluster, minlength=n)
            multi = sizes > 1
            stats.candidate_pairs, stats.verified_pairs = int(a.size), int(ok.sum())
            stats.near_clusters = int(multi.sum())
            stats.largest_cluster = int(sizes.max())
            stats.without_shingles = int((~empty & ~bad & (store.sizes == 0)).sum())
            stats.truncated_docs = store.truncated
            phase("near")
        keep = ~(empty | bad | exact_dup | near_dup)
        stats.rows, stats.kept, stats.empty = n, int(keep.sum()), int(empty.sum())
        stats.exact_dups, stats.near_dups = int(exact_dup.sum()), int(near_dup.sum())
        table = _output_table(ids, n, keep, empty, exact_dup, near_dup, bad, invalid, first)
        table = table.set_column(
            4, "near_dup_cluster", arrow.numeric(cluster) if near_on else pa.nulls(n, pa.int64())
        )
        if not exact_on:
            table = table.set_column(3, "exact_dup_of", pa.nulls(n, pa.string()))
        if cfg.mgt.action == "downweight":  # as the general path: 1.0 without the mgt filter
            table = table.append_column("sample_weight", arrow.numeric(np.ones(n)))
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output) as out_tmp:
            pq.write_table(table, out_tmp, compression="zstd")
        phase("write")
    return ScoreResult(
        input=source,
        output=str(output),
        rows=n,
        kept=stats.kept,
        filters=filters,
        invalid_rows=len(invalid),
        stats=stats.to_dict(),
        seconds=round(time.monotonic() - started, 3),
    )


def _output_table(
    ids: list[pa.Array],
    n: int,
    keep: np.ndarray,
    empty: np.ndarray,
    exact_dup: np.ndarray,
    near_dup: np.ndarray,
    bad: np.ndarray,
    invalid: list[tuple[int, str]],
    first: np.ndarray,
) -> pa.Table:
    """The contract's columns (SCORE_COLUMNS); near_dup_cluster is filled by the caller."""
    id_arr = pa.concat_arrays(ids) if ids else pa.nulls(0, pa.string())
    if id_arr.null_count:  # rows without an id (and unparseable ones): their row number
        row = pc.cast(arrow.numeric(np.arange(n, dtype=np.int64)), pa.string())
        id_arr = pc.if_else(pc.is_valid(id_arr), id_arr, row)
    code = np.zeros(n, np.int32)
    code[near_dup] = 2
    code[exact_dup] = 1
    code[empty] = 0
    for i, (p, _) in enumerate(invalid):
        code[p] = len(REASONS) + i
    names = arrow.strings(REASONS + [f"invalid_row: {r}" for _, r in invalid])
    reason = pa.DictionaryArray.from_arrays(arrow.numeric(code, valid=~keep), names)
    exact_of = pc.take(id_arr, arrow.numeric(first, valid=exact_dup))
    nulls_s, nulls_f = pa.nulls(n, pa.string()), pa.nulls(n, pa.float64())
    columns = [
        id_arr,
        arrow.boolean(keep),
        reason.cast(pa.string()),
        exact_of,
        pa.nulls(n, pa.int64()),
        nulls_s,
        nulls_s,
        nulls_f,
        nulls_f,
    ]
    return pa.Table.from_arrays(columns, schema=SCORE_COLUMNS)
