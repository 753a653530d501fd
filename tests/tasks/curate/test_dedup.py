"""The dedup filters on crafted data: known duplicates, controlled Jaccard, bad inputs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.curate.config import DedupConfig
from tasks.curate.dedup import dedup
from tasks.curate.lsh import clusters
from tasks.curate.minhash import SketchParams, band_keys, sketch, words_of
from tasks.curate.semantic import semdedup


def _doc(rng: random.Random, n: int = 200) -> str:
    return " ".join(f"tok{rng.randrange(100_000)}" for _ in range(n))


def _substitute(rng: random.Random, text: str, k: int) -> str:
    ws = text.split()
    for i in rng.sample(range(len(ws)), k):
        ws[i] = f"new{rng.randrange(10**9)}"
    return " ".join(ws)


def _jaccard(a: str, b: str, n: int = 5) -> float:
    def sh(t: str) -> set[tuple[str, ...]]:
        w = t.lower().split()
        return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}

    sa, sb = sh(a), sh(b)
    return len(sa & sb) / len(sa | sb)


def _work(tmp: Path, texts: list[str | None], ids: list[str] | None = None) -> str:
    path = tmp / "work.parquet"
    pq.write_table(
        pa.table(
            {
                "doc": pa.array(range(len(texts)), pa.int64()),
                "id": ids or [f"r{i}" for i in range(len(texts))],
                "text": pa.array(texts, pa.string()),
            }
        ),
        path,
    )
    return str(path)


def _run(tmp: Path, texts: list[str | None], filters=("exact", "near"), cfg=None) -> dict:
    out, stats = dedup(_work(tmp, texts), tmp / "lake", tmp, cfg or DedupConfig(), list(filters))
    t = pq.read_table(out).to_pydict()
    t["stats"] = stats
    return t


# --------------------------------------------------------------------------- hashing
def test_words_normalise_case_punctuation_and_cjk() -> None:
    raw = words_of(pa.array(["Hello, WORLD!  again", "你好世界", "", None])).to_pylist()
    got = [[w for w in ws or [] if w] for ws in raw]  # empty strings are not words
    assert got == [["hello", "world", "again"], ["你", "好", "世", "界"], [], []]


def test_shingle_sets_of_short_empty_repeated_and_truncated_docs() -> None:
    distinct30 = " ".join(f"w{i}" for i in range(30))
    texts = ["a b c d e f g", "one", "", "x " * 30, distinct30]
    s = sketch(texts, SketchParams(num_perm=8, max_shingles=10))
    # 7 words -> 3 five-grams; 1 word -> 1; none -> 0; one repeated 5-gram -> a set of 1;
    # 26 distinct 5-grams -> the first 10
    assert s.sizes.tolist() == [3, 1, 0, 1, 10]
    assert s.truncated.tolist() == [False, False, False, True, True]
    assert (s.sig[2] == 0xFFFFFFFF).all()  # no shingles: no signature


def test_sketches_are_batch_independent_and_order_sensitive() -> None:
    p = SketchParams(num_perm=16)
    one = sketch(["a b c d e f"], p)
    two = sketch(["x y", "a b c d e f"], p)
    rev = sketch(["f e d c b a"], p)
    assert np.array_equal(one.shingles, two.shingles[two.offsets[1] :])
    assert np.array_equal(one.sig[0], two.sig[1])
    assert not set(one.shingles.tolist()) & set(rev.shingles.tolist())
    # the structural collision of the version-1 hash (position-weighted sums) is gone
    perm = sketch(["1 2 2 1 1", "2 1 1 2 1"], p)
    assert perm.shingles[0] != perm.shingles[1]


def test_minhash_estimates_jaccard() -> None:
    rng = random.Random(0)
    base = _doc(rng, 400)
    variants = [_substitute(rng, base, k) for k in (3, 10, 25, 60)]
    s = sketch([base, *variants], SketchParams(num_perm=128, seed=1))
    assert s.sig.shape == (5, 128) and s.sig.dtype == np.uint32
    for i, v in enumerate(variants, 1):
        est = float((s.sig[0] == s.sig[i]).mean())
        assert abs(est - _jaccard(base, v)) < 0.12, (est, _jaccard(base, v))
    bk = band_keys(s.sig, 21, 6)
    assert bk.shape == (5, 21)
    assert (bk[0] == band_keys(s.sig[:1], 21, 6)[0]).all()


def test_clusters_are_connected_components() -> None:
    a = np.array([5, 1, 7, 9], np.int64)
    b = np.array([6, 5, 8, 8], np.int64)
    got = clusters(10, a, b).tolist()
    assert got == [0, 1, 2, 3, 4, 1, 1, 7, 7, 7]
    assert clusters(3, np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- filters
def test_exact_first_occurrence_kept_with_configurable_normalisation(tmp_path: Path) -> None:
    texts = ["Hello  World", "hello world", "Hello World!", "other text here"]
    t = _run(tmp_path, texts, filters=("exact",))
    assert t["keep"] == [True, False, True, True]
    assert t["exact_dup_of"] == [None, "r0", None, None]
    assert t["reason"][1] == "exact_dup"
    assert t["near_dup_cluster"] == [None] * 4  # near not asked for

    cfg = DedupConfig.model_validate({"exact": {"strip_punctuation": True}})
    (tmp_path / "b").mkdir()
    t = _run(tmp_path / "b", texts, filters=("exact",), cfg=cfg)
    assert t["exact_dup_of"] == [None, "r0", "r0", None]

    cfg = DedupConfig.model_validate({"exact": {"lowercase": False}})
    (tmp_path / "c").mkdir()
    t = _run(tmp_path / "c", texts, filters=("exact",), cfg=cfg)
    assert t["exact_dup_of"] == [None, None, None, None]


def test_near_duplicates_at_controlled_jaccard(tmp_path: Path) -> None:
    rng = random.Random(7)
    bases = [_doc(rng, 300) for _ in range(40)]
    # Pairs (base i, variant) at decreasing Jaccard: 1-3 substitutions >= 0.9, 60+ < 0.5.
    subs = {0: 2, 1: 5, 2: 8, 3: 60, 4: 90, 5: 150}
    variants = {i: _substitute(rng, bases[i], k) for i, k in subs.items()}
    texts = bases + list(variants.values())
    t = _run(tmp_path, texts)
    cluster = t["near_dup_cluster"]
    for j, (i, _k) in enumerate(variants.items()):
        v = len(bases) + j
        jac = _jaccard(bases[i], texts[v])
        if jac >= 0.8:
            assert cluster[v] == cluster[i] == i, (i, jac)
            assert t["reason"][v] == "near_dup" and t["keep"][i]
        elif jac < 0.5:
            assert cluster[v] == v and t["keep"][v], (i, jac)
    # unrelated documents stay alone, each with its own cluster value
    assert cluster[10:40] == list(range(10, 40))
    assert t["stats"].verified_pairs <= t["stats"].candidate_pairs


def test_near_keep_longest(tmp_path: Path) -> None:
    rng = random.Random(11)
    base = _doc(rng, 300)
    longer = base + " " + " ".join(["tail"] * 3)
    cfg = DedupConfig.model_validate({"near": {"keep": "longest"}})
    t = _run(tmp_path, [base, longer], cfg=cfg)
    assert t["keep"] == [False, True]
    assert t["near_dup_cluster"] == [0, 0]


def test_chains_are_cut_by_verification(tmp_path: Path) -> None:
    """A document halfway between two others must not glue them into one cluster unless
    each edge is itself close: A ~ B and B ~ C at J ~ 0.55 are rejected by the 0.8 check."""
    rng = random.Random(5)
    a = _doc(rng, 400)
    b = _substitute(rng, a, 45)
    c = _substitute(rng, b, 45)
    assert _jaccard(a, b) < 0.7 and _jaccard(b, c) < 0.7
    t = _run(tmp_path, [a, b, c])
    assert t["near_dup_cluster"] == [0, 1, 2]


def test_bad_inputs_have_clear_outcomes(tmp_path: Path) -> None:
    long_doc = " ".join(f"w{i}" for i in range(3_000))
    texts = [
        "",
        "   ",
        None,
        "word",
        "word",
        "你好世界今天天气很好我们去公园",
        long_doc,
        "Ελληνικά κείμενα εδώ μαζί",
    ]
    cfg = DedupConfig.model_validate({"near": {"max_shingles": 100}})
    t = _run(tmp_path, texts, cfg=cfg)
    assert t["reason"][:3] == ["empty_text"] * 3 and t["keep"][:3] == [False] * 3
    assert t["keep"][3] and t["exact_dup_of"][4] == "r3"
    assert t["keep"][5:] == [True, True, True]
    assert t["stats"].truncated_docs == 1
    assert t["near_dup_cluster"] == [0, 1, 2, 3, 3, 5, 6, 7]


def test_corpus_of_identical_rows(tmp_path: Path) -> None:
    texts = ["the same row, again and again and again"] * 500
    t = _run(tmp_path, texts)
    assert sum(t["keep"]) == 1 and t["keep"][0]
    assert set(t["exact_dup_of"][1:]) == {"r0"}
    assert set(t["near_dup_cluster"]) == {0}
    # near alone (no exact filter) still collapses them, in O(n) pairs (bucket window)
    (tmp_path / "n").mkdir()
    t = _run(tmp_path / "n", texts, filters=("near",))
    assert sum(t["keep"]) == 1 and set(t["near_dup_cluster"]) == {0}
    assert t["stats"].candidate_pairs <= 500 * 32


def test_empty_input(tmp_path: Path) -> None:
    t = _run(tmp_path, [])
    assert t["doc"] == [] and t["stats"].rows == 0


def test_semdedup_on_crafted_embeddings() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    near = base[1] + 0.01 * rng.normal(size=16).astype(np.float32)
    near /= np.linalg.norm(near)
    emb = np.vstack([base, near[None, :]])
    docs = np.arange(7, dtype=np.int64)
    dup, of, sim = semdedup(docs, emb, new_from=0, eps=0.05, k=2, iters=10, seed=0)
    assert dup.tolist() == [6] and of.tolist() == [1] and sim[0] > 0.95
    # rows before new_from (earlier snapshots) are never marked
    dup, _, _ = semdedup(docs, emb, new_from=7, eps=0.05, k=2, iters=10, seed=0)
    assert dup.size == 0


def test_semantic_filter_with_tiny_model(tmp_path: Path, tiny_st_model: str) -> None:
    texts = [
        "the police said the court will report on the news",
        "the cat and the dog",
        "the police said the court will report on the news",
        "",
    ]
    cfg = DedupConfig.model_validate(
        {"semantic": {"model": tiny_st_model, "eps": 1e-4, "n_clusters": 1}}
    )
    t = _run(tmp_path, texts, filters=("semantic",), cfg=cfg)
    assert t["semantic_dup_of"][2] == "r0" and t["reason"][2] == "semantic_dup"
    assert t["keep"][0] and t["reason"][3] == "empty_text"
    assert t["stats"].embedded == 3
    emb = pq.read_table(next((tmp_path / "lake" / "_embeddings").glob("emb-*.parquet")))
    assert emb.num_rows == 3


def test_unknown_filter_is_refused(tmp_path: Path) -> None:
    from tasks.curate.config import DedupError

    with pytest.raises(DedupError):
        _run(tmp_path, ["x"], filters=("fuzzy",))
