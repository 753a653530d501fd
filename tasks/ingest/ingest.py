"""Ingest: read a source, normalise it, quarantine bad rows, commit a `raw` snapshot.

Every input row ends up in exactly one of three places, and the result reports all three:

    accepted         new content, written to the snapshot
    already_present  content (text + summary) already in an earlier raw version of the
                     dataset, or repeated earlier in this same input
    quarantined      unusable, recorded in the catalog's `quarantine` table with its line
                     number, the reason and an excerpt: a line that does not parse (whatever
                     the parser raises), a bad field, or an id of the input that already names
                     other content (earlier in the input, or in an earlier version)

Two passes keep memory flat in the input size. Pass 1 streams the source in blocks, validates,
hashes, and writes every valid row straight into the snapshot's Parquet file, plus a small
(line, hash) key file. Pass 2 is a DuckDB query over the keys alone that finds content already
present (in earlier versions, or earlier in this input); DuckDB spills to disk rather than
holding a hash set of the whole corpus in memory. Only when some rows must go is the file
rewritten, streaming; a brand-new file is never written twice.

JSONL is read in 16 MiB blocks parsed by pyarrow's C++ JSON reader; only a block that fails to
parse (a malformed line, invalid UTF-8, a blank line, a field of the wrong type) is re-read line by
line in Python to find and quarantine the culprits. That keeps clean files near DuckDB's speed.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from tqdm.auto import tqdm

from tasks.ingest.config import IngestConfig
from tasks.ingest.pending import IngestResult, config_sha256, resolve_source, source_sha256
from tasks.ingest.readers import QUARANTINE, Parsed, Quarantined, read_source
from tasks.runtime import current_flow_run_id, run_name
from warehouse import Catalog, validate_name
from warehouse.files import atomic_path
from warehouse.sql import sql_list, sql_str

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- normalise
def normalise(parsed: Parsed, source: str, cfg: IngestConfig) -> tuple[pa.Table, list[Quarantined]]:
    """Validate text (present, non-empty, not too long) and fill missing ids.

    Content hashes are computed in pass 2, by DuckDB on both cores (`CONTENT_SHA256_SQL`).
    """
    t = parsed.table
    bad = list(parsed.quarantined)
    text = t.column("text")
    missing = pc.is_null(text)
    # fill_null: comparisons on a null text are null, and a null would slip through the filter.
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(text), cfg.max_chars), False)
    reject = pc.or_(pc.or_(missing, empty), too_long)
    if pc.any(reject).as_py():
        lines = t.column("line").to_pylist()
        texts = text.to_pylist()
        for i in pc.indices_nonzero(reject).to_pylist():
            if missing[i].as_py():
                reason = f"missing or null {cfg.text_field!r}"
            elif empty[i].as_py():
                reason = "empty text"
            else:
                reason = f"text over max length ({len(texts[i])} > {cfg.max_chars} chars)"
            bad.append(Quarantined(lines[i], reason, (texts[i] or "")[: cfg.excerpt_chars]))
        t = t.filter(pc.invert(reject))
    name = Path(source).name
    ids = t.column("id")
    explicit = pc.invert(pc.is_null(ids))  # ids of the input (defaults may repeat by design)
    if ids.null_count:
        default = pc.binary_join_element_wise(name, pc.cast(t.column("line"), pa.string()), ":")
        ids = pc.coalesce(ids, default)
    staged = t.set_column(t.schema.get_field_index("id"), "id", ids)
    staged = staged.append_column("explicit_id", explicit)
    bad.sort(key=lambda q: q.line)
    return staged, bad


def content_sha256(text: str, summary: str | None) -> str:
    """The identity of a row's content: a document with another summary is other content."""
    data = text if summary is None else f"{text}\x1f{summary}"
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


# The same digest in DuckDB (tests hold the two equal).
CONTENT_SHA256_SQL = (
    "sha256(CASE WHEN summary IS NULL THEN text ELSE text || chr(31) || summary END)"
)


# --------------------------------------------------------------------------- the stage
def ingest(
    source: str, dataset: str, catalog: Catalog, cfg: IngestConfig | None = None,
    *, flow_run_id: str | None = None, progress: bool = True,
) -> IngestResult:  # fmt: skip
    """Read `source` into a new `raw/<dataset>` version (none if nothing is new)."""
    cfg = cfg or IngestConfig()
    validate_name(dataset)
    started = time.monotonic()
    started_at = datetime.now(UTC).replace(tzinfo=None)
    run_id = uuid.uuid4().hex[:12]
    source = resolve_source(source)
    batches = read_source(source, cfg)  # raises IngestError before anything is written
    # Hashed before it is read: bytes that change meanwhile are not taken for what was read.
    identity = {"source_sha256": source_sha256(source), "ingest_config_sha256": config_sha256(cfg)}

    with catalog.writing():
        scratch = catalog.scratch_dir()
        staged = catalog.stage_snapshot("raw", dataset)
        candidates = staged.dir / "part-0.parquet"
        counts = _write_candidates(
            batches, source, cfg, started_at, candidates, scratch, dataset, progress
        )
        earlier = catalog.versions("raw", dataset)
        # Versions whose gate failed are not part of the dataset: their content may come again.
        present = [str(f) for v in earlier if v.gate_passed is not False for f in v.ref.files()]
        accepted, reused = _drop_present_content(
            candidates, scratch / "keys.parquet", present, scratch, cfg.excerpt_chars
        )
        if reused:
            pq.write_table(
                pa.Table.from_pylist([asdict(q) for q in reused], schema=QUARANTINE),
                scratch / "reused.parquet",
            )
            counts.quarantined += len(reused)
            counts.parsed -= len(reused)
            counts.examples.extend(reused[: max(0, 20 - len(counts.examples))])

        ref = None
        with catalog.transaction() as tx:
            if accepted:
                parent = earlier[-1].ref.key if earlier else None
                meta = {"source": source, "run_id": run_id, "quarantined": counts.quarantined}
                meta |= identity  # what `tasks/ingest/pending.unchanged` compares a source with
                ref = tx.publish(staged, parent=parent, flow_run_id=flow_run_id, meta=meta)
            version = ref.version if ref else None
            tx.execute(
                "INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    dataset,
                    source,
                    started_at,
                    datetime.now(UTC).replace(tzinfo=None),
                    counts.parsed + counts.quarantined,
                    accepted,
                    counts.parsed - accepted,
                    counts.quarantined,
                    counts.blank_lines,
                    version,
                    flow_run_id,
                ],
            )
            if counts.quarantined:
                files = [str(scratch / "quarantine.parquet")] + (
                    [str(scratch / "reused.parquet")] if reused else []
                )
                tx.execute(
                    "INSERT INTO quarantine SELECT ?, ?, ?, ?, line, reason, excerpt "
                    f"FROM read_parquet({sql_list(files)}) ORDER BY line",
                    [run_id, dataset, version, source],
                )
        _remove_tree(scratch)
        if not accepted:
            _remove_tree(staged.dir)

    result = IngestResult(
        dataset=dataset,
        source=source,
        run_id=run_id,
        ref=ref,
        rows_in=counts.parsed + counts.quarantined,
        accepted=accepted,
        already_present=counts.parsed - accepted,
        quarantined=counts.quarantined,
        blank_lines=counts.blank_lines,
        seconds=round(time.monotonic() - started, 3),
        quarantine_examples=[asdict(q) for q in counts.examples],
    )
    log.info(
        "ingest %s: %d in, %d accepted, %d already present, %d quarantined",
        dataset,
        result.rows_in,
        result.accepted,
        result.already_present,
        result.quarantined,
    )
    return result


SNAPSHOT = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("summary", pa.string()),
        ("source", pa.string()),
        ("content_sha256", pa.string()),
        ("ingested_at", pa.timestamp("us")),
    ]
)
KEYS = pa.schema(
    [
        ("line", pa.int64()),
        ("content_sha256", pa.string()),
        ("id", pa.string()),
        ("explicit_id", pa.bool_()),
    ]
)


@dataclass
class _Counts:
    parsed: int = 0
    quarantined: int = 0
    blank_lines: int = 0
    examples: list[Quarantined] = field(default_factory=list)


def _write_candidates(
    batches: Iterator[Parsed],
    source: str,
    cfg: IngestConfig,
    ingested_at: datetime,
    out: Path,
    scratch: Path,
    dataset: str,
    progress: bool,
) -> _Counts:
    """Pass 1: every valid row, in input order, straight into the snapshot's file format.

    Beside it go (line, content_sha256) keys for pass 2 and the quarantined records. Parquet
    encoding runs on a second thread (pyarrow releases the GIL) while the next block parses.
    """
    from concurrent.futures import ThreadPoolExecutor

    import duckdb

    counts = _Counts()
    hasher = duckdb.connect()  # sha256 in C on both cores, ~3x hashlib per row
    bar = tqdm(unit=" rows", unit_scale=True, desc=f"ingest {dataset}", disable=not progress)
    with (
        pq.ParquetWriter(out, SNAPSHOT, compression="zstd", compression_level=1) as rows_out,
        pq.ParquetWriter(scratch / "keys.parquet", KEYS) as keys_out,
        pq.ParquetWriter(scratch / "quarantine.parquet", QUARANTINE) as bad_out,
        ThreadPoolExecutor(max_workers=1) as encoder,
    ):
        pending = None
        for parsed in batches:
            valid, bad = normalise(parsed, source, cfg)
            # DuckDB scans the Arrow table `valid` in place; output keeps its (input) order.
            batch = hasher.sql(
                f"SELECT id, text, summary, ?::VARCHAR AS source, {CONTENT_SHA256_SQL} AS "
                "content_sha256, ?::TIMESTAMP AS ingested_at, line, explicit_id FROM valid",
                params=[source, ingested_at],
            ).to_arrow_table()
            if pending is not None:
                pending.result()  # keep row groups in input order
            pending = encoder.submit(
                rows_out.write_table, batch.drop_columns(["line", "explicit_id"]).cast(SNAPSHOT)
            )
            keys_out.write_table(batch.select(KEYS.names).cast(KEYS))
            if bad:
                bad_out.write_table(
                    pa.Table.from_pylist([asdict(q) for q in bad], schema=QUARANTINE)
                )
                counts.examples.extend(bad[: max(0, 20 - len(counts.examples))])
            counts.parsed += valid.num_rows
            counts.quarantined += len(bad)
            counts.blank_lines += parsed.blank_lines
            bar.update(valid.num_rows + len(bad))
        if pending is not None:
            pending.result()
    bar.close()
    hasher.close()
    return counts


def _drop_present_content(
    candidates: Path, keys: Path, present: list[str], scratch: Path, excerpt_chars: int = 200
) -> tuple[int, list[Quarantined]]:
    """Pass 2: drop rows whose content is already in the dataset or earlier in this input, and
    set aside rows whose (input) id already names other content: earlier in this input (the
    first line with the id owns it) or in an earlier version.

    The decision is made in DuckDB on (line, hash, id) keys only, so memory stays flat and no
    text is sorted. When nothing is dropped — a new file — the candidates file is the snapshot
    as written; otherwise it is rewritten once, streaming, with the kept rows. Returns (rows
    kept, the rows set aside with their reasons).
    """
    import duckdb

    con = duckdb.connect()  # in-memory: the catalog is not touched here
    try:
        con.execute(f"SET temp_directory = {sql_str(str(scratch / 'duckdb'))}")
        con.execute("SET memory_limit = '1GB'")
        files = sql_list(present)
        seen = (
            f"(SELECT DISTINCT content_sha256 FROM read_parquet({files}))"
            if present
            else "(SELECT NULL::VARCHAR AS content_sha256 WHERE false)"
        )
        owned = (
            f"(SELECT id, min(source) AS owner FROM read_parquet({files}) GROUP BY id)"
            if present
            else "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS owner WHERE false)"
        )
        con.execute(
            f"""
            CREATE TEMP TABLE decision AS
            WITH k AS (SELECT *, file_row_number AS row
                       FROM read_parquet({sql_str(str(keys))}, file_row_number = true)),
                 first AS (SELECT content_sha256, min(line) AS first_line FROM k GROUP BY ALL),
                 ids AS (SELECT id, min(line) AS id_line, arg_min(content_sha256, line) AS id_sha
                         FROM k WHERE explicit_id GROUP BY id),
                 d AS (
                    SELECT k.line, k.row, k.id,
                           k.line = first.first_line AND p.content_sha256 IS NULL AS new,
                           CASE WHEN NOT k.explicit_id THEN NULL
                                WHEN o.id IS NOT NULL THEN 'in ' || o.owner
                                WHEN ids.id_line < k.line AND ids.id_sha <> k.content_sha256
                                THEN 'at line ' || ids.id_line END AS owner
                    FROM k JOIN first USING (content_sha256)
                    LEFT JOIN {seen} p USING (content_sha256)
                    LEFT JOIN ids USING (id) LEFT JOIN {owned} o USING (id))
            SELECT line, row, id, new AND owner IS NULL AS keep,
                   CASE WHEN new AND owner IS NOT NULL THEN owner END AS reused
            FROM d ORDER BY line
            """
        )
        ((total, kept),) = con.execute(
            "SELECT count(*), count(*) FILTER (keep) FROM decision"
        ).fetchall()  # fetchall: a half-read result would block the connection
        reused = [
            Quarantined(line, f"id {rid!r} reused with different content (first {owner})", text)
            for line, rid, owner, text in con.execute(
                "SELECT d.line, d.id, d.reused, left(c.text, ?) FROM decision d JOIN "
                f"read_parquet({sql_str(str(candidates))}, file_row_number = true) c "
                "ON c.file_row_number = d.row WHERE d.reused IS NOT NULL ORDER BY d.line",
                [excerpt_chars],
            ).fetchall()
        ]
        if kept == total or kept == 0:
            return int(kept), reused
        keep_flags = con.sql("SELECT keep FROM decision ORDER BY line").to_arrow_reader(100_000)
        _filter_rows(candidates, keep_flags)
        return int(kept), reused
    finally:
        con.close()


def _filter_rows(path: Path, keep_flags: pa.RecordBatchReader) -> None:
    """Rewrite `path` keeping the rows whose flag is true; flags come in row order."""
    flags = _RowStream(keep_flags)
    source = pq.ParquetFile(path)
    with (
        atomic_path(path) as tmp,
        pq.ParquetWriter(tmp, SNAPSHOT, compression="zstd", compression_level=1) as out,
    ):
        for batch in source.iter_batches(batch_size=65_536):
            mask = flags.take(batch.num_rows)
            out.write_table(pa.Table.from_batches([batch]).filter(mask))
    source.close()


class _RowStream:
    """Hands out exactly n values at a time from a stream of one-column record batches."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.reader = reader
        self.buffer: list[pa.Array] = []
        self.buffered = 0

    def take(self, n: int) -> pa.Array:
        while self.buffered < n:
            batch = self.reader.read_next_batch()  # StopIteration here would be a bug
            self.buffer.append(batch.column(0))
            self.buffered += batch.num_rows
        joined = pa.concat_arrays(self.buffer)
        head, rest = joined.slice(0, n), joined.slice(n)
        self.buffer, self.buffered = [rest], len(rest)
        return head


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- Prefect task
@task(name="ingest-source", task_run_name=run_name("ingest {source}"), cache_policy=NO_CACHE)
def ingest_source(source: str, dataset: str, home: str, cfg: IngestConfig) -> IngestResult:
    """Read a source into a new raw snapshot (see `ingest`)."""
    return ingest(source, dataset, Catalog(Path(home)), cfg, flow_run_id=current_flow_run_id())
