"""Shingle sets, MinHash signatures and exact-dedup keys of a batch of texts, in one native pass.

`sketch(texts, params)` for one batch of texts (a pyarrow string array):

1. NFC: a native pre-scan flags texts holding a code point that NFC may change; only those go
   through pyarrow's `utf8_normalize` (a few in a thousand on real text).
2. `kernels.sketch_utf8`, one pass over each text's UTF-8 bytes, no Python objects: the exact
   key of the default exact-dedup rule, the words (maximal runs of letters, digits and marks,
   lowercased; a Han/kana/Thai/Lao/Khmer/Myanmar character is a word by itself — the same
   split as the regex `words_of`, from tables derived from pyarrow: `tasks/curate/unicode.py`),
   word n-gram shingles, the sorted distinct shingle set (kept for exact verification) and the
   MinHash signature (32-bit lanes).
3. `band_keys(sig, bands, rows)`: one 64-bit key per LSH band.

`ordered_map` runs a function over batches on a thread pool (every kernel releases the GIL)
and yields the results in order, so a reader and two sketching threads overlap.

Signatures and shingle sets are comparable only under equal `SketchParams` (ngram, num_perm,
seed, max_shingles, version); the LSH band layout is not part of them: band keys are
recomputed from stored signatures when the threshold changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.curate import jit
from tasks.curate.config import ExactConfig, NearConfig
from tasks.curate.unicode import CHAR_SCRIPTS, unicode_tables
from warehouse import arrow

VERSION = 2  # 1: numpy hashing with position-weighted shingle hashes and 64-bit MinHash
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SketchParams:
    """Everything that makes two signatures (and two shingle sets) comparable."""

    ngram: int = 5
    num_perm: int = 128
    seed: int = 42
    max_shingles: int = 50_000
    version: int = VERSION

    @classmethod
    def from_config(cls, c: NearConfig) -> SketchParams:
        return cls(c.ngram, c.num_perm, c.seed, c.max_shingles)

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of the 32-bit hashes h_i(x) = (a_i x + b_i) mod 2^32, a_i odd."""
        rng = np.random.default_rng(self.seed)
        a = rng.integers(0, 2**31, self.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = rng.integers(0, 2**32, self.num_perm, dtype=np.uint32)
        return a, b

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sketch:
    """Sketches of one batch of documents (row i of every array = document i of the batch).

    shingles   uint64: the sorted distinct shingle hashes of every document, concatenated
    offsets    int64 [n + 1]: document i's set is shingles[offsets[i]:offsets[i + 1]]
    sig        uint32 [n, num_perm] (all 0xFFFFFFFF for a document without shingles)
    truncated  bool [n]: more than max_shingles shingles (only the first ones were kept)
    exact      uint64 [n, 2]: the default exact-dedup key, (0, 0) = no non-whitespace text
    chars      int64 [n]: code points of the text
    """

    shingles: np.ndarray
    offsets: np.ndarray
    sig: np.ndarray
    truncated: np.ndarray
    exact: np.ndarray
    chars: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def empty(self) -> np.ndarray:
        return (self.exact[:, 0] == 0) & (self.exact[:, 1] == 0)

    def __len__(self) -> int:
        return self.offsets.size - 1


def words_of(texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """The words of each text by pyarrow regexes (NFC, lowercase, the same split as the native
    tokenizer; null -> no words; may contain empty strings, which are not words). The
    reference for tests and for tools that need shingles as strings (bench/dedup.py)."""
    t = pc.utf8_normalize(pc.if_else(pc.is_null(texts), "", texts), "NFC")
    t = pc.replace_substring_regex(pc.utf8_lower(t), CHAR_SCRIPTS, r" \1 ")
    lists = pc.split_pattern_regex(t, r"[^\p{L}\p{N}\p{M}]+")
    return lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists


def _as_strings(texts: pa.Array | pa.ChunkedArray | list[str]) -> pa.Array:
    if isinstance(texts, list):
        return arrow.strings(texts)
    if isinstance(texts, pa.ChunkedArray):
        texts = pa.concat_arrays(texts.chunks) if texts.num_chunks != 1 else texts.chunk(0)
    if not pa.types.is_string(texts.type):
        texts = texts.cast(pa.string())
    return texts


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, read-only, without a copy; int64 offsets) of a pyarrow string array."""
    off = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    off = off[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    data.setflags(write=False)  # one kernel specialisation, whatever the buffer's origin
    return data, off


def _valid(texts: pa.Array) -> np.ndarray:
    if not texts.null_count:
        return np.ones(len(texts), bool)
    return pc.is_valid(texts).to_numpy(zero_copy_only=False)


def sketch(texts: pa.Array | pa.ChunkedArray | list[str], params: SketchParams) -> Sketch:
    """Shingle sets, signatures and exact keys of a batch of texts (the GIL is released)."""
    kernels = jit.kernels()

    cls, low = unicode_tables()
    texts = _as_strings(texts)
    data, toff = string_buffers(texts)
    valid = _valid(texts)
    if len(texts):
        flag = kernels.needs_nfc(data, toff, cls) & valid
        if flag.any():  # only texts that NFC may change go through pyarrow's normaliser
            fixed = pc.utf8_normalize(texts.filter(arrow.boolean(flag)), "NFC")
            texts = pc.replace_with_mask(texts, arrow.boolean(flag), fixed)
            data, toff = string_buffers(texts)
    n = len(texts)
    a, b = params.coefficients()
    cap = int(toff[-1] - toff[0]) // 2 + n + 1  # >= words: a word and its separator
    sh = np.empty(cap, np.uint64)
    sig = np.empty((n, params.num_perm), np.uint32)
    exact = np.empty((n, 2), np.uint64)
    offsets, truncated, chars = kernels.sketch_utf8(
        data, toff, valid, cls, low, params.ngram, params.max_shingles, a, b, sh, sig, exact
    )
    # a view: the untouched tail of `sh` never becomes resident, and no copy faults in pages
    return Sketch(sh[: offsets[-1]], offsets, sig, truncated, exact, chars)


def is_default_exact(c: ExactConfig) -> bool:
    """The rule `sketch` computes natively: NFC, lowercase, whitespace collapsed."""
    return c.unicode_nfc and c.lowercase and c.collapse_whitespace and not c.strip_punctuation


def exact_keys_generic(
    texts: pa.Array | pa.ChunkedArray | list[str], c: ExactConfig | None
) -> np.ndarray:
    """uint64 [n, 2] exact keys under any `ExactConfig`: pyarrow normalises the text as
    `tasks.curate.exact.exact_key_sql` does, a native kernel hashes the bytes. Null texts get
    the key of "" (callers decide emptiness from `Sketch.empty`)."""
    kernels = jit.kernels()

    c = c or ExactConfig()
    t = _as_strings(texts)
    if c.unicode_nfc:
        t = pc.utf8_normalize(t, "NFC")
    if c.lowercase:
        t = pc.utf8_lower(t)
    if c.strip_punctuation:
        t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]+", "")
    if c.collapse_whitespace:
        t = pc.utf8_trim(pc.replace_substring_regex(t, r"\s+", " "), " ")
    t = _as_strings(t)
    data, toff = string_buffers(t)
    out = np.empty((len(t), 2), np.uint64)
    kernels.hash_bytes(data, toff, out)
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [n, bands] band keys of signatures (their first bands × rows values)."""
    kernels = jit.kernels()

    if bands * rows > sig.shape[1]:
        raise ValueError(
            f"{bands} x {rows} bands need {bands * rows} permutations, have {sig.shape[1]}"
        )
    out = np.empty((sig.shape[0], bands), np.uint64)
    kernels.band_keys(np.ascontiguousarray(sig), bands, rows, out)
    return out


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int | None = None
) -> Iterator[R]:
    """fn(item) for every item, `workers` at a time on threads, yielded in input order; at most
    workers + 1 results wait in memory (the reader does not run ahead)."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as ex:
        pending: list[Future[R]] = []
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) > workers:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()
