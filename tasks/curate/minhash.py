"""MinHash signatures of word n-gram shingles, vectorised over whole batches.

1. `shingle_hashes`: text -> words (lowercase, punctuation dropped, CJK/Thai characters as
   words) -> word n-gram hashes. All in pyarrow/numpy over whole batches: the word hashes are a
   polynomial hash summed with `np.add.reduceat` over the UTF-8 bytes, stable across runs.
2. `minhash`: signatures = min over a doc's shingles of `num_perm` multiply-add-shift hashes,
   computed as one (shingles × num_perm) uint64 matrix per chunk and `np.minimum.reduceat`.
3. `band_hashes` -> rows `(band, band_hash, doc)` written to Parquet beside the signatures
   (`minhash_shard`, the unit a flow maps over shards).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.curate.config import NearConfig
from tasks.curate.shards import Shard

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


_CHUNK_SHINGLES = 1 << 15  # shingles per (shingles × num_perm) matrix: 32k × 112 × 8 B = 29 MB


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, vectorised (wrapping uint64 arithmetic)."""
    h = h.astype(np.uint64, copy=True)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


_WORD_BASE = np.uint64(0x100000001B3)  # FNV prime: odd, so powers never vanish mod 2^64


_SEP = r"[^\p{L}\p{N}\p{M}]+"


# Scripts written without spaces: each character counts as a word.
_CHAR_SCRIPTS = r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}])"


def words_of(texts: pa.Array) -> pa.ListArray:
    """Lowercased words of each text: runs of letters, digits and marks (so punctuation and
    symbols separate words); CJK/Thai characters are one word each; null -> no words."""
    t = pc.utf8_lower(pc.fill_null(texts, ""))
    t = pc.replace_substring_regex(t, _CHAR_SCRIPTS, r" \1 ")
    return pc.split_pattern_regex(t, _SEP)


def word_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word, in order; number of words per text). Stable across runs.

    Words are dictionary-encoded first (C++), so only each distinct word of the batch is
    hashed: a polynomial over its UTF-8 bytes, summed per word with `np.add.reduceat`.
    """
    lists = words_of(texts)
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    n_docs = len(lists)
    flat = lists.flatten()
    parent = pc.list_parent_indices(lists).to_numpy()
    enc = flat.dictionary_encode()
    vocab = enc.dictionary
    codes = enc.indices.to_numpy(zero_copy_only=False)
    vh = _hash_strings(vocab)
    wh = vh[codes]
    nonempty = pc.utf8_length(vocab).to_numpy(zero_copy_only=False)[codes] > 0
    if not nonempty.all():
        wh, parent = wh[nonempty], parent[nonempty]
    counts = np.bincount(parent, minlength=n_docs).astype(np.int64)
    return wh, counts


def _hash_strings(arr: pa.Array) -> np.ndarray:
    """64-bit hash of each string of a pyarrow StringArray (vectorised over all bytes)."""
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    lens = np.diff(offsets).astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return _fmix64(np.zeros(n, np.uint64))
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + total]
    seg = (offsets[:-1] - offsets[0]).astype(np.int64)
    pos = np.arange(total) - np.repeat(seg, lens)  # position of each byte inside its string
    steps = np.full(int(lens.max()), _WORD_BASE, dtype=np.uint64)
    steps[0] = np.uint64(1)
    powers = np.cumprod(steps, dtype=np.uint64)  # 1, B, B^2, ... (mod 2^64)
    contrib = (data.astype(np.uint64) + np.uint64(1)) * powers[pos]
    h = np.zeros(n, np.uint64)
    has = lens > 0
    h[has] = np.add.reduceat(contrib, seg[has])
    return _fmix64(h ^ lens.astype(np.uint64))


def shingle_hashes(
    texts: pa.Array, ngram: int, max_shingles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of each text's word n-grams, concatenated in text order.

    Returns (hashes uint64, shingles per text, truncated mask). A text with fewer than `ngram`
    words is one shingle (all its words); an empty one has none; only the first
    `max_shingles` shingles of a longer text are hashed.
    """
    wh, counts = word_hashes(texts)
    n_docs = len(counts)
    per_doc = np.where(counts >= ngram, counts - ngram + 1, (counts > 0).astype(np.int64))
    truncated = per_doc > max_shingles
    per_doc = np.minimum(per_doc, max_shingles)
    if wh.size == 0:
        return np.zeros(0, np.uint64), per_doc, truncated
    doc_start = np.cumsum(np.r_[0, counts[:-1]])
    # Shingle s of doc d starts at word doc_start[d] + k, k < per_doc[d].
    doc_of = np.repeat(np.arange(n_docs), per_doc)
    k = np.arange(per_doc.sum()) - np.repeat(np.cumsum(np.r_[0, per_doc[:-1]]), per_doc)
    first = doc_start[doc_of] + k
    width = np.minimum(counts[doc_of], ngram)  # words in this shingle
    padded = np.r_[wh, np.zeros(ngram, np.uint64)]
    acc = np.zeros(first.size, np.uint64)
    for j in range(ngram):  # a loop over n-gram positions, not over documents
        mult = np.uint64((0x9E3779B97F4A7C15 * (2 * j + 1)) & 0xFFFFFFFFFFFFFFFF)
        term = padded[first + j] * mult
        if j >= width.min():
            term[j >= width] = 0
        acc += term
    return _fmix64(acc), per_doc, truncated


@dataclass(frozen=True)
class MinHashParams:
    """Everything that makes two signatures comparable."""

    ngram: int
    bands: int
    rows: int
    seed: int
    max_shingles: int
    version: int = 1  # bump when the hashing changes

    @classmethod
    def from_config(cls, c: NearConfig) -> MinHashParams:
        return cls(c.ngram, c.bands, c.rows, c.seed, c.max_shingles)

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of the multiply-add-shift hashes h(x) = ((a·x + b) mod 2^64) >> 32."""
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 2**63, self.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        b = rng.integers(0, 2**63, self.num_perm, dtype=np.uint64)
        return a, b

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def minhash(
    hashes: np.ndarray, per_doc: np.ndarray, params: MinHashParams
) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint32 [docs with shingles × num_perm], mask of docs that have one)."""
    a, b = params.coefficients()
    has = per_doc > 0
    n = int(has.sum())
    sig = np.empty((n, params.num_perm), np.uint32)
    if n == 0:
        return sig, has
    x = (hashes >> np.uint64(32)).astype(np.uint64)  # 32-bit keys for multiply-shift
    counts = per_doc[has]
    ends = np.cumsum(counts)
    starts = ends - counts
    d = 0
    while d < n:  # chunks of whole documents, ~_CHUNK_SHINGLES shingles each
        e = int(np.searchsorted(ends, ends[d] - counts[d] + _CHUNK_SHINGLES, side="right"))
        e = max(e, d + 1)
        lo, hi = int(starts[d]), int(ends[e - 1])
        m = np.multiply.outer(x[lo:hi], a)
        m += b
        # (v >> 32) is monotonic in v: take the minimum first, shift the small result after
        sig[d:e] = np.minimum.reduceat(m, starts[d:e] - lo, axis=0) >> np.uint64(32)
        d = e
    return sig, has


def band_hashes(sig: np.ndarray, params: MinHashParams) -> np.ndarray:
    """One 64-bit hash per band of each signature: int64 [docs × bands]."""
    n = sig.shape[0]
    s = sig.reshape(n, params.bands, params.rows).astype(np.uint64)
    acc = np.zeros((n, params.bands), np.uint64)
    for r in range(params.rows):
        mult = np.uint64((0xD6E8FEB86659FD93 * (2 * r + 1)) & 0xFFFFFFFFFFFFFFFF)
        acc += _fmix64(s[:, :, r] + np.uint64(r << 32)) * mult
    return _fmix64(acc).view(np.int64)


@dataclass
class MinHashShardResult:
    index: int
    signatures: str
    bands: str
    docs: int
    without_shingles: int
    truncated: int


def minhash_shard(
    shard: Shard, params: MinHashParams, batch_rows: int = 2_000
) -> MinHashShardResult:
    """Signatures and band rows of one shard, written to Parquet; the result names the files."""
    out = Path(shard.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sig_path = out / f"sig-{shard.index:05d}.parquet"
    band_path = out / f"bands-{shard.index:05d}.parquet"
    sig_type = pa.list_(pa.uint32(), params.num_perm)
    sig_schema = pa.schema([("doc", pa.int64()), ("chars", pa.int64()), ("sig", sig_type)])
    band_schema = pa.schema([("band", pa.int16()), ("band_hash", pa.int64()), ("doc", pa.int64())])
    docs = without = truncated = 0
    with (
        pq.ParquetWriter(sig_path, sig_schema) as sw,
        pq.ParquetWriter(band_path, band_schema) as bw,
    ):
        for batch in pq.ParquetFile(shard.path).iter_batches(batch_rows, columns=["doc", "text"]):
            text = batch.column("text")
            hashes, per_doc, trunc = shingle_hashes(text, params.ngram, params.max_shingles)
            sig, has = minhash(hashes, per_doc, params)
            doc = batch.column("doc").to_numpy()[has]
            chars = pc.fill_null(pc.utf8_length(text), 0).to_numpy()[has].astype(np.int64)
            docs += len(per_doc)
            without += int((~has).sum())
            truncated += int(trunc.sum())
            if not doc.size:
                continue
            sw.write_table(
                pa.table(
                    [
                        pa.array(doc),
                        pa.array(chars),
                        pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), params.num_perm),
                    ],
                    schema=sig_schema,
                )
            )
            bh = band_hashes(sig, params)
            nb = params.bands
            bw.write_table(
                pa.table(
                    [
                        pa.array(np.tile(np.arange(nb, dtype=np.int16), doc.size)),
                        pa.array(bh.ravel()),
                        pa.array(np.repeat(doc, nb)),
                    ],
                    schema=band_schema,
                )
            )
    return MinHashShardResult(shard.index, str(sig_path), str(band_path), docs, without, truncated)
