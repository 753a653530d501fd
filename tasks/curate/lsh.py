"""A threshold that means what it says: with `dedup.near.threshold` t, two rows are
near-duplicates iff the Jaccard of their shingle sets is >= t. LSH only proposes candidates.

- The band layout comes from the S-curve (`tasks.curate.scurve.choose_bands`): recall >= 0.99
  at J = t by default.
- `candidate_pairs`: per band, the band keys of all documents are sorted (one band column in
  memory at a time, read from the memory-mapped key matrix); equal keys form a bucket and each
  member is paired with the next `window` members of its bucket (all pairs for small buckets,
  O(n × window) for huge ones). Two threads work on different bands.
- `jaccard_exact`: the exact Jaccard of each candidate from the two sorted shingle sets
  (merge intersection); pairs below t are dropped. `jaccard_estimate` (share of equal
  signature values) is the `verify: estimate` option: sd sqrt(J(1-J)/num_perm), 0.035 at
  J = 0.8 with 128 permutations, so pairs near t are misjudged either way.
- `clusters`: connected components of the verified edges (union-find); a cluster's id is its
  smallest document index. `near_decisions`: one kept row per cluster — a cluster holding an
  earlier snapshot's row keeps that row and drops every new member.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tasks.curate import jit


def _band_candidates(
    col: np.ndarray, valid: np.ndarray | None, window: int, new_from: int
) -> np.ndarray:
    kernels = jit.kernels()

    keys = np.ascontiguousarray(col)
    docs = np.arange(keys.size, dtype=np.int64)
    if valid is not None:
        keys, docs = keys[valid], docs[valid]
    order = np.argsort(keys, kind="stable")  # stable: documents ascending inside a bucket
    return np.unique(kernels.bucket_pairs(keys[order], docs[order], window, new_from))


def candidate_pairs(
    band_keys: np.ndarray,
    valid: np.ndarray | None = None,
    window: int = 32,
    new_from: int = 0,
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) int64 with a < b: documents (row indices of `band_keys` [n, bands], possibly a
    memmap) that share a band key. `valid`: the documents that take part; pairs of two
    documents below `new_from` (earlier snapshots) are skipped."""
    n, bands = band_keys.shape
    if n >= 1 << 32:
        raise ValueError("more than 2^32 documents in one LSH run")

    def one(j: int) -> np.ndarray:
        return _band_candidates(band_keys[:, j], valid, window, new_from)

    if workers > 1 and bands > 1:
        with ThreadPoolExecutor(workers) as ex:
            parts = list(ex.map(one, range(bands)))
    else:
        parts = [one(j) for j in range(bands)]
    pairs = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
    return (pairs >> np.uint64(32)).astype(np.int64), (pairs & np.uint64(0xFFFFFFFF)).astype(
        np.int64
    )


def _chunked(kernel: Any, args: tuple, m: int, workers: int) -> np.ndarray:
    out = np.empty(m, np.float64)
    if m == 0:
        return out
    step = max(1, math.ceil(m / (workers * 4)))
    spans = [(s, min(m, s + step)) for s in range(0, m, step)]
    if workers > 1 and len(spans) > 1:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda sp: kernel(*args, sp[0], sp[1], out), spans))
    else:
        for s, e in spans:
            kernel(*args, s, e, out)
    return out


def jaccard_exact(
    shingles: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray, workers: int = 2
) -> np.ndarray:
    """Exact Jaccard of each pair from sorted distinct shingle hashes (offsets [n + 1])."""
    kernels = jit.kernels()

    return _chunked(kernels.jaccard_pairs, (shingles, offsets, a, b), a.size, workers)


def jaccard_estimate(sig: np.ndarray, a: np.ndarray, b: np.ndarray, workers: int = 2) -> np.ndarray:
    """MinHash estimate of each pair's Jaccard: the share of equal signature values."""
    kernels = jit.kernels()

    return _chunked(kernels.estimate_pairs, (sig, a, b), a.size, workers)


def clusters(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cluster of every document 0..n-1: the smallest document of its connected component of
    edges (a, b); a document without edges is its own cluster."""
    kernels = jit.kernels()

    if a.size == 0:
        return np.arange(n, dtype=np.int64)
    return kernels.union_find(n, a.astype(np.int64), b.astype(np.int64))


def near_decisions(
    cluster: np.ndarray, new_from: int = 0, keep: str = "first", length: np.ndarray | None = None
) -> np.ndarray:
    """The near-duplicate flag of every document given its cluster. Documents below
    `new_from` are earlier snapshots' rows: a cluster holding one drops all its new members
    (the old row stays); otherwise its first new member (or the longest, `keep="longest"`,
    ties to the first) is kept."""
    n = cluster.size
    idx = np.arange(n, dtype=np.int64)
    size = np.bincount(cluster, minlength=n)
    in_multi = size[cluster] > 1
    has_old = np.zeros(n, bool)
    has_old[cluster[(idx < new_from) & in_multi]] = True
    if keep == "longest" and length is not None:
        order = np.lexsort((idx, -np.asarray(length, np.int64), cluster))
        first = np.ones(n, bool)
        first[1:] = cluster[order][1:] != cluster[order][:-1]
        rep = np.full(n, -1, np.int64)
        rep[cluster[order][first]] = order[first]
    else:
        rep = cluster  # the smallest member
    return in_multi & (idx >= new_from) & (has_old[cluster] | (rep[cluster] != idx))
