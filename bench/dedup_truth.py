"""Exact ground truth for the near-duplicate benchmark: EVERY pair of documents whose word
5-gram Jaccard is >= 0.5, by an exact all-pairs similarity join (prefix filtering: shingles
ordered by global frequency, rarest first; two sets with J >= t must share a token among the
first |x| - ceil(t|x|) + 1 of each; candidates are verified by exact set intersection).
Nothing is sampled. The shingles are the engine's (`tasks.curate.minhash.sketch`: sorted
distinct 64-bit hashes; collisions ~1e-10 per pair); `check_truth` re-derives a sample of pairs
with Python string shingles as an independent check.

    python -m bench.dedup_truth DIR/corpus.jsonl           # writes DIR/truth.npz
    python -m bench.dedup_truth DIR/corpus.jsonl --check   # string-shingle spot check
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa

from tasks.curate.minhash import SketchParams, sketch, words_of

NGRAM = 5
TRUTH_MIN_J = 0.5


@numba.njit(nogil=True, cache=True)
def allpairs(ranks, sh, off, t):
    """Every pair (a < b) with Jaccard >= t (AllPairs with prefix filtering).

    ranks: each document's shingles as global ranks (rarest first), sorted ascending per
    document; sh: the same documents' shingle hashes sorted ascending (for the exact
    intersection); off: document offsets into both. Two sets with J >= t share a token
    among the first |x| - ceil(t|x|) + 1 of each (ranked) set, so an inverted index of
    prefixes finds every such pair; `seen` stamps keep each candidate once per document.
    """
    n = off.size - 1
    plen = np.zeros(n, np.int64)
    for d in range(n):
        s = off[d + 1] - off[d]
        if s > 0:
            plen[d] = min(s, s - int(math.ceil(t * s - 1e-9)) + 1)  # noqa: RUF046 (numba)
    total = plen.sum()
    toks = np.empty(total, np.int64)
    docs = np.empty(total, np.int64)
    k = 0
    for d in range(n):
        for j in range(plen[d]):
            toks[k] = ranks[off[d] + j]
            docs[k] = d
            k += 1
    o = np.argsort(toks, kind="mergesort")  # stable: docs ascending inside a token
    toks = toks[o]
    docs = docs[o]
    # CSR of token -> docs; and for each prefix entry, its group's start
    group_start = np.empty(total, np.int64)
    i = 0
    while i < total:
        j = i
        while j < total and toks[j] == toks[i]:
            j += 1
        for q in range(i, j):
            group_start[q] = i
        i = j
    # position of each (doc, prefix slot) entry in the sorted order
    where = np.empty(total, np.int64)
    where[o] = np.arange(total)
    entry0 = np.zeros(n + 1, np.int64)
    for d in range(n):
        entry0[d + 1] = entry0[d] + plen[d]
    seen = np.full(n, -1, np.int64)
    out_a = []
    out_b = []
    out_j = []
    for x in range(n):
        nx = off[x + 1] - off[x]
        for e in range(entry0[x], entry0[x + 1]):
            w = where[e]
            for q in range(group_start[w], w):  # earlier docs with this prefix token
                y = docs[q]
                if seen[y] == x or y == x:
                    continue
                seen[y] = x
                ny = off[y + 1] - off[y]
                if min(nx, ny) < t * max(nx, ny) - 1e-9:  # length filter
                    continue
                a0, a1, b0, b1 = off[y], off[y + 1], off[x], off[x + 1]
                inter = 0
                while a0 < a1 and b0 < b1:
                    if sh[a0] == sh[b0]:
                        inter += 1
                        a0 += 1
                        b0 += 1
                    elif sh[a0] < sh[b0]:
                        a0 += 1
                    else:
                        b0 += 1
                jj = inter / (nx + ny - inter)
                if jj >= t - 1e-12:
                    out_a.append(y)
                    out_b.append(x)
                    out_j.append(jj)
    return np.array(out_a, np.int64), np.array(out_b, np.int64), np.array(out_j, np.float64)


def all_shingles(texts_iter, batch: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Engine shingle sets of every document: (flat sorted-per-doc hashes, offsets)."""
    params = SketchParams(ngram=NGRAM, num_perm=1)
    parts, sizes = [], []
    buf: list[str] = []

    def flush():
        s = sketch(pa.array(buf, pa.string()), params)
        parts.append(s.shingles)
        sizes.append(np.diff(s.offsets))
        buf.clear()

    for t in texts_iter:
        buf.append(t)
        if len(buf) >= batch:
            flush()
    if buf:
        flush()
    sh = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    sz = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    return sh, np.r_[0, np.cumsum(sz)].astype(np.int64)


def exact_pairs(
    sh: np.ndarray, off: np.ndarray, t: float = TRUTH_MIN_J
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (a < b) with Jaccard >= t, exactly (prefix filtering + verification)."""
    # global order: rarest shingles first (ties by hash)
    uniq, inv, counts = np.unique(sh, return_inverse=True, return_counts=True)
    rank_of_uniq = np.empty(uniq.size, np.int64)
    rank_of_uniq[np.lexsort((uniq, counts))] = np.arange(uniq.size)
    del uniq, counts
    ranks = rank_of_uniq[inv]
    del inv, rank_of_uniq
    doc_of = np.repeat(np.arange(off.size - 1), np.diff(off))
    ranks = ranks[np.lexsort((ranks, doc_of))]  # per doc, rarest first
    del doc_of
    return allpairs(ranks, sh, off, t)


def compute_truth(corpus: Path, out: Path) -> dict:
    t0 = time.time()

    def texts():
        with corpus.open() as f:
            for line in f:
                yield json.loads(line)["text"]

    sh, off = all_shingles(texts())
    t1 = time.time()
    a, b, j = exact_pairs(sh, off)
    np.savez_compressed(out, a=a, b=b, j=j, n=np.int64(off.size - 1))
    info = {
        "docs": int(off.size - 1),
        "shingles": int(sh.size),
        "pairs_j_ge_0.5": int(a.size),
        "pairs_j_ge_0.8": int((j >= 0.8).sum()),
        "seconds_shingles": round(t1 - t0, 1),
        "seconds_join": round(time.time() - t1, 1),
    }
    return info


def _shingle_strings(text: str) -> set[tuple[str, ...]]:
    ws = [w for w in words_of(pa.array([text], pa.string())).to_pylist()[0] if w]
    if len(ws) < NGRAM:
        return {tuple(ws)} if ws else set()
    return {tuple(ws[i : i + NGRAM]) for i in range(len(ws) - NGRAM + 1)}


def check_truth(corpus: Path, truth: Path, sample: int = 2000, seed: int = 0) -> dict:
    """Python-string shingles on a sample of truth pairs: the largest |J_engine - J_strings|."""
    texts = [json.loads(line)["text"] for line in corpus.open()]
    z = np.load(truth)
    rng = np.random.default_rng(seed)
    idx = rng.choice(z["a"].size, min(sample, z["a"].size), replace=False)
    worst = 0.0
    for i in idx:
        x, y = _shingle_strings(texts[int(z["a"][i])]), _shingle_strings(texts[int(z["b"][i])])
        jp = len(x & y) / len(x | y) if x or y else 1.0
        worst = max(worst, abs(jp - float(z["j"][i])))
    return {"checked_pairs": int(idx.size), "max_abs_diff": worst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    truth = args.corpus.with_name("truth.npz")
    info = check_truth(args.corpus, truth) if args.check else compute_truth(args.corpus, truth)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
