"""`llm4all score`: the curation filters on any JSONL/Parquet/CSV file, without the warehouse.

Output: one row per input row, in input order, with the contract's columns (`id, keep, reason,
exact_dup_of, near_dup_cluster, semantic_dup_of, quality_reason, mgt_score,
factuality_score`); columns of filters not asked for are null. A row the reader could not parse
is kept in place with `keep = false` and `reason = 'invalid_row: ...'`. A file in which no row
has a non-empty text is an error (the text field is probably another one).

Only exact and near filters asked for: one streaming pass (`tasks.curate.score_fast`), no
DuckDB. Otherwise the rows go through `dedup` over DuckDB views, then the row scores and the
thresholds on them, as `curate` does.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tasks.curate.config import CurateError, DedupConfig
from tasks.ingest.config import IngestConfig

if TYPE_CHECKING:
    from models.loading_config import ModelSpec
    from tasks.curate.shards import ShardMap

SCORE_COLUMNS = pa.schema(
    [
        ("id", pa.string()),
        ("keep", pa.bool_()),
        ("reason", pa.string()),
        ("exact_dup_of", pa.string()),
        ("near_dup_cluster", pa.int64()),
        ("semantic_dup_of", pa.string()),
        ("quality_reason", pa.string()),
        ("mgt_score", pa.float64()),
        ("factuality_score", pa.float64()),
    ]
)


@dataclass
class ScoreResult:
    input: str
    output: str
    rows: int
    kept: int
    filters: list[str]
    invalid_rows: int
    stats: dict[str, Any]
    seconds: float
    factuality: dict[str, Any] | None = None  # which scorer, notes (tasks.curate.scores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_file(
    source: str, output: str, cfg: DedupConfig | None = None, filters: list[str] | None = None,
    ingest_cfg: IngestConfig | None = None, shard_map: ShardMap | None = None,
    teacher: ModelSpec | None = None, home: str | Path | None = None,
) -> ScoreResult:  # fmt: skip
    """Score every row of `source` into `output` (one row per input row, same order).

    `teacher` is the default scoring LM of the `mgt` filter; the warehouse at `home` (only
    read) holds the factuality model the `factuality` filter uses, if any.
    """
    cfg = cfg or DedupConfig()
    filters = cfg.filters() if filters is None else filters
    ingest_cfg = ingest_cfg or IngestConfig()
    if set(filters) <= {"exact", "near"}:
        from tasks.curate.score_fast import score_exact_near

        return score_exact_near(source, output, cfg, filters, ingest_cfg)
    return _score_general(source, output, cfg, filters, ingest_cfg, shard_map, teacher, home)


def _score_general(
    source: str, output: str, cfg: DedupConfig, filters: list[str], ingest_cfg: IngestConfig,
    shard_map: ShardMap | None, teacher: ModelSpec | None, home: str | Path | None,
) -> ScoreResult:  # fmt: skip
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tasks.curate.decide import decide
    from tasks.curate.dedup import dedup
    from tasks.curate.scores import row_scores
    from tasks.curate.shards import connect
    from tasks.ingest.readers import read_source
    from warehouse.files import atomic_path
    from warehouse.sql import sql_str

    started = time.monotonic()
    batches = read_source(source, ingest_cfg)
    with tempfile.TemporaryDirectory(prefix="llm4all-score-") as tmp:
        scratch = Path(tmp)
        work = scratch / "work.parquet"
        schema = pa.schema(
            [
                ("doc", pa.int64()),
                ("id", pa.string()),
                ("text", pa.string()),
                ("summary", pa.string()),
                ("invalid", pa.string()),
            ]
        )
        n = invalid = with_text = 0
        with pq.ParquetWriter(work, schema) as w:
            for parsed in batches:
                t = parsed.table
                trimmed = pc.utf8_length(pc.utf8_trim_whitespace(t.column("text")))
                with_text += pc.sum(pc.greater(trimmed, 0)).as_py() or 0
                rows = [
                    (line, rid, text, summary, None)
                    for line, rid, text, summary in zip(
                        t.column("line").to_pylist(),
                        t.column("id").to_pylist(),
                        t.column("text").to_pylist(),
                        t.column("summary").to_pylist(),
                        strict=True,
                    )
                ]
                rows += [(q.line, None, None, None, q.reason) for q in parsed.quarantined]
                rows.sort(key=lambda r: r[0])
                docs = list(range(n, n + len(rows)))
                n += len(rows)
                invalid += len(parsed.quarantined)
                w.write_table(
                    pa.table(
                        [
                            pa.array(docs, pa.int64()),
                            pa.array(
                                [
                                    str(d) if r[1] is None else r[1]
                                    for d, r in zip(docs, rows, strict=True)
                                ],
                                pa.string(),
                            ),
                            pa.array([r[2] for r in rows], pa.string()),
                            pa.array([r[3] for r in rows], pa.string()),
                            pa.array([r[4] for r in rows], pa.string()),
                        ],
                        schema=schema,
                    )
                )
        if n and not with_text:
            unreadable = f", {invalid:,} unreadable" if invalid else ""
            raise CurateError(
                f"no row has a non-empty {ingest_cfg.text_field!r} field ({n:,} rows read"
                f"{unreadable}); pass --text-field"
            )
        decisions, stats = dedup(
            str(work), scratch / "lake", scratch, cfg, filters, shard_map=shard_map
        )
        scores, scored = row_scores(work, scratch, cfg, filters, teacher, home)
        con = connect(scratch, cfg.memory_limit)
        try:
            exact = "d.exact_dup_of" if "exact" in filters else "NULL::VARCHAR"
            near = "d.near_dup_cluster" if "near" in filters else "NULL::BIGINT"
            sem = "d.semantic_dup_of" if "semantic" in filters else "NULL::VARCHAR"
            quality = "d.quality_reason" if "quality" in filters else "NULL::VARCHAR"
            final = decide(con, decisions, str(scores), cfg, filters)
            # The contract's columns; sample_weight only when rows are down-weighted.
            weight = ", f.sample_weight" if cfg.mgt.action == "downweight" else ""
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(output) as out_tmp:
                con.execute(
                    f"""
                COPY (
                  SELECT w.id,
                         CASE WHEN w.invalid IS NOT NULL THEN false ELSE f.keep END AS keep,
                         CASE WHEN w.invalid IS NOT NULL THEN 'invalid_row: ' || w.invalid
                              ELSE f.reason END AS reason,
                         {exact} AS exact_dup_of, {near} AS near_dup_cluster,
                         {sem} AS semantic_dup_of,
                         {quality} AS quality_reason, s.mgt_score, s.factuality_score{weight}
                  FROM read_parquet({sql_str(str(work))}) w
                  JOIN read_parquet({sql_str(decisions)}) d USING (doc)
                  JOIN read_parquet({sql_str(str(scores))}) s USING (doc)
                  JOIN {final} f USING (doc)
                  ORDER BY w.doc
                ) TO {sql_str(str(out_tmp))} (FORMAT parquet, COMPRESSION zstd)
                """
                )
                kept = con.execute(
                    f"SELECT count(*) FILTER (keep) FROM read_parquet({sql_str(str(out_tmp))})"
                ).fetchall()[0][0]
        finally:
            con.close()
    return ScoreResult(
        input=source,
        output=str(output),
        rows=n,
        kept=int(kept),
        filters=filters,
        invalid_rows=invalid,
        stats=stats.to_dict(),
        seconds=round(time.monotonic() - started, 3),
        factuality=scored.get("factuality"),
    )
