from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest.config import IngestConfig
from tasks.ingest.ingest import CONTENT_SHA256_SQL, content_sha256, ingest
from tasks.ingest.readers import IngestError, detect_format, read_source
from tests.helpers import good_records, write_jsonl
from warehouse import Catalog, InvalidName


def _rows(ref) -> list[dict]:
    return ref.read().to_pylist()


def _accounted(r) -> None:
    assert r.rows_in == r.accepted + r.already_present + r.quarantined


def test_jsonl_bad_lines_are_quarantined_by_line_number(tmp_path: Path, catalog: Catalog) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            *good_records(5),  # lines 1-5
            b'{"text": "unterminated',  # 6
            {"text": ""},  # 7
            {"text": "   \n\t "},  # 8
            b'{"text": "bad \xff byte"}',  # 9
            b"[1, 2, 3]",  # 10
            {"id": "n", "text": 42},  # 11
            {"id": "m"},  # 12: no text
            {"text": "x", "summary": ["not", "a", "string"]},  # 13
            b"",  # 14: blank, not a row
            {"id": {"nested": 1}, "text": "odd id"},  # 15
            {"text": "y" * 101},  # 16: over max_chars
        ],
    )
    r = ingest(str(src), "news", catalog, IngestConfig(max_chars=100), progress=False)
    _accounted(r)
    assert (r.accepted, r.quarantined, r.blank_lines) == (5, 10, 1)
    reasons = {q["line"]: q["reason"] for q in catalog.quarantined("news")}
    assert sorted(reasons) == [6, 7, 8, 9, 10, 11, 12, 13, 15, 16]
    assert reasons[6].startswith("malformed JSON")
    assert reasons[7] == reasons[8] == "empty text"
    assert reasons[9].startswith("invalid UTF-8")
    assert reasons[10] == "not a JSON object (got list)"
    assert reasons[11] == "'text' is not a string (got int)"
    assert reasons[12] == "missing or null 'text'"
    assert "summary" in reasons[13] and "id" in reasons[15]
    assert reasons[16] == "text over max length (101 > 100 chars)"
    excerpt = next(q["excerpt"] for q in catalog.quarantined("news") if q["line"] == 9)
    assert excerpt.startswith('{"text": "bad ')  # readable, bad byte replaced


def test_snapshot_schema_ids_hashes_and_order(tmp_path: Path, catalog: Catalog) -> None:
    src = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"text": "doc one", "summary": "sum one"},
            {"id": 7, "text": "doc two"},
            {"id": "c", "text": "doc three", "extra": {"deep": [1, 2]}},
        ],
    )
    r = ingest(str(src), "pairs", catalog, progress=False)
    rows = _rows(r.ref)
    assert list(rows[0]) == ["id", "text", "summary", "source", "content_sha256", "ingested_at"]
    assert [x["id"] for x in rows] == ["pairs.jsonl:1", "7", "c"]
    assert rows[0]["content_sha256"] == content_sha256("doc one", "sum one")
    assert rows[1]["content_sha256"] == content_sha256("doc two", None)
    assert rows[0]["summary"] == "sum one" and rows[1]["summary"] is None
    assert rows[0]["source"] == str(src.resolve())


def test_python_and_duckdb_content_hashes_agree() -> None:
    cases = [("plain", None), ("doc", "sum"), ("ünïcödé ✓ 漢字", "résumé"), ("", "")]
    con = duckdb.connect()
    for text, summary in cases:
        (h,) = con.execute(
            f"SELECT {CONTENT_SHA256_SQL} FROM (SELECT ?::VARCHAR AS text, ?::VARCHAR AS summary)",
            [text, summary],
        ).fetchone()
        assert h == content_sha256(text, summary)


def test_reingest_adds_nothing_and_new_content_makes_a_delta(
    tmp_path: Path, catalog: Catalog
) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", good_records(100))
    r1 = ingest(str(first), "news", catalog, progress=False)
    r2 = ingest(str(first), "news", catalog, progress=False)
    assert (r1.accepted, r2.accepted, r2.already_present, r2.ref) == (100, 0, 100, None)
    more = write_jsonl(tmp_path / "b.jsonl", good_records(100) + good_records(30, "new"))
    r3 = ingest(str(more), "news", catalog, progress=False)
    _accounted(r3)
    assert (r3.accepted, r3.already_present, r3.ref.version) == (30, 100, 2)
    assert catalog.get("raw", "news", 2).parent == "raw/news@1"
    assert {x["id"] for x in _rows(r3.ref)} == {f"new{i}" for i in range(30)}
    assert len(catalog.ingest_runs("news")) == 3


def test_a_version_records_the_bytes_and_settings_it_was_read_from(
    tmp_path: Path, catalog: Catalog
) -> None:
    import hashlib

    from data_quality import gate
    from tasks.ingest.pending import config_sha256, source_sha256, unchanged

    src = write_jsonl(tmp_path / "a.jsonl", good_records(20))
    assert unchanged(catalog, "news", str(src), IngestConfig()) is None  # never ingested
    r1 = ingest(str(src), "news", catalog, progress=False)
    meta = catalog.get("raw", "news", 1).meta
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["ingest_config_sha256"] == config_sha256(IngestConfig())
    assert unchanged(catalog, "news", str(src), IngestConfig()) is None  # its gate is pending
    gate("raw", r1.ref, catalog)
    same = unchanged(catalog, "news", str(src), IngestConfig())
    r2 = ingest(str(src), "news", catalog, progress=False).to_dict()  # what a rerun reports
    assert same is not None and same.pop("unchanged_since") == "raw/news@1"
    assert same.pop("gate") is None and same["run_id"] is None
    for key in ("run_id", "seconds"):
        same.pop(key), r2.pop(key)
    assert same == r2 and r2["ref"] is None and r2["already_present"] == 20
    # Other settings, other bytes: a rerun might read other rows.
    assert unchanged(catalog, "news", str(src), IngestConfig(max_chars=10)) is None
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(src.read_bytes())
    assert unchanged(catalog, "news", str(copy), IngestConfig()) is not None  # same bytes
    with copy.open("ab") as f:
        f.write(b'{"id": "late", "text": "one more row"}\n')
    assert unchanged(catalog, "news", str(copy), IngestConfig()) is None
    assert source_sha256(str(tmp_path / "missing.jsonl")) is None
    assert source_sha256("hf:some/dataset") is None


def test_a_source_that_quarantined_rows_is_never_taken_as_unchanged(
    tmp_path: Path, catalog: Catalog
) -> None:
    from data_quality import gate
    from tasks.ingest.pending import unchanged

    src = write_jsonl(tmp_path / "a.jsonl", [*good_records(20), {"text": ""}])
    r = ingest(str(src), "news", catalog, progress=False)
    gate("raw", r.ref, catalog)
    assert r.quarantined == 1  # a rerun quarantines it again and gates the run: work
    assert unchanged(catalog, "news", str(src), IngestConfig()) is None


def test_a_folder_source_hashes_every_file_below_it(tmp_path: Path) -> None:
    from tasks.ingest.pending import source_sha256

    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.txt").write_text("beta")
    before = source_sha256(str(root))
    assert before is not None and source_sha256(str(root)) == before
    (root / "sub" / "b.txt").write_text("beta, edited")
    edited = source_sha256(str(root))
    assert edited not in (None, before)
    (root / "sub" / "b.txt").rename(root / "sub" / "c.txt")  # a file's name is its rows' id
    assert source_sha256(str(root)) not in (None, before, edited)


def test_repeats_within_one_file_keep_the_first(tmp_path: Path, catalog: Catalog) -> None:
    src = write_jsonl(
        tmp_path / "d.jsonl",
        [{"id": "a", "text": "same"}, {"id": "b", "text": "other"}, {"id": "c", "text": "same"}],
    )
    r = ingest(str(src), "d", catalog, progress=False)
    assert [x["id"] for x in _rows(r.ref)] == ["a", "b"] and r.already_present == 1


def test_content_in_a_version_that_failed_its_gate_can_come_again(
    tmp_path: Path, catalog: Catalog
) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", good_records(10))
    r1 = ingest(str(src), "news", catalog, progress=False)
    with catalog.writing():
        catalog.set_gate(r1.ref, False, {"failures": []})
    r2 = ingest(str(src), "news", catalog, progress=False)
    assert r2.accepted == 10 and r2.ref.version == 2


def test_fast_and_slow_jsonl_paths_agree(tmp_path: Path, catalog: Catalog) -> None:
    recs = good_records(500)
    clean = write_jsonl(tmp_path / "clean.jsonl", recs)  # parsed by pyarrow in one go
    dirty = write_jsonl(tmp_path / "dirty.jsonl", [*recs[:250], b"{oops", *recs[250:]])
    a = ingest(str(clean), "clean", catalog, progress=False)
    b = ingest(str(dirty), "dirty", catalog, progress=False)  # this block goes line by line
    strip = ("source", "ingested_at")
    rows_a = [{k: v for k, v in x.items() if k not in strip} for x in _rows(a.ref)]
    rows_b = [{k: v for k, v in x.items() if k not in strip} for x in _rows(b.ref)]
    assert rows_a == rows_b and b.quarantined == 1
    assert catalog.quarantined("dirty")[0]["line"] == 251


def test_line_numbers_stay_right_across_blocks(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.ingest.readers as mod

    monkeypatch.setattr(mod, "BLOCK_BYTES", 256)  # many small blocks, lines split across them
    recs: list = good_records(200)
    recs[57] = b"not json"
    recs[133] = {"text": ""}
    src = write_jsonl(tmp_path / "x.jsonl", recs)
    src.write_bytes(src.read_bytes().rstrip(b"\n"))  # and no trailing newline
    r = ingest(str(src), "x", catalog, progress=False)
    assert [q["line"] for q in catalog.quarantined("x")] == [58, 134]
    assert r.accepted == 198


def test_an_over_long_line_is_quarantined_without_reading_it_whole(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.ingest.readers as mod

    monkeypatch.setattr(mod, "BLOCK_BYTES", 4096)
    huge = json.dumps({"text": "z" * (3 << 20)})
    src = write_jsonl(tmp_path / "h.jsonl", [{"text": "before"}, huge, {"text": "after"}])
    r = ingest(str(src), "h", catalog, IngestConfig(max_chars=1000), progress=False)
    assert r.accepted == 2 and r.quarantined == 1
    (q,) = catalog.quarantined("h")
    assert q["line"] == 2 and "longer than" in q["reason"]
    assert [x["text"] for x in _rows(r.ref)] == ["before", "after"]


def test_gzipped_jsonl(tmp_path: Path, catalog: Catalog) -> None:
    src = tmp_path / "in.jsonl.gz"
    with gzip.open(src, "wt") as f:
        for rec in good_records(20):
            f.write(json.dumps(rec) + "\n")
    assert ingest(str(src), "gz", catalog, progress=False).accepted == 20


def test_csv_reader(tmp_path: Path, catalog: Catalog) -> None:
    src = tmp_path / "in.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "summary"])
        w.writerow(["a", "first text", "its summary"])
        w.writerow(["b", "a text\nspanning lines", ""])  # lines 3-4
        w.writerow(["c", "too", "many", "fields"])  # line 5
        w.writerow(["d", "", ""])  # line 6: empty text
    with open(src, "ab") as f:
        f.write(b"e,bad \xff byte,\n")  # line 7
        f.write(b"f,last one,s\n")  # line 8
    r = ingest(str(src), "csv", catalog, progress=False)
    _accounted(r)
    assert [x["id"] for x in _rows(r.ref)] == ["a", "b", "f"]
    assert _rows(r.ref)[1]["text"] == "a text\nspanning lines"
    assert _rows(r.ref)[1]["summary"] is None
    reasons = {q["line"]: q["reason"] for q in catalog.quarantined("csv")}
    assert reasons == {
        5: "malformed CSV row: 4 fields, header has 3",
        6: "empty text",
        7: "invalid UTF-8",
    }


def test_parquet_reader_and_column_errors(tmp_path: Path, catalog: Catalog) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"body": ["x1", None, "x3"], "n": [1, 2, 3]}), src)
    r = ingest(
        str(src), "pq", catalog, IngestConfig(text_field="body", id_field="n"), progress=False
    )
    assert [x["id"] for x in _rows(r.ref)] == ["1", "3"]
    assert catalog.quarantined("pq")[0]["line"] == 2
    with pytest.raises(IngestError, match="no column 'text'"):
        list(read_source(str(src), IngestConfig()))
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(IngestError, match="not text"):
        list(read_source(str(tmp_path / "ints.parquet"), IngestConfig()))


def test_txt_folder_reader(tmp_path: Path, catalog: Catalog) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha document")
    (root / "sub" / "b.txt").write_text("beta document")
    (root / "bad.txt").write_bytes(b"caf\xe9")
    (root / "notes.md").write_text("ignored: not .txt")
    r = ingest(str(root), "txt", catalog, progress=False)
    assert sorted(x["id"] for x in _rows(r.ref)) == ["a.txt", "sub/b.txt"]
    (q,) = catalog.quarantined("txt")
    assert "bad.txt" in q["reason"] and "UTF-8" in q["reason"]


def test_saved_hf_dataset_reader(tmp_path: Path, catalog: Catalog) -> None:
    import datasets

    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"article": ["one", "two", ""], "highlights": ["1", "2", "3"]}
            )
        }
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    cfg = IngestConfig(text_field="article", summary_field="highlights")
    r = ingest(str(tmp_path / "saved"), "hf", catalog, cfg, progress=False)
    assert [(x["text"], x["summary"]) for x in _rows(r.ref)] == [("one", "1"), ("two", "2")]
    assert r.quarantined == 1
    with pytest.raises(IngestError, match="splits"):
        list(read_source(str(tmp_path / "saved"), IngestConfig(hf_split="test")))


def test_unreadable_sources_fail_before_anything_is_written(
    tmp_path: Path, catalog: Catalog
) -> None:
    with pytest.raises(IngestError, match="not found"):
        ingest(str(tmp_path / "missing.jsonl"), "x", catalog, progress=False)
    with pytest.raises(IngestError, match="format"):
        detect_format(str(tmp_path / "data.xlsx"))
    with pytest.raises(InvalidName):
        ingest(str(tmp_path / "x.jsonl"), "../etc", catalog, progress=False)
    assert catalog.versions() == []


def test_empty_file_makes_no_version(tmp_path: Path, catalog: Catalog) -> None:
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    r = ingest(str(src), "e", catalog, progress=False)
    assert (r.rows_in, r.ref) == (0, None)


def test_row_stream_hands_out_exact_counts_across_uneven_batches() -> None:
    from tasks.ingest.ingest import _RowStream

    flags = [i % 3 == 0 for i in range(1000)]
    batches = [
        pa.record_batch([pa.array(flags[a:b])], names=["keep"])
        for a, b in [(0, 7), (7, 500), (500, 501), (501, 1000)]
    ]
    stream = _RowStream(pa.RecordBatchReader.from_batches(batches[0].schema, batches))
    got: list[bool] = []
    for n in (3, 250, 1, 600, 146):
        got += stream.take(n).to_pylist()
    assert got == flags


def test_partial_overlap_rewrites_only_the_new_rows_in_order(
    tmp_path: Path, catalog: Catalog
) -> None:
    old = good_records(50, "old")
    ingest(str(write_jsonl(tmp_path / "a.jsonl", old)), "mix", catalog, progress=False)
    mixed = [x for pair in zip(old, good_records(50, "new"), strict=True) for x in pair]
    r = ingest(str(write_jsonl(tmp_path / "b.jsonl", mixed)), "mix", catalog, progress=False)
    assert [x["id"] for x in _rows(r.ref)] == [f"new{i}" for i in range(50)]
    assert r.ref.rows == 50 and r.already_present == 50


# ------------------------------------------------------------------ hostile input
def test_one_line_of_deeply_nested_brackets_is_quarantined_not_fatal(
    tmp_path: Path, catalog: Catalog
) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [*good_records(25), "[" * 100_000 + "]" * 100_000, *good_records(25, prefix="late")],
    )
    r = ingest(str(src), "news", catalog, progress=False)
    _accounted(r)
    assert (r.rows_in, r.accepted, r.quarantined) == (51, 50, 1)
    (q,) = catalog.quarantined("news")
    assert q["line"] == 26 and q["reason"].startswith("unparseable line: RecursionError")


def test_a_reused_id_with_other_content_is_quarantined_naming_the_first_line(
    tmp_path: Path, catalog: Catalog
) -> None:
    rows = good_records(10)
    src = write_jsonl(
        tmp_path / "a.jsonl",
        [*rows, {"id": "doc3", "text": "other text under an id already used"}, rows[4]],
    )
    r = ingest(str(src), "news", catalog, progress=False)
    _accounted(r)  # 12 in = 10 accepted + 1 already present (the repeat) + 1 quarantined
    assert (r.rows_in, r.accepted, r.already_present, r.quarantined) == (12, 10, 1, 1)
    (q,) = catalog.quarantined("news")
    assert q["line"] == 11 and q["reason"] == (
        "id 'doc3' reused with different content (first at line 4)"
    )
    assert q["excerpt"] == "other text under an id already used"
    # ... and across versions: the id belongs to the earlier version's row
    later = write_jsonl(tmp_path / "b.jsonl", [{"id": "doc1", "text": "a new text, same id"},
                                               {"id": "new", "text": "fresh"}])  # fmt: skip
    r2 = ingest(str(later), "news", catalog, progress=False)
    _accounted(r2)
    assert (r2.accepted, r2.quarantined) == (1, 1)
    reason = [q["reason"] for q in catalog.quarantined("news") if q["run_id"] == r2.run_id]
    assert reason == [f"id 'doc1' reused with different content (first in {tmp_path / 'a.jsonl'})"]
    assert [x["id"] for x in _rows(r2.ref)] == ["new"]


def test_rows_without_ids_may_share_default_ids_across_files(
    tmp_path: Path, catalog: Catalog
) -> None:
    """Default ids (<file>:<line>) are not the input's: a changed file is new content."""
    write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    ingest(str(tmp_path / "a.jsonl"), "news", catalog, progress=False)
    write_jsonl(tmp_path / "a.jsonl", [{"text": "zero"}, {"text": "one"}, {"text": "two"}])
    r = ingest(str(tmp_path / "a.jsonl"), "news", catalog, progress=False)
    assert (r.accepted, r.already_present, r.quarantined) == (1, 2, 0)


def test_csv_ending_in_an_unterminated_quote_is_quarantined(
    tmp_path: Path, catalog: Catalog
) -> None:
    src = tmp_path / "in.csv"
    src.write_text('id,text\na,first row\nb,"never closed\nand the rest\nof the file\n')
    r = ingest(str(src), "csv", catalog, progress=False)
    _accounted(r)
    assert [x["id"] for x in _rows(r.ref)] == ["a"]
    (q,) = catalog.quarantined("csv")
    assert q["line"] == 3 and "never closed" in q["reason"]
