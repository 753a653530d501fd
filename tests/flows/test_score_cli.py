"""`llm4all score` through typer's CliRunner: the output contract (one row per input row, in order)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import write_jsonl

CONTRACT = [
    "id",
    "keep",
    "reason",
    "exact_dup_of",
    "near_dup_cluster",
    "semantic_dup_of",
    "quality_reason",
    "mgt_score",
    "factuality_score",
]


def _doc(rng: random.Random, n: int = 120) -> str:
    return " ".join(f"tok{rng.randrange(100_000)}" for _ in range(n))


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _score(src: Path, out: Path, filters: str, *sets: str):
    """`llm4all score SRC -o OUT --filters FILTERS` with a `--set` for each of `sets`."""
    return _invoke("score", str(src), "-o", str(out), "--filters", filters,
                   *(arg for kv in sets for arg in ("--set", kv)))  # fmt: skip


def test_score_jsonl_contract(tmp_path: Path) -> None:
    rng = random.Random(0)
    docs = [_doc(rng) for _ in range(5)]
    near = docs[1].split()
    near[10] = "changed"
    rows = [
        {"id": "d0", "text": docs[0]},
        {"id": "d1", "text": docs[1]},
        {"id": "d2", "text": docs[0].upper()},
        {"id": "d3", "text": " ".join(near)},
        {"id": "d4", "text": ""},
        {"id": "d5", "text": docs[2], "summary": "a summary"},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with src.open("a") as f:
        f.write("{not json\n")
    out = tmp_path / "out.parquet"
    res = _invoke("score", str(src), "--output", str(out), "--filters", "exact,near", "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["ok"] and payload["rows"] == 7 and payload["invalid_rows"] == 1
    t = pq.read_table(out)
    assert t.column_names == CONTRACT
    assert t.schema.field("near_dup_cluster").type == pa.int64()
    assert t.schema.field("keep").type == pa.bool_()
    d = t.to_pydict()
    assert d["id"] == ["d0", "d1", "d2", "d3", "d4", "d5", "6"]  # same order; missing id: row
    assert d["keep"] == [True, True, False, False, False, True, False]
    assert d["reason"][:5] == [None, None, "exact_dup", "near_dup", "empty_text"]
    assert d["reason"][6].startswith("invalid_row: malformed JSON")
    assert d["exact_dup_of"][2] == "d0"
    assert d["near_dup_cluster"][3] == d["near_dup_cluster"][1]
    assert d["near_dup_cluster"] == [0, 1, 0, 1, 4, 5, 6]  # unique rows: their own value
    for col in ("semantic_dup_of", "quality_reason", "mgt_score", "factuality_score"):
        assert d[col] == [None] * 7  # not asked for -> null


def test_score_parquet_and_csv_inputs_without_ids(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a b c", "A  b c", "zzz"]}), tmp_path / "in.parquet")
    (tmp_path / "in.csv").write_text("text\na b c\nA  b c\nzzz\n")
    for name in ("in.parquet", "in.csv"):
        out = tmp_path / f"{name}.out.parquet"
        res = _invoke("score", str(tmp_path / name), "-o", str(out), "--filters", "exact")
        assert res.exit_code == 0, res.output
        d = pq.read_table(out).to_pydict()
        assert d["id"] == ["0", "1", "2"]
        assert d["exact_dup_of"] == [None, "0", None]
        assert d["near_dup_cluster"] == [None] * 3


def test_score_semantic_with_tiny_model(tmp_path: Path, tiny_st_model: str) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"text": "the cat and the dog"}, {"text": "The cat and the dog"}, {"text": "river"}],
    )
    out = tmp_path / "out.parquet"
    res = _score(
        src, out, "semantic", f"dedup.semantic.model={tiny_st_model}", "dedup.semantic.eps=0.0001"
    )
    assert res.exit_code == 0, res.output
    d = pq.read_table(out).to_pydict()
    assert d["semantic_dup_of"][1] == "0"  # the tokenizer lowercases: identical embedding
    assert d["exact_dup_of"] == [None] * 3


def test_score_errors_follow_exit_codes(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    out = str(tmp_path / "o.parquet")
    assert _invoke("score", str(src), "-o", out, "--filters", "bogus").exit_code == 2
    res = _invoke("score", str(tmp_path / "missing.jsonl"), "-o", out, "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["ok"] is False
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = _invoke("score", str(empty), "-o", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"] == 0
    assert pq.read_table(out).num_rows == 0


def test_score_fills_quality_reason(tmp_path: Path) -> None:
    from tests.tasks.curate.test_quality import CLEAN

    src = write_jsonl(tmp_path / "in.jsonl", [{"text": CLEAN}, {"text": "Too short."}])
    out = tmp_path / "o.parquet"
    res = _invoke("score", str(src), "-o", str(out), "--filters", "exact,quality", "--json")
    assert res.exit_code == 0, res.output
    d = pq.read_table(out).to_pydict()
    assert d["keep"] == [True, False] and d["reason"] == [None, "quality"]
    assert d["quality_reason"][0] is None
    assert d["quality_reason"][1].startswith("gopher_short_document")


def test_score_fills_factuality_and_mgt_scores(tmp_path: Path) -> None:
    import math

    from tests.helpers import news_docs
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "teacher")
    doc = "The president said the minister met the court in the city on Tuesday with 12 people."
    rows = [
        {"text": doc, "summary": "The president met the court with 12 people."},
        {"text": doc, "summary": "The Senate met 40 people in Paris."},  # unsupported names
        {"text": news_docs(1)[0]["text"]},  # no summary: no factuality score
    ]
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "o.parquet"
    args = ["score", str(src), "-o", str(out), "--filters", "exact,mgt,factuality"]
    # min_tokens=2: these short texts all get a score (the default leaves texts under 16
    # tokens unscored; tests/tasks/curate/test_curate.py checks that). The `precision` method
    # (entity/number precision, + the LM lift): exact values to check.
    precision = "dedup.factuality.method=precision"
    res = _invoke(
        *args, "--set", f"teacher.path={teacher}", "--set", "dedup.mgt.min_tokens=2",
        "--set", precision, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    with_lm = tmp_path / "lm.parquet"
    res = _score(
        src, with_lm, "factuality", f"teacher.path={teacher}", "dedup.factuality.lm=true", precision
    )
    assert res.exit_code == 0, res.output
    lm_scores = pq.read_table(with_lm).column("factuality_score").to_pylist()
    assert all(0.0 <= v <= 1.0 for v in lm_scores[:2]) and lm_scores[2] is None
    assert res.exit_code == 0, res.output
    d = pq.read_table(out).to_pydict()
    assert d["factuality_score"][0] == 1.0 and d["factuality_score"][1] == 0.0
    assert d["factuality_score"][2] is None
    assert all(isinstance(v, float) and not math.isnan(v) for v in d["mgt_score"])
    # No thresholds: scores only. Row 1 repeats row 0's text (exact dedup hashes the text).
    assert d["keep"] == [True, False, True] and d["reason"][1] == "exact_dup"


def test_score_thresholds_turn_scores_into_decisions(tmp_path: Path) -> None:
    doc = "The president said the minister met the court in the city on Tuesday with 12 people."
    rows = [
        {"text": doc, "summary": "The president met the court with 12 people."},
        {"text": doc + " Again.", "summary": "The Senate met 40 people in Paris."},
    ]
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "o.parquet"
    precision = "dedup.factuality.method=precision"  # scores 1.0 and 0.0: a clear threshold
    res = _score(src, out, "exact,factuality", "dedup.factuality.threshold=0.5", precision)
    assert res.exit_code == 0, res.output
    d = pq.read_table(out).to_pydict()
    assert d["keep"] == [True, False] and d["reason"] == [None, "unfaithful"]


def test_score_factuality_default_states_the_fallback(tmp_path: Path) -> None:
    """No factuality model registered: the shipped fallback scores every pair with a summary,
    the output says so, and a supported summary outscores one with invented names."""
    doc = "The president said the minister met the court in the city on Tuesday with 12 people."
    rows = [
        {"text": doc, "summary": "The president met the court with 12 people on Tuesday."},
        {"text": doc, "summary": "Senator Maria Lopez met 40 bankers in Paris on Friday."},
        {"text": doc + " More.", "summary": ""},  # no summary: null, as the contract says
    ]
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "o.parquet"
    res = _invoke("score", str(src), "-o", str(out), "--filters", "factuality", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)["factuality"]
    assert info["scorer"].startswith("no factuality model registered: the model-free fallback")
    scores = pq.read_table(out).column("factuality_score").to_pylist()
    assert scores[2] is None and all(0.0 < v < 1.0 for v in scores[:2])
    assert scores[0] > scores[1]
    human = _invoke("score", str(src), "-o", str(out), "--filters", "factuality")
    assert human.exit_code == 0 and "factuality: no factuality model registered" in human.stdout
