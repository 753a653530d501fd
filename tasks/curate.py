"""Curate: decide every row of a raw snapshot: exact → quality → near → semantic → machine text
→ factuality, each step's scores and reasons stored.

Two entry points over the same filters (`tasks.dedup.dedup`):

    curate_next  the oldest raw version of a dataset not yet curated -> a `curated` snapshot
                 with every row plus decision columns, deduplicated against all earlier
                 curated versions (their persisted signatures and embeddings are reused)
    score_file   any JSONL/Parquet/CSV file -> a Parquet of decisions (DESIGN.md's `score`
                 contract), without touching the warehouse

A curated snapshot's folder holds its data (`part-0.parquet`, which `DatasetRef.files()` sees)
and, beside it, the lake files later runs reuse: `_minhash/` (signatures, band rows, params)
and `_embeddings/` (embeddings, params).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from models.loading_config import ModelSpec
from tasks.dedup import DedupError, Prior, ShardMap, connect, dedup
from tasks.dedup_config import DedupConfig
from tasks.ingest import read_source
from tasks.ingest_config import IngestConfig
from warehouse import Catalog, DatasetRef, validate_name
from warehouse.sql import sql_list, sql_str

log = logging.getLogger(__name__)

ALL_FILTERS = ("exact", "near", "semantic", "quality", "mgt", "factuality")
DEDUP_FILTERS = ("exact", "quality", "near", "semantic", "mgt", "factuality")  # run order
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
VERSION_SHIFT = 32  # doc key = curated version << 32 | row: earlier snapshots sort first


class CurateError(RuntimeError):
    """Bad request to curate or score (unknown filter, nothing to read, ...)."""


def parse_filters(spec: str | list[str] | None, cfg: DedupConfig) -> list[str]:
    """`"exact,near"` -> ["exact", "near"]; None -> the dedup filters enabled in config."""
    if spec is None:
        return cfg.filters()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    for n in names:
        if n not in ALL_FILTERS:
            raise CurateError(f"unknown filter {n!r}; choose from {', '.join(ALL_FILTERS)}")
        if n not in DEDUP_FILTERS:
            raise CurateError(
                f"filter {n!r} is not available yet (this build has {', '.join(DEDUP_FILTERS)})"
            )
    return [f for f in DEDUP_FILTERS if f in names]  # run order, duplicates dropped


# --------------------------------------------------------------------------- model scores
SCORES = pa.schema(
    [("doc", pa.int64()), ("mgt_score", pa.float64()), ("factuality_score", pa.float64())]
)


def row_scores(
    work: Path, scratch: Path, cfg: DedupConfig, filters: list[str], teacher: ModelSpec | None
) -> Path:
    """Per-row `mgt_score` and `factuality_score` (null when not asked for or undefined).

    factuality: entity and number precision of the summary against the text, combined with the
    LM score when `dedup.factuality.lm` and with an NLI model when `dedup.factuality.nli_model`
    (null without a summary, or when nothing is checkable). mgt: Fast-DetectGPT with the
    configured scoring LM (the teacher by default), or Binoculars with `dedup.mgt.performer`;
    null for texts shorter than `dedup.mgt.min_tokens`.
    """
    from tasks.factuality import combine, entity_precision, lm_support_features, nli_scores
    from tasks.mgt import MgtError, load_scorer, score_texts

    model = tokenizer = performer = None
    fact_lm = "factuality" in filters and cfg.factuality.lm
    if "mgt" in filters or fact_lm:
        try:
            model, tokenizer, performer = load_scorer(cfg.mgt, teacher)
        except MgtError as e:
            raise CurateError(str(e)) from None
    nli = None
    if "factuality" in filters and cfg.factuality.nli_model:
        nli = load_nli(cfg.factuality.nli_model)
    out = scratch / "scores.parquet"
    columns = [
        c for c in ("doc", "text", "summary") if c in pq.ParquetFile(work).schema_arrow.names
    ]
    with pq.ParquetWriter(out, SCORES) as writer:
        for batch in pq.ParquetFile(work).iter_batches(batch_size=2048, columns=columns):
            texts = batch.column("text").to_pylist()
            n = len(texts)
            mgt: list[float | None] = [None] * n
            fact: list[float | None] = [None] * n
            if "mgt" in filters and model is not None:
                todo = [i for i, t in enumerate(texts) if t and t.strip()]
                got = score_texts(
                    [texts[i] for i in todo],
                    model,
                    tokenizer,
                    max_tokens=cfg.mgt.max_tokens,
                    batch_size=cfg.mgt.batch_size,
                    min_tokens=cfg.mgt.min_tokens,
                    performer=performer,
                    progress=len(todo) > 64,
                )
                for i, v in zip(todo, got, strict=True):
                    mgt[i] = None if v != v else v  # NaN (too short to score) -> null
            if "factuality" in filters and "summary" in batch.schema.names:
                summaries = batch.column("summary").to_pylist()
                # A pair needs both sides; an empty document is already `empty_text`.
                pairs = [
                    i
                    for i, (t, m) in enumerate(zip(texts, summaries, strict=True))
                    if t and t.strip() and m and m.strip()
                ]
                docs_sums = [(texts[i], summaries[i]) for i in pairs]
                lm: list = [None] * len(pairs)
                if fact_lm:
                    lm = lm_support_features(
                        docs_sums,
                        model,
                        tokenizer,
                        max_document_tokens=cfg.factuality.max_document_tokens,
                        batch_size=cfg.factuality.batch_size,
                    )
                entail: list[float | None] = [None] * len(pairs)
                if nli is not None:
                    entail = nli_scores(docs_sums, *nli, max_length=cfg.factuality.nli_max_length)
                for k, i in enumerate(pairs):
                    fact[i] = combine(
                        entity_precision(texts[i], summaries[i]).score,
                        lm[k],
                        cfg.factuality.weights,
                        entail[k],
                    )
            writer.write_table(
                pa.table(
                    [
                        batch.column("doc"),
                        pa.array(mgt, pa.float64()),
                        pa.array(fact, pa.float64()),
                    ],
                    schema=SCORES,
                )
            )
    return out


def load_nli(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of an NLI sequence classifier; a clear error when it is not one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tasks.factuality import entailment_index

    try:
        model = AutoModelForSequenceClassification.from_pretrained(name).eval()
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise CurateError(f"cannot load the NLI model {name}: {str(e).splitlines()[0]}") from e
    try:
        entailment_index(model.config)
    except ValueError as e:
        raise CurateError(f"{name}: {e}") from None
    return model, tokenizer


def decision_sql(cfg: DedupConfig, filters: list[str]) -> tuple[str, str]:
    """SQL for (keep, reason) over decisions `d` and scores `s`, thresholds applied after
    the dedup decisions (the first reason wins). Under `mgt.action: downweight` a machine-like
    row is not rejected here (see `decide`)."""
    conds = []
    mgt_drop = cfg.mgt.action == "drop"
    if "mgt" in filters and cfg.mgt.threshold is not None and mgt_drop:
        conds.append((f"s.mgt_score > {float(cfg.mgt.threshold)!r}", "machine_generated"))
    if "factuality" in filters and cfg.factuality.threshold is not None:
        conds.append((f"s.factuality_score < {float(cfg.factuality.threshold)!r}", "unfaithful"))
    reason = "d.reason"
    if conds:
        whens = " ".join(f"WHEN {c} THEN '{r}'" for c, r in conds)
        reason = f"CASE WHEN d.reason IS NOT NULL THEN d.reason {whens} END"
    return f"({reason}) IS NULL", reason


def decide(con: Any, decisions: str, scores: str, cfg: DedupConfig, filters: list[str]) -> str:
    """Write the final (doc, keep, reason, sample_weight) of every row to `final` in `con`
    and return the table's name.

    After the dedup decisions and score thresholds (`decision_sql`): the machine-text share
    cap — when more than `mgt.max_share` of the kept rows are machine-like (score above the
    threshold), the highest-scoring ones are dropped (`mgt_share_cap`) until the share fits:
    x rows, the least x with (M - x) / (K - x) <= s for K kept and M machine-like rows. Then
    `sample_weight`: `mgt.weight` for a kept machine-like row under action=downweight, else 1.
    """
    _, reason = decision_sql(cfg, filters)
    m = cfg.mgt
    scored = "mgt" in filters and m.threshold is not None
    machine = f"coalesce(s.mgt_score > {float(m.threshold)!r}, false)" if scored else "false"
    cap = "0"
    if scored and m.max_share is not None and m.max_share < 1.0:
        s = float(m.max_share)
        cap = f"greatest(0, ceil((n_machine - {s!r} * n_kept) / (1 - {s!r})))"
    weight = float(m.weight) if m.action == "downweight" else 1.0
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE final AS
        WITH base AS (
          SELECT d.doc, {reason} AS reason0, s.mgt_score, {machine} AS machine
          FROM read_parquet({sql_str(decisions)}) d
          JOIN read_parquet({sql_str(scores)}) s USING (doc)
        ), ranked AS (
          SELECT *,
                 row_number() OVER (PARTITION BY reason0 IS NULL AND machine
                                    ORDER BY mgt_score DESC, doc) AS rank,
                 count(*) FILTER (reason0 IS NULL) OVER () AS n_kept,
                 count(*) FILTER (reason0 IS NULL AND machine) OVER () AS n_machine
          FROM base
        ), capped AS (
          SELECT doc, machine,
                 CASE WHEN reason0 IS NULL AND machine AND rank <= {cap}
                      THEN 'mgt_share_cap' ELSE reason0 END AS reason
          FROM ranked
        )
        SELECT doc, reason IS NULL AS keep, reason,
               CASE WHEN reason IS NULL AND machine THEN {weight!r} ELSE 1.0 END
                 AS sample_weight
        FROM capped
        """
    )
    return "final"


# --------------------------------------------------------------------------- score
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_file(
    source: str,
    output: str,
    cfg: DedupConfig | None = None,
    filters: list[str] | None = None,
    ingest_cfg: IngestConfig | None = None,
    shard_map: ShardMap | None = None,
    teacher: ModelSpec | None = None,
) -> ScoreResult:
    """Score every row of `source` into `output` (one row per input row, same order).

    `teacher` is the default scoring LM of the `mgt` filter.
    """
    cfg = cfg or DedupConfig()
    filters = cfg.filters() if filters is None else filters
    ingest_cfg = ingest_cfg or IngestConfig()
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
        n = invalid = 0
        with pq.ParquetWriter(work, schema) as w:
            for parsed in batches:
                t = parsed.table
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
        decisions, stats = dedup(
            str(work), scratch / "lake", scratch, cfg, filters, shard_map=shard_map
        )
        scores = row_scores(work, scratch, cfg, filters, teacher)
        con = connect(scratch, cfg.memory_limit)
        try:
            exact = "d.exact_dup_of" if "exact" in filters else "NULL::VARCHAR"
            near = "d.near_dup_cluster" if "near" in filters else "NULL::BIGINT"
            sem = "d.semantic_dup_of" if "semantic" in filters else "NULL::VARCHAR"
            quality = "d.quality_reason" if "quality" in filters else "NULL::VARCHAR"
            final = decide(con, decisions, str(scores), cfg, filters)
            # The contract's columns; sample_weight only when rows are down-weighted.
            weight = ", f.sample_weight" if cfg.mgt.action == "downweight" else ""
            out_tmp = Path(output).with_name(f".{Path(output).name}.tmp")
            Path(output).parent.mkdir(parents=True, exist_ok=True)
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
        os.replace(out_tmp, output)
    return ScoreResult(
        input=source,
        output=str(output),
        rows=n,
        kept=int(kept),
        filters=filters,
        invalid_rows=invalid,
        stats=stats.to_dict(),
        seconds=round(time.monotonic() - started, 3),
    )


# --------------------------------------------------------------------------- curate
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ref"] = self.ref.to_dict() if self.ref else None
        return d


def pending_raw_versions(catalog: Catalog, dataset: str) -> list[DatasetRef]:
    """Raw versions that passed their gate and have no curated version (passed or pending)."""
    done = {
        v.meta.get("raw_version")
        for v in catalog.versions("curated", dataset)
        if v.gate_passed is not False
    }
    return [
        v.ref
        for v in catalog.versions("raw", dataset)
        if v.gate_passed and v.ref.version not in done
    ]


def curate_next(
    dataset: str,
    catalog: Catalog,
    cfg: DedupConfig | None = None,
    filters: list[str] | None = None,
    *,
    shard_map: ShardMap | None = None,
    flow_run_id: str | None = None,
    teacher: ModelSpec | None = None,
) -> CurateResult:
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
            scores = row_scores(work, scratch, cfg, filters, teacher)
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


# --------------------------------------------------------------------------- calibrate
def calibrate_file(
    source: str,
    cfg: DedupConfig,
    ingest_cfg: IngestConfig,
    teacher: ModelSpec | None,
    target_fpr: float = 0.01,
) -> dict[str, Any]:
    """Score a file of human-written texts with the configured machine-text scorer and return
    the threshold that marks at most `target_fpr` of them (`tasks.mgt.threshold_for_fpr`),
    with the YAML to put it into a config."""
    import numpy as np

    from tasks.mgt import MgtError, load_scorer, score_texts, threshold_for_fpr

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
        model, tokenizer, performer = load_scorer(cfg.mgt, teacher)
        scores = score_texts(
            texts,
            model,
            tokenizer,
            max_tokens=cfg.mgt.max_tokens,
            batch_size=cfg.mgt.batch_size,
            min_tokens=cfg.mgt.min_tokens,
            performer=performer,
            progress=True,
        )
        threshold = threshold_for_fpr(scores, target_fpr)
    except MgtError as e:
        raise CurateError(str(e)) from None
    finite = np.asarray([v for v in scores if v == v])
    return {
        "reference": source,
        "texts": len(texts),
        "scored": int(finite.size),
        "too_short": len(texts) - int(finite.size),
        "scorer": "binoculars" if cfg.mgt.performer else "fast_detectgpt",
        "model": cfg.mgt.model or (teacher.path if teacher else None),
        "performer": cfg.mgt.performer,
        "target_fpr": target_fpr,
        "threshold": threshold,
        "human_above": int((finite > threshold).sum()),
        "yaml": f"dedup:\n  mgt:\n    threshold: {threshold!r}\n",
        "seconds": round(time.monotonic() - started, 3),
    }


def write_threshold(config_file: str | Path, threshold: float) -> None:
    """Set `dedup.mgt.threshold` in a YAML config file (atomically; other keys kept, comments
    are not: PyYAML does not keep them)."""
    import yaml

    path = Path(config_file)
    data = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    if not isinstance(data, dict):
        raise CurateError(f"{path} is not a YAML mapping")
    data.setdefault("dedup", {}).setdefault("mgt", {})["threshold"] = float(threshold)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


__all__ = [
    "CurateError",
    "CurateResult",
    "DedupError",
    "ScoreResult",
    "calibrate_file",
    "curate_next",
    "parse_filters",
    "pending_raw_versions",
    "score_file",
]
