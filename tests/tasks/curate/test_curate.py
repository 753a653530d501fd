"""curate_next against a real catalog (no Prefect): decisions not deletions, cross-snapshot
dedup reusing the persisted signatures, the curated gate."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_quality import GateFailed, GatesConfig, gate
from tasks.curate.config import DedupConfig, parse_filters
from tasks.curate.curate import curate_next, pending_raw_versions
from tasks.ingest.ingest import ingest
from tests.helpers import write_jsonl
from warehouse import Catalog


def _doc(rng: random.Random, n: int = 150) -> str:
    return " ".join(f"tok{rng.randrange(100_000)}" for _ in range(n))


def _near(rng: random.Random, text: str, k: int = 3) -> str:
    ws = text.split()
    for i in rng.sample(range(len(ws)), k):
        ws[i] = f"new{rng.randrange(10**9)}"
    return " ".join(ws)


def _rows(ref) -> list[dict]:
    return [r for f in ref.files() for r in pq.ParquetFile(f).read().to_pylist()]


GATES = GatesConfig.model_validate({"curated": {"min_rows_for_shares": 10}})
CFG = DedupConfig.model_validate({"semantic": {"enabled": False}, "quality": {"enabled": False}})


def _ingest(cat: Catalog, tmp: Path, name: str, rows: list[dict]) -> None:
    res = ingest(str(write_jsonl(tmp / f"{name}.jsonl", rows)), "news", cat, progress=False)
    gate("raw", res.ref, cat)


def test_curate_two_snapshots(tmp_path: Path) -> None:
    rng = random.Random(0)
    cat = Catalog(tmp_path / "home")
    assert curate_next("news", cat, CFG).ref is None  # empty dataset: nothing to curate

    first = [_doc(rng) for _ in range(30)]
    rows1 = [{"id": f"a{i}", "text": t} for i, t in enumerate(first)]
    rows1 += [
        {"id": "a-exact", "text": first[0].upper()},
        {"id": "a-near", "text": _near(rng, first[1])},
    ]
    _ingest(cat, tmp_path, "one", rows1)
    r1 = curate_next("news", cat, CFG)
    assert r1.ref is not None and r1.rows == 32 and r1.kept == 30
    gate("curated", r1.ref, cat, GATES)
    snap = _rows(r1.ref)
    assert [r["id"] for r in snap] == [r["id"] for r in rows1]  # every row, input order
    raw_columns = ["id", "text", "summary", "source", "content_sha256", "ingested_at"]
    assert list(snap[0])[:7] == [*raw_columns, "doc_key"]  # no `v` from the lake's folder name
    by_id = {r["id"]: r for r in snap}
    assert by_id["a-exact"]["exact_dup_of"] == "a0" and not by_id["a-exact"]["keep"]
    assert by_id["a-near"]["reason"] == "near_dup"
    assert by_id["a-near"]["near_dup_cluster"] == by_id["a1"]["near_dup_cluster"]
    assert (Path(r1.ref.path) / "_minhash" / "params.json").exists()
    assert len(r1.ref.files()) == 1  # aux files are not data files

    # Refresh: new rows duplicating earlier snapshot rows are caught, old ones not touched.
    second = [_doc(rng) for _ in range(20)]
    rows2 = [{"id": f"b{i}", "text": t} for i, t in enumerate(second)]
    rows2 += [
        {"id": "b-exact-old", "text": first[2] + "  "},
        {"id": "b-near-old", "text": _near(rng, first[3])},
        {"id": "b-near-old-dup", "text": _near(rng, first[1], 2)},
    ]
    _ingest(cat, tmp_path, "two", rows2)
    r2 = curate_next("news", cat, CFG)
    assert r2.ref is not None and r2.ref.version == 2 and r2.rows == 23
    assert r2.stats["recomputed_prior_signatures"] == 0  # persisted signatures reused
    assert r2.stats["prior_rows"] == 32
    snap2 = {r["id"]: r for r in _rows(r2.ref)}
    assert snap2["b-exact-old"]["exact_dup_of"] == "a2"
    assert snap2["b-near-old"]["reason"] == "near_dup"
    assert snap2["b-near-old"]["near_dup_cluster"] == by_id["a3"]["near_dup_cluster"]
    assert snap2["b-near-old-dup"]["near_dup_cluster"] == by_id["a1"]["near_dup_cluster"]
    assert sum(r["keep"] for r in snap2.values()) == 20
    assert min(r["doc_key"] for r in snap2.values()) > max(r["doc_key"] for r in snap)
    gate("curated", r2.ref, cat, GATES)
    assert pending_raw_versions(cat, "news") == []
    assert curate_next("news", cat, CFG).ref is None


def test_changed_minhash_params_recompute_prior_signatures(tmp_path: Path) -> None:
    rng = random.Random(1)
    cat = Catalog(tmp_path / "home")
    first = [_doc(rng) for _ in range(12)]
    _ingest(cat, tmp_path, "one", [{"text": t} for t in first])
    r1 = curate_next("news", cat, CFG)
    gate("curated", r1.ref, cat, GATES)
    _ingest(cat, tmp_path, "two", [{"text": _near(rng, first[0])}, {"text": _doc(rng)}])
    cfg = CFG.model_copy(update={"near": CFG.near.model_copy(update={"seed": 7})})
    r2 = curate_next("news", cat, cfg)
    assert r2.stats["recomputed_prior_signatures"] == 12
    assert r2.stats["near_dups"] == 1


def _jaccard(x: str, y: str) -> float:
    import numpy as np

    from tasks.curate.lsh import jaccard_exact
    from tasks.curate.minhash import SketchParams, sketch

    s = sketch([x, y], SketchParams(num_perm=4))
    return float(jaccard_exact(s.shingles, s.offsets, np.array([0]), np.array([1]))[0])


def test_cross_snapshot_exact_verification_and_one_time_recompute(tmp_path: Path) -> None:
    import json

    rng = random.Random(4)
    cat = Catalog(tmp_path / "home")
    first = [_doc(rng, 200) for _ in range(20)]
    _ingest(cat, tmp_path, "one", [{"id": f"a{i}", "text": t} for i, t in enumerate(first)])
    r1 = curate_next("news", cat, CFG)
    gate("curated", r1.ref, cat, GATES)
    mh = Path(r1.ref.path) / "_minhash"
    sketch_file = next(mh.glob("sketch-*.parquet"))
    assert pq.read_schema(sketch_file).names == ["doc", "chars", "sig", "shingles"]
    assert json.loads((mh / "params.json").read_text())["version"] == 2
    above, below = _near(rng, first[0], 2), _near(rng, first[1], 10)
    assert 0.8 <= _jaccard(first[0], above) < 0.95 and 0.4 < _jaccard(first[1], below) < 0.8
    rows2 = [{"id": "above", "text": above}, {"id": "below", "text": below}]
    rows2 += [{"id": f"b{i}", "text": _doc(rng, 200)} for i in range(12)]
    _ingest(cat, tmp_path, "two", rows2)
    r2 = curate_next("news", cat, CFG)
    gate("curated", r2.ref, cat, GATES)
    snap1 = {r["id"]: r for r in _rows(r1.ref)}
    snap2 = {r["id"]: r for r in _rows(r2.ref)}
    assert snap2["above"]["reason"] == "near_dup"  # a near-dup of an old kept row: dropped
    assert snap2["above"]["near_dup_cluster"] == snap1["a0"]["near_dup_cluster"]
    assert snap2["below"]["keep"]  # J under the threshold: kept, whatever its estimate
    assert all(r["keep"] for r in _rows(r1.ref))  # the old rows stay as they were

    # A params change recomputes earlier snapshots' sketches once, into the new snapshot.
    before = (mh / "params.json").read_text()
    cfg = CFG.model_copy(update={"near": CFG.near.model_copy(update={"seed": 9})})
    _ingest(cat, tmp_path, "three", [{"id": "c0", "text": _near(rng, first[2], 1)}])
    r3 = curate_next("news", cat, cfg)
    gate("curated", r3.ref, cat, GATES)
    assert r3.stats["recomputed_prior_signatures"] == 20 + 14
    assert {r["id"]: r["reason"] for r in _rows(r3.ref)} == {"c0": "near_dup"}
    assert (mh / "params.json").read_text() == before  # earlier snapshots are not written to
    _ingest(cat, tmp_path, "four", [{"id": "d0", "text": _near(rng, first[3], 1)}])
    r4 = curate_next("news", cat, cfg)
    assert r4.stats["recomputed_prior_signatures"] == 0  # the recomputed copies are reused
    assert {r["id"]: r["reason"] for r in _rows(r4.ref)} == {"d0": "near_dup"}


def test_curated_gate_fails_on_low_kept_share(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "home")
    # distinct to ingest (whitespace differs), equal to exact dedup (whitespace collapsed)
    rows = [
        {"id": f"r{i}", "text": "same" + " " * (i + 1) + f"text {'x' * (i % 2)}"} for i in range(40)
    ]
    _ingest(cat, tmp_path, "dups", rows)
    r = curate_next("news", cat, CFG)
    assert r.kept == 2
    with pytest.raises(GateFailed, match="kept_share"):
        gate("curated", r.ref, cat, GATES)
    assert cat.get("curated", "news", 1).gate_passed is False
    # a failed curated version does not count: the raw version is pending again
    assert [v.version for v in pending_raw_versions(cat, "news")] == [1]


def test_parse_filters() -> None:
    cfg = DedupConfig()
    assert parse_filters(None, cfg) == ["exact", "quality", "near", "semantic", "factuality"]
    assert parse_filters("near, exact,near", cfg) == ["exact", "near"]
    assert parse_filters("near,quality", cfg) == ["quality", "near"]  # run order
    from tasks.curate.config import CurateError

    assert parse_filters("factuality,mgt,exact", cfg) == ["exact", "mgt", "factuality"]
    with pytest.raises(CurateError, match="unknown filter"):
        parse_filters("fuzzy", cfg)


def test_quality_rules_mark_rows_before_near_dedup(tmp_path: Path) -> None:
    from tests.tasks.curate.test_quality import CLEAN

    cat = Catalog(tmp_path / "home")
    rows = [
        {"id": "good", "text": CLEAN},
        {"id": "junk", "text": "Click here. Buy now."},
        {"id": "code", "text": CLEAN + " function f() { return 1 }"},
        {"id": "junk-copy", "text": "click here.  buy now."},  # exact dup of junk (normalised)
    ]
    _ingest(cat, tmp_path, "q", rows)
    cfg = DedupConfig.model_validate({"semantic": {"enabled": False}})
    r = curate_next("news", cat, cfg)
    snap = {x["id"]: x for x in _rows(r.ref)}
    assert snap["good"]["keep"] and snap["good"]["quality_reason"] is None
    assert snap["junk"]["reason"] == "quality"
    assert snap["junk"]["quality_reason"].startswith("gopher_short_document: 4 words < 50")
    assert snap["code"]["quality_reason"].startswith("c4_curly_bracket")
    assert snap["junk-copy"]["reason"] == "exact_dup"  # exact dedup runs first
    assert r.stats["low_quality"] == 2
    assert r.stats["quality_rules"] == {"gopher_short_document": 1, "c4_curly_bracket": 1}


# --------------------------------------------------------------------------- machine text
def _news_texts(n: int, words: int = 24, seed: int = 0) -> list[dict]:
    from tests.helpers import NEWS_WORDS

    rng = random.Random(seed)
    return [
        {"id": f"t{i}", "text": " ".join(rng.choice(NEWS_WORDS) for _ in range(words))}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory):
    from models.loading_config import ModelSpec
    from tests.tiny import make_tiny_llama

    return ModelSpec(path=str(make_tiny_llama(tmp_path_factory.mktemp("t") / "lm")))


def _mgt_cfg(**mgt) -> DedupConfig:
    return DedupConfig.model_validate(
        {"semantic": {"enabled": False}, "quality": {"enabled": False}, "mgt": mgt}
    )


def test_downweight_and_share_cap_in_score(tmp_path: Path, teacher) -> None:
    from tasks.curate.score import score_file

    src = str(write_jsonl(tmp_path / "in.jsonl", _news_texts(10)))
    base = score_file(
        src, str(tmp_path / "a.parquet"), _mgt_cfg(), ["exact", "mgt"], teacher=teacher
    )
    scores = pq.read_table(base.output).column("mgt_score").to_pylist()
    t = sorted(scores, reverse=True)[6]  # 6 rows above it: machine-like
    top2 = set(sorted(range(10), key=lambda i: -scores[i])[:2])
    cfg = _mgt_cfg(threshold=t, action="downweight", weight=0.25, max_share=0.5)
    res = score_file(src, str(tmp_path / "b.parquet"), cfg, ["exact", "mgt"], teacher=teacher)
    d = pq.read_table(res.output).to_pydict()
    # 10 kept, 6 machine-like: (6 - x) / (10 - x) <= 0.5 needs x = 2, the two highest.
    assert {i for i, r in enumerate(d["reason"]) if r == "mgt_share_cap"} == top2
    assert res.kept == 8
    machine_kept = [i for i in range(10) if scores[i] > t and i not in top2]
    assert len(machine_kept) == 4
    assert [d["sample_weight"][i] for i in machine_kept] == [0.25] * 4
    assert all(d["sample_weight"][i] == 1.0 for i in range(10) if scores[i] <= t)
    # action=drop: every machine-like row goes, no weight column (the score contract)
    cfg = _mgt_cfg(threshold=t, max_share=0.5)
    res = score_file(src, str(tmp_path / "c.parquet"), cfg, ["exact", "mgt"], teacher=teacher)
    d = pq.read_table(res.output).to_pydict()
    assert d["reason"].count("machine_generated") == 6 and "sample_weight" not in d


def test_share_cap_zero_drops_every_machine_like_row(tmp_path: Path, teacher) -> None:
    from tasks.curate.score import score_file

    src = str(write_jsonl(tmp_path / "in.jsonl", [*_news_texts(6), {"text": "the news"}]))
    cfg = _mgt_cfg(threshold=-1e9, action="downweight", max_share=0.0)
    res = score_file(src, str(tmp_path / "o.parquet"), cfg, ["exact", "mgt"], teacher=teacher)
    d = pq.read_table(res.output).to_pydict()
    # 6 scored rows are all machine-like; the 2-token row has no score and stays.
    assert d["reason"] == ["mgt_share_cap"] * 6 + [None]
    assert d["mgt_score"][6] is None and d["sample_weight"][6] == 1.0


def test_curate_downweight_report_and_tokens(tmp_path: Path, teacher) -> None:
    """Curate with down-weighting -> sample_weight in the snapshot -> the funnel report ->
    tokens leave a down-weighted row out exactly when its content hash says so."""
    import duckdb

    from tasks.curate.report import write_report
    from tasks.tokens.config import TokensConfig
    from tasks.tokens.tokenize import included, tokenize

    cat = Catalog(tmp_path / "home")
    rows = _news_texts(30, seed=1)
    rows[0]["text"] = "the news"  # too short to score: never machine-like
    _ingest(cat, tmp_path, "a", rows)
    cfg = _mgt_cfg(threshold=-1e9, action="downweight", weight=0.5, max_share=0.9)
    res = curate_next("news", cat, cfg, ["exact", "mgt"], teacher=teacher)
    rows = _rows(res.ref)
    # 30 kept, 29 machine-like: (29 - x) / (30 - x) <= 0.9 needs x = 20
    assert [r["reason"] for r in rows].count("mgt_share_cap") == 20
    kept = [r for r in rows if r["keep"]]
    assert len(kept) == 10 and sorted(r["sample_weight"] for r in kept) == [0.5] * 9 + [1.0]
    gate("curated", res.ref, cat, GATES)

    report = write_report(res.ref, cat.home)
    f = report["funnel"]
    assert f["rows"] == 30 and f["kept"] == 10 and f["dropped"] == {"mgt_share_cap": 20}
    assert f["downweighted"] == 9 and f["mgt_scored"] == 29
    assert Path(report["png"]).stat().st_size > 1000
    assert Path(report["png"]).parent == cat.home / "reports" / "curate" / "news" / "v=1"
    assert "| dropped: mgt_share_cap | 20 |" in Path(report["markdown"]).read_text()

    tok = tokenize("news", cat, teacher, TokensConfig(block_size=16), progress=False)
    (ref,) = tok.refs
    expected = [r["id"] for r in kept if included(r["content_sha256"], r["sample_weight"])]
    assert 1 < len(expected) < 10
    con = duckdb.connect()
    docs = {
        d
        for (ids,) in con.execute(
            "SELECT doc_ids FROM read_parquet(?)", [[str(p) for p in ref.files()]]
        ).fetchall()
        for d in ids
    }
    con.close()
    assert docs == set(expected)
    assert cat.versions("tokens", "news")[0].meta["downweighted_out"] == 10 - len(expected)


def test_included_is_deterministic_and_matches_the_weight() -> None:
    import hashlib

    from tasks.tokens.config import TokensConfig
    from tasks.tokens.tokenize import included, split_of

    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    assert all(included(h, None) and included(h, 1.0) for h in hashes[:10])
    assert not any(included(h, 0.0) for h in hashes)
    share = sum(included(h, 0.3) for h in hashes) / len(hashes)
    assert 0.27 < share < 0.33
    # independent of the train/validation split (other bits of the hash)
    cfg = TokensConfig(validation_share=0.3)
    val = [h for h in hashes if split_of(h, cfg) != "train"]
    assert 0.25 < sum(included(h, 0.3) for h in val) / len(val) < 0.35


def test_bad_input_gets_a_defined_score_or_null(tmp_path: Path, teacher) -> None:
    """The issue's bad inputs through `score`: nothing crashes, every value is defined or null."""
    import math

    from tasks.curate.score import score_file

    doc = "the police said the court in the city met the minister on the first day of the new year"
    rows = [
        {"id": "short", "text": "the news"},  # shorter than the scoring window
        {"id": "empty_summary", "text": doc, "summary": "  "},
        {"id": "empty_doc", "text": "", "summary": "the court met"},
        {"id": "long_summary", "text": "the court met", "summary": doc + " and " + doc},
        {
            "id": "french",
            "text": "Le ministre a rencontré la cour à Paris. " * 4,
            "summary": "La cour.",
        },
        {"id": "chinese", "text": "北京 的 法院 在 周一 开会 。" * 4, "summary": "法院 开会 。"},
    ]
    src = str(write_jsonl(tmp_path / "in.jsonl", rows))
    cfg = DedupConfig.model_validate(
        {
            "semantic": {"enabled": False},
            "quality": {"enabled": False},
            "factuality": {"method": "precision", "lm": True},
        }
    )
    res = score_file(
        src, str(tmp_path / "o.parquet"), cfg, ["exact", "mgt", "factuality"], teacher=teacher
    )
    d = {r["id"]: r for r in pq.read_table(res.output).to_pylist()}
    assert d["short"]["mgt_score"] is None and d["short"]["keep"]  # too short: no score, kept
    assert d["empty_summary"]["factuality_score"] is None
    assert d["empty_doc"]["factuality_score"] is None and d["empty_doc"]["reason"] == "empty_text"
    for rid in ("long_summary", "french", "chinese"):
        v = d[rid]["factuality_score"]
        assert v is not None and 0.0 <= v <= 1.0, rid
    for rid in ("empty_summary", "french", "chinese"):
        assert d[rid]["mgt_score"] is not None and math.isfinite(d[rid]["mgt_score"]), rid
