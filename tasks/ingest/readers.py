"""Readers: a source (JSONL, Parquet, CSV, a folder of .txt, a saved HF dataset or `hf:NAME`)
-> batches of parsed rows `(line, id, text, summary)` plus the records that did not parse.

JSONL is read in 16 MiB blocks parsed by pyarrow's C++ JSON reader; only a block that fails to
parse (a malformed line, invalid UTF-8, a blank line, a field of the wrong type) is re-read line by
line in Python to find and quarantine the culprits. That keeps clean files near DuckDB's speed.

Nothing here imports Prefect or a model: `llm4all score` reads through these and starts fast.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.ingest.config import IngestConfig
from warehouse import arrow

log = logging.getLogger(__name__)

BLOCK_BYTES = 16 << 20

# What every reader produces: one row per input record that parsed. `line` is the 1-based line
# (JSONL, CSV) or row (Parquet, HF, file index for .txt folders) number, used for quarantine
# reports and as the input order.
PARSED = pa.schema(
    [
        ("line", pa.int64()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("summary", pa.string()),
    ]
)
QUARANTINE = pa.schema([("line", pa.int64()), ("reason", pa.string()), ("excerpt", pa.string())])
SNAPSHOT_COLUMNS = ("id", "text", "summary", "source", "content_sha256", "ingested_at")


class IngestError(RuntimeError):
    """The source as a whole cannot be read (missing, unknown format, wrong column type)."""


@dataclass
class Quarantined:
    line: int
    reason: str
    excerpt: str


@dataclass
class Parsed:
    """One batch from a reader: rows that parsed, and the records that did not."""

    table: pa.Table  # schema PARSED
    quarantined: list[Quarantined] = field(default_factory=list)
    blank_lines: int = 0


# --------------------------------------------------------------------------- readers
def detect_format(source: str) -> str:
    if source.startswith("hf:"):
        return "hf"
    p = Path(source)
    if p.is_dir():
        markers = ("dataset_info.json", "state.json", "dataset_dict.json")
        return "hf" if any((p / m).exists() for m in markers) else "txt"
    name = p.name.lower().removesuffix(".gz")
    for suffixes, fmt in (
        ((".jsonl", ".json", ".ndjson"), "jsonl"),
        ((".parquet", ".pq"), "parquet"),
        ((".csv", ".tsv"), "csv"),
    ):
        if name.endswith(suffixes):
            return fmt
    raise IngestError(
        f"cannot tell the format of {source!r} from its name; pass --format "
        "jsonl|parquet|csv|txt|hf"
    )


def check_source(source: str, cfg: IngestConfig) -> str:
    """The reader format for `source`; raises IngestError if it is missing or unrecognised."""
    fmt = cfg.format if cfg.format != "auto" else detect_format(source)
    if fmt != "hf" and not Path(source).exists():
        raise IngestError(f"source not found: {source}")
    return fmt


def read_source(source: str, cfg: IngestConfig) -> Iterator[Parsed]:
    """Dispatch to the reader for `cfg.format` (or the detected one)."""
    fmt = check_source(source, cfg)
    readers = {
        "jsonl": read_jsonl,
        "parquet": read_parquet,
        "csv": read_csv,
        "txt": read_txt_folder,
        "hf": read_hf,
    }
    return readers[fmt](source, cfg)


def _open_bytes(path: str) -> IO[bytes]:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _excerpt(raw: bytes | str, n: int) -> str:
    s = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return s[:n]


def read_jsonl(path: str, cfg: IngestConfig) -> Iterator[Parsed]:
    """JSON Lines, streamed in blocks (constant memory); .gz works too."""
    max_line = max(8 * cfg.max_chars, 1 << 20)  # a line this long cannot hold a valid text
    with _open_bytes(path) as f:
        lines_done = 0
        rest = b""
        skipping = False  # inside a line longer than max_line: discard up to its newline
        while True:
            chunk = f.read(BLOCK_BYTES)
            buf = rest + chunk
            if not chunk and buf and not buf.endswith(b"\n"):
                buf += b"\n"  # last line without a trailing newline
            cut = buf.rfind(b"\n") + 1
            if cut == 0:  # no newline in sight: one very long line
                if len(buf) > max_line and not skipping:
                    skipping = True
                    lines_done += 1
                    yield Parsed(
                        pa.table({c: [] for c in PARSED.names}, schema=PARSED),
                        [
                            Quarantined(
                                lines_done,
                                f"line longer than {max_line} bytes",
                                _excerpt(buf[:4096], cfg.excerpt_chars),
                            )
                        ],
                    )
                rest = b"" if skipping else buf
                if not chunk:
                    break
                continue
            block, rest = buf[:cut], buf[cut:]
            if skipping:  # the over-long line ends at the first newline of this block
                first = block.index(b"\n") + 1
                block, skipping = block[first:], False
            if block:
                n = block.count(b"\n")
                yield _parse_jsonl_block(block, lines_done, path, cfg)
                lines_done += n
            if not chunk:
                break


def _parse_jsonl_block(block: bytes, lines_before: int, path: str, cfg: IngestConfig) -> Parsed:
    table = _parse_jsonl_fast(block, cfg)
    if table is not None:
        first = lines_before + 1
        lines = arrow.numeric(np.arange(first, first + table.num_rows, dtype=np.int64))
        return Parsed(_as_parsed(table, lines, cfg))
    return _parse_jsonl_slow(block, lines_before, cfg)


def _parse_jsonl_fast(block: bytes, cfg: IngestConfig) -> pa.Table | None:
    """pyarrow's JSON reader on a whole block, or None if any line needs a closer look."""
    import pyarrow.json as pj

    if not _valid_utf8(block):  # pyarrow's JSON reader does not validate UTF-8
        return None
    n_lines = block.count(b"\n")
    fields = [cfg.text_field, cfg.summary_field]
    for id_type in (pa.string(), pa.int64()):  # ids are strings or integers in practice
        schema = pa.schema([(f, pa.string()) for f in fields] + [(cfg.id_field, id_type)])
        opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        ropts = pj.ReadOptions(block_size=1 << 20)  # 1 MiB chunks: parsed in parallel
        try:
            table = pj.read_json(io.BytesIO(block), read_options=ropts, parse_options=opts)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue
        # Blank lines are skipped by pyarrow, which would shift line numbers: go slow.
        return table if table.num_rows == n_lines else None
    return None


def _valid_utf8(block: bytes) -> bool:
    """Arrow's UTF-8 check over the bytes in place (SIMD; no Python str is built)."""
    if len(block) >= 1 << 31:
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    offsets = pa.py_buffer(np.array([0, len(block)], np.int32))
    arr = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(block)])
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _as_parsed(table: pa.Table, lines: pa.Array, cfg: IngestConfig) -> pa.Table:
    def col(name: str) -> pa.Array:
        if name in table.column_names:
            return pc.cast(table.column(name), pa.string())
        return pa.nulls(table.num_rows, pa.string())

    return pa.table(
        [lines, col(cfg.id_field), col(cfg.text_field), col(cfg.summary_field)], schema=PARSED
    )


def _parse_jsonl_slow(block: bytes, lines_before: int, cfg: IngestConfig) -> Parsed:
    rows: dict[str, list[Any]] = {c: [] for c in PARSED.names}
    bad: list[Quarantined] = []
    blank = 0
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        lineno = lines_before + i + 1
        if not raw.strip():
            blank += 1
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            reason, record = _check_record(obj, cfg)
        except UnicodeDecodeError as e:
            reason = f"invalid UTF-8 at byte {e.start}"
        except json.JSONDecodeError as e:
            reason = f"malformed JSON: {e.msg} (column {e.colno})"
        except (RecursionError, MemoryError, ValueError, TypeError) as e:
            # one hostile line (100,000 nested brackets, say) is that line's problem only
            first = str(e).splitlines()[0] if str(e) else ""
            reason = f"unparseable line: {type(e).__name__}: {first}"[:200]
        if reason:
            bad.append(Quarantined(lineno, reason, _excerpt(raw, cfg.excerpt_chars)))
            continue
        rows["line"].append(lineno)
        for k in ("id", "text", "summary"):
            rows[k].append(record[k])
    return Parsed(pa.table(rows, schema=PARSED), bad, blank)


def _check_record(obj: Any, cfg: IngestConfig) -> tuple[str | None, dict[str, Any]]:
    """Pull id/text/summary out of one decoded record, or say why it is unusable."""
    if not isinstance(obj, dict):
        return f"not a JSON object (got {type(obj).__name__})", {}
    text = obj.get(cfg.text_field)
    if text is None:
        return f"missing or null {cfg.text_field!r}", {}
    if not isinstance(text, str):
        return f"{cfg.text_field!r} is not a string (got {type(text).__name__})", {}
    summary = obj.get(cfg.summary_field)
    if summary is not None and not isinstance(summary, str):
        return f"{cfg.summary_field!r} is not a string (got {type(summary).__name__})", {}
    rid = obj.get(cfg.id_field)
    if rid is not None and not isinstance(rid, str | int):
        return f"{cfg.id_field!r} must be a string or an integer (got {type(rid).__name__})", {}
    return None, {"id": None if rid is None else str(rid), "text": text, "summary": summary}


def read_parquet(path: str, cfg: IngestConfig) -> Iterator[Parsed]:
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    if cfg.text_field not in schema.names:
        raise IngestError(
            f"{path} has no column {cfg.text_field!r} (columns: {', '.join(schema.names)}); "
            "pass --text-field"
        )
    for name in (cfg.text_field, cfg.summary_field):
        kind = schema.field(name).type if name in schema.names else pa.string()
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise IngestError(f"column {name!r} of {path} is {kind}, not text")
    wanted = [c for c in (cfg.id_field, cfg.text_field, cfg.summary_field) if c in schema.names]
    yield from _arrow_batches(pf.iter_batches(batch_size=50_000, columns=wanted), cfg)


def _arrow_batches(batches: Any, cfg: IngestConfig) -> Iterator[Parsed]:
    done = 0
    for batch in batches:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        lines = arrow.numeric(np.arange(done + 1, done + 1 + table.num_rows, dtype=np.int64))
        done += table.num_rows
        yield Parsed(_as_parsed(table, lines, cfg))


def read_csv(path: str, cfg: IngestConfig) -> Iterator[Parsed]:
    """CSV/TSV with a header row; rows with the wrong field count or bad UTF-8 are quarantined."""
    csv.field_size_limit(1 << 31)
    delimiter = "\t" if path.lower().removesuffix(".gz").endswith(".tsv") else ","
    with _open_bytes(path) as fb:
        # surrogateescape keeps undecodable bytes visible as lone surrogates, per row.
        f = io.TextIOWrapper(fb, encoding="utf-8", errors="surrogateescape", newline="")
        # strict: a quote left open at the end of the file (or a stray one) is an error for that
        # record, not a row holding the rest of the file; the reader carries on after it.
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise IngestError(f"{path}: the header row is not valid CSV ({e})") from None
        if header is None:
            return
        if cfg.text_field not in header:
            raise IngestError(
                f"{path} has no column {cfg.text_field!r} (header: {', '.join(header)}); "
                "pass --text-field"
            )
        index = {name: i for i, name in enumerate(header)}
        rows: dict[str, list[Any]] = {c: [] for c in PARSED.names}
        bad: list[Quarantined] = []
        blank = 0
        line = reader.line_num
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                start, line = line + 1, reader.line_num
                why = str(e)
                if "unexpected end of data" in why:
                    why = "a quoted field is never closed (unexpected end of data)"
                bad.append(Quarantined(start, f"malformed CSV: {why}", ""))
                continue
            start, line = line + 1, reader.line_num  # a quoted field may span several lines
            joined = delimiter.join(record)
            if len(record) != len(header):
                if not any(x.strip() for x in record):
                    blank += 1
                    continue
                reason = f"malformed CSV row: {len(record)} fields, header has {len(header)}"
                bad.append(Quarantined(start, reason, _safe(joined)[: cfg.excerpt_chars]))
                continue
            if _has_surrogates(joined):
                bad.append(Quarantined(start, "invalid UTF-8", _safe(joined)[: cfg.excerpt_chars]))
                continue
            rows["line"].append(start)
            rows["text"].append(record[index[cfg.text_field]])
            s = index.get(cfg.summary_field)
            rows["summary"].append(record[s] if s is not None and record[s] != "" else None)
            i = index.get(cfg.id_field)
            rows["id"].append(record[i] if i is not None and record[i] != "" else None)
            if len(rows["line"]) >= 50_000:
                yield Parsed(pa.table(rows, schema=PARSED), bad, blank)
                rows, bad, blank = {c: [] for c in PARSED.names}, [], 0
        yield Parsed(pa.table(rows, schema=PARSED), bad, blank)


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _safe(s: str) -> str:
    return s.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def read_txt_folder(path: str, cfg: IngestConfig) -> Iterator[Parsed]:
    """Each .txt file under the folder (recursively, in name order) is one document."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*.txt") if p.is_file())
    rows: dict[str, list[Any]] = {c: [] for c in PARSED.names}
    bad: list[Quarantined] = []
    for n, p in enumerate(files, 1):
        rel = str(p.relative_to(root))
        if p.stat().st_size > 4 * cfg.max_chars:  # 4 bytes/char at most in UTF-8
            with open(p, "rb") as fh:
                head = fh.read(4 * cfg.excerpt_chars)
            bad.append(Quarantined(n, f"{rel}: over max length", _excerpt(head, cfg.excerpt_chars)))
            continue
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            reason = f"{rel}: invalid UTF-8 at byte {e.start}"
            bad.append(Quarantined(n, reason, _excerpt(raw, cfg.excerpt_chars)))
            continue
        rows["line"].append(n)
        rows["id"].append(rel)
        rows["text"].append(text)
        rows["summary"].append(None)
        if len(rows["line"]) >= 10_000:
            yield Parsed(pa.table(rows, schema=PARSED), bad)
            rows, bad = {c: [] for c in PARSED.names}, []
    yield Parsed(pa.table(rows, schema=PARSED), bad)


def read_hf(source: str, cfg: IngestConfig) -> Iterator[Parsed]:
    """A folder written by `save_to_disk`, or `hf:NAME` for `load_dataset(NAME)`."""
    import datasets

    if source.startswith("hf:"):
        ds = datasets.load_dataset(source[3:], split=cfg.hf_split)
    else:
        ds = datasets.load_from_disk(source)
        if isinstance(ds, datasets.DatasetDict):
            if cfg.hf_split not in ds:
                raise IngestError(
                    f"{source} has splits {', '.join(ds)}; pick one with hf_split (not "
                    f"{cfg.hf_split!r})"
                )
            ds = ds[cfg.hf_split]
    if cfg.text_field not in ds.column_names:
        raise IngestError(
            f"{source} has no column {cfg.text_field!r} (columns: {', '.join(ds.column_names)})"
        )
    wanted = [c for c in (cfg.id_field, cfg.text_field, cfg.summary_field) if c in ds.column_names]
    yield from _arrow_batches(ds.select_columns(wanted).with_format("arrow").iter(50_000), cfg)
