"""Native (numba) kernels of near-duplicate detection. Get them through
`tasks.curate.jit.kernels()`: importing numba costs ~0.4 s and the first call of a cached
kernel ~0.7 s more (`warm_up` on a thread hides part of it behind other start-up work), so
tiny inputs run this same source interpreted (`jit.interpreted`: the module loaded a second
time with `_INTERPRETED` set, no numba), with identical results.

Every kernel is `nogil` (threads run them in parallel) and `cache=True`: compiled once per
install (~10-15 s of CPU on the first run), later processes load the machine code from
numba's cache — `__pycache__/` beside this file in a source checkout, else numba's user cache
(set `NUMBA_CACHE_DIR` to a writable folder when neither is writable).

- `sketch_utf8`: one pass over each document's UTF-8 bytes: exact-dedup key, words, the
  sorted distinct shingle set, MinHash (see its docstring).
- `hash_bytes`: a 128-bit key of each string's bytes (exact dedup under a non-default
  normalisation, done by pyarrow before).
- `band_keys`, `bucket_pairs`: LSH band keys and the candidate pairs of sorted keys.
- `jaccard_pairs` (exact, merge intersection of sorted sets), `estimate_pairs` (share of
  equal signature values), `union_find` (connected components).
"""

from __future__ import annotations

import sys

import numpy as np

_INTERPRETED = globals().get("_INTERPRETED", False)  # set by jit.interpreted_kernels()


def _numba_without_scipy() -> None:
    """Load numba's array implementations without scipy.linalg (~0.3 s of a 1 s start-up).

    `numba.np.arraymath` probes for BLAS at import by importing `scipy.linalg.cython_blas`; no
    kernel here uses BLAS. The probe is answered "absent" for the length of that import only
    (numba then computes np.cov/np.corrcoef inner products in its own loop); numba functions
    that do use BLAS still import scipy when they are compiled.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get("scipy.linalg.cython_blas", 0) is None:
            del sys.modules["scipy.linalg.cython_blas"]


if _INTERPRETED:

    def _njit(f):
        return f

else:
    import numba

    _numba_without_scipy()
    _njit = numba.njit(nogil=True, cache=True)

# Shingle hash = fmix64(polynomial of the word hashes in this odd constant). Not a weighted
# sum with fixed position weights (version 1): weights G*(2j+1) made n-grams that permute
# equal words with equal weight sums collide, e.g. "1 2 2 1 1" and "2 1 1 2 1".
POLY = np.uint64(0x9E3779B97F4A7C15)
_BASIS = np.uint64(0xCBF29CE484222325)  # FNV-1a 64
_BASIS2 = np.uint64(0x84222325CBF29CE4)
_PRIME = np.uint64(0x100000001B3)


@_njit
def fmix64(h):
    """MurmurHash3's 64-bit finaliser."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@_njit
def _decode(data, p, e):
    """(code point, next position) of the UTF-8 sequence at p (invalid byte -> U+FFFD)."""
    c = np.int64(data[p])
    if c < 0x80:
        return c, p + 1
    if c >= 0xF0 and p + 3 < e:
        return ((c & 0x07) << 18) | ((np.int64(data[p + 1]) & 0x3F) << 12) | (
            (np.int64(data[p + 2]) & 0x3F) << 6
        ) | (np.int64(data[p + 3]) & 0x3F), p + 4
    if c >= 0xE0 and p + 2 < e:
        return ((c & 0x0F) << 12) | ((np.int64(data[p + 1]) & 0x3F) << 6) | (
            np.int64(data[p + 2]) & 0x3F
        ), p + 3
    if c >= 0xC0 and p + 1 < e:
        return ((c & 0x1F) << 6) | (np.int64(data[p + 1]) & 0x3F), p + 2
    return np.int64(0xFFFD), p + 1


@_njit
def needs_nfc(data, toff, cls):
    """Documents containing a code point that NFC may change (ASCII is skipped fast)."""
    n = toff.size - 1
    out = np.zeros(n, np.bool_)
    for d in range(n):
        p, e = toff[d], toff[d + 1]
        while p < e:
            if data[p] < 0x80:
                p += 1
                continue
            cp, p = _decode(data, p, e)
            if cp < 0x110000 and (cls[cp] & 4):
                out[d] = True
                break
    return out


@_njit
def sketch_utf8(
    data, toff, valid, cls, low, ngram, max_shingles, a32, b32, sh_out, sig_out, exact_out
):
    """One pass per document over its UTF-8 bytes. Returns (offsets [n + 1], truncated [n],
    chars [n]); fills `sh_out` (the sorted distinct shingle hashes of the documents, one after
    another), `sig_out` [n, num_perm] and `exact_out` [n, 2].

    exact key: two 64-bit FNV-1a hashes of the lowercased text with runs of ASCII whitespace
    collapsed to one space, leading and trailing whitespace dropped (the default exact-dedup
    rule); (0, 0) for a text without a non-whitespace character (empty).
    words: maximal runs of word characters, lowercased; a SINGLE character is a word by
    itself; word hash = fmix64(FNV-1a over its code points).
    shingles: word n-grams, hash = fmix64(polynomial of the word hashes); a document with
    fewer than n words is one shingle, an empty one has none; only the first `max_shingles`.
    MinHash: sig_i = min over the set of (a_i * x + b_i) mod 2^32, x = the top 32 bits of the
    shingle hash, a_i odd (a permutation of the 32-bit values; 8 lanes per AVX2 instruction);
    all 0xFFFFFFFF for a document without shingles.
    """
    n_docs = toff.size - 1
    n_perm = a32.size
    offsets = np.zeros(n_docs + 1, np.int64)
    truncated = np.zeros(n_docs, np.bool_)
    chars = np.zeros(n_docs, np.int64)
    maxlen = 1
    for d in range(n_docs):
        maxlen = max(maxlen, toff[d + 1] - toff[d] + 1)
    wh = np.empty(maxlen, np.uint64)
    mins = np.empty(n_perm, np.uint32)
    pos = 0
    for d in range(n_docs):
        p, e = toff[d], toff[d + 1]
        if not valid[d]:  # null: an empty document
            e = p
        nw = 0
        in_word = False
        h = _BASIS
        wl = 0
        k1, k2 = _BASIS, _BASIS2
        started = False
        pending_ws = False
        nch = 0
        while p < e:
            b0 = data[p]
            if b0 < 0x80:
                cp = np.int64(b0)
                p += 1
            else:
                cp, p = _decode(data, p, e)
                if cp >= 0x110000:
                    cp = np.int64(0xFFFD)
            nch += 1
            lc = np.uint64(low[cp])
            # ---- exact key
            if cp == 32 or cp == 9 or cp == 10 or cp == 12 or cp == 13:
                pending_ws = started
            else:
                if pending_ws:
                    k1 = (k1 ^ np.uint64(32)) * _PRIME
                    k2 = (k2 ^ np.uint64(32)) * _PRIME
                    pending_ws = False
                k1 = (k1 ^ lc) * _PRIME
                k2 = (k2 ^ (lc + np.uint64(0x9E37))) * _PRIME
                started = True
            # ---- words
            c = cls[cp] & 3
            if c == 1:
                if not in_word:
                    in_word = True
                    h = _BASIS
                    wl = 0
                h = (h ^ lc) * _PRIME
                wl += 1
            else:
                if in_word:
                    wh[nw] = fmix64(h ^ np.uint64(wl))
                    nw += 1
                    in_word = False
                if c == 2:
                    wh[nw] = fmix64(((_BASIS ^ lc) * _PRIME) ^ np.uint64(1))
                    nw += 1
        if in_word:
            wh[nw] = fmix64(h ^ np.uint64(wl))
            nw += 1
        chars[d] = nch
        if started:
            exact_out[d, 0] = fmix64(k1)
            exact_out[d, 1] = fmix64(k2)
        else:
            exact_out[d, 0] = 0
            exact_out[d, 1] = 0
        # ---- shingle hashes
        if nw >= ngram:
            ns = nw - ngram + 1
            width = ngram
        else:
            ns = 1 if nw > 0 else 0
            width = nw
        if ns > max_shingles:
            ns = max_shingles
            truncated[d] = True
        start = pos
        for s in range(ns):
            acc = np.uint64(0)
            for j in range(width):  # polynomial in the words: order matters (see POLY)
                acc = acc * POLY + wh[s + j]
            sh_out[pos] = fmix64(acc)
            pos += 1
        # ---- the set: sort, deduplicate in place (pos moves back to the set's end)
        if ns > 1:
            seg = sh_out[start:pos]
            seg.sort()
            u = 1
            for k in range(1, ns):
                if seg[k] != seg[u - 1]:
                    seg[u] = seg[k]
                    u += 1
            pos = start + u
        offsets[d + 1] = pos
        # ---- MinHash (32-bit lanes)
        for i in range(n_perm):
            mins[i] = np.uint32(0xFFFFFFFF)
        for k in range(start, pos):
            x = np.uint32(sh_out[k] >> np.uint64(32))
            for i in range(n_perm):
                mins[i] = min(mins[i], np.uint32(a32[i] * x + b32[i]))
        for i in range(n_perm):
            sig_out[d, i] = mins[i]
    return offsets, truncated, chars


@_njit
def hash_bytes(data, toff, out):
    """out[d] = two 64-bit FNV-1a hashes (finalised) of string d's bytes."""
    for d in range(toff.size - 1):
        k1, k2 = _BASIS, _BASIS2
        for p in range(toff[d], toff[d + 1]):
            b = np.uint64(data[p])
            k1 = (k1 ^ b) * _PRIME
            k2 = (k2 ^ (b + np.uint64(0x9E37))) * _PRIME
        out[d, 0] = fmix64(k1)
        out[d, 1] = fmix64(k2 ^ np.uint64(toff[d + 1] - toff[d]))


@_njit
def band_keys(sig, bands, rows, out):
    """out[d, j] = 64-bit hash of sig[d, j*rows:(j+1)*rows] (band j of document d)."""
    for d in range(sig.shape[0]):
        for j in range(bands):
            h = _BASIS2 ^ np.uint64(j)
            for r in range(rows):
                h = (h ^ np.uint64(sig[d, j * rows + r])) * _PRIME
            out[d, j] = fmix64(h)


@_njit
def bucket_pairs(keys, docs, window, new_from):
    """Pairs (a < b), encoded a << 32 | b, of documents with equal key: `keys` sorted
    ascending, `docs` in the same order (ascending inside a bucket). Each member is paired
    with the next `window` members of its bucket; a pair of two documents below `new_from`
    (both from earlier snapshots) is skipped. Counts first, then fills: no lists."""
    n = keys.size
    cnt = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and keys[j] == keys[i]:
            j += 1
        if j - i > 1:
            for x in range(i, j):
                cnt += min(window, j - 1 - x)
        i = j
    out = np.empty(cnt, np.uint64)
    k = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and keys[j] == keys[i]:
            j += 1
        if j - i > 1:
            for x in range(i, j):
                for y in range(x + 1, min(j, x + 1 + window)):
                    a, b = docs[x], docs[y]
                    if a > b:
                        a, b = b, a
                    if b >= new_from:
                        out[k] = (np.uint64(a) << np.uint64(32)) | np.uint64(b)
                        k += 1
        i = j
    return out[:k]


@_njit
def jaccard_pairs(sh, off, a, b, lo, hi, out):
    """out[p] = exact Jaccard of the sorted sets of documents a[p], b[p], for p in [lo, hi)
    (1.0 for two empty sets)."""
    for p in range(lo, hi):
        x0, x1 = off[a[p]], off[a[p] + 1]
        y0, y1 = off[b[p]], off[b[p] + 1]
        nx, ny = x1 - x0, y1 - y0
        if nx == 0 or ny == 0:
            out[p] = 1.0 if nx == ny else 0.0
            continue
        inter = 0
        i, j = x0, y0
        while i < x1 and j < y1:
            u, v = sh[i], sh[j]
            if u == v:
                inter += 1
                i += 1
                j += 1
            elif u < v:
                i += 1
            else:
                j += 1
        out[p] = inter / (nx + ny - inter)


@_njit
def estimate_pairs(sig, a, b, lo, hi, out):
    """out[p] = share of equal signature values of documents a[p], b[p]."""
    n_perm = sig.shape[1]
    for p in range(lo, hi):
        eq = 0
        for i in range(n_perm):
            if sig[a[p], i] == sig[b[p], i]:
                eq += 1
        out[p] = eq / n_perm


@_njit
def union_find(n, a, b):
    """Label of every node 0..n-1 = the smallest node of its connected component."""
    parent = np.arange(n)
    for k in range(a.size):
        x, y = a[k], b[k]
        while parent[x] != x:  # find with path halving
            parent[x] = parent[parent[x]]
            x = parent[x]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x < y:  # the smaller root wins: a root is its component's smallest node
            parent[y] = x
        elif y < x:
            parent[x] = y
    for v in range(n):  # parents point to smaller nodes: one ascending pass flattens
        parent[v] = parent[parent[v]]
    return parent


def warm_up() -> None:
    """Compile (first run after an install) or load from the cache every kernel, with the
    argument types of the real runs (read-only views for memory-mapped stores)."""
    from tasks.curate import lsh, minhash

    if _INTERPRETED:
        return
    s = minhash.sketch(["warm up the kernels, warm up the kernels", ""], minhash.SketchParams(4))
    bk = minhash.band_keys(s.sig, 2, 2)
    a, b = lsh.candidate_pairs(bk, np.ones(2, bool), 4, 0, workers=1)
    a, b = np.zeros(1, np.int64), np.ones(1, np.int64)
    sh, sig = s.shingles.copy(), s.sig.copy()
    sh.setflags(write=False)
    sig.setflags(write=False)
    lsh.jaccard_exact(sh, s.offsets, a, b, workers=1)
    lsh.jaccard_estimate(sig, a, b, workers=1)
    lsh.clusters(2, a, b)
    minhash.exact_keys_generic(["x"], None)
