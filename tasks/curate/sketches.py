"""Where sketches live: a run's out-of-core scratch store, and the Parquet files beside a curated
snapshot that later snapshots reuse.

- `SketchStore`: append-only scratch files of one run (flat shingle hashes, signatures when
  needed, LSH band keys), memory-mapped for candidate generation and verification, so memory
  stays O(documents) small arrays, not O(shingles).
- `_minhash/sketch-NNNNN.parquet` beside a curated snapshot: `doc` int64, `chars` int64, `sig`
  fixed_size_list<uint32>[num_perm], `shingles` list<uint64> (the sorted distinct shingle
  hashes), one row per document that has shingles; `params.json` holds the `SketchParams`
  they were made with. A later snapshot re-bands the signatures and verifies against the
  shingle sets exactly, without reading old text.
- `minhash_shard`: one shard of `(doc, text)` rows -> one sketch file (the unit a flow maps).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.curate.minhash import Sketch, SketchParams, sketch
from tasks.curate.shards import Shard
from warehouse import arrow

SKETCH_GLOB = "sketch-*.parquet"


def sketch_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            ("doc", pa.int64()),
            ("chars", pa.int64()),
            ("sig", pa.list_(pa.uint32(), num_perm)),
            ("shingles", pa.list_(pa.uint64())),
        ]
    )


def sketch_table(docs: np.ndarray, s: Sketch, num_perm: int) -> pa.Table:
    """The rows of one batch with shingles, as a sketch-file table (no pandas)."""
    keep = s.sizes > 0  # rows without shingles hold none of the flat array: drop their offsets
    sizes = s.sizes[keep]
    off = np.zeros(sizes.size + 1, np.int64)
    np.cumsum(sizes, out=off[1:])
    sh = s.shingles[s.offsets[0] : s.offsets[-1]]
    docs, chars, sig = np.asarray(docs)[keep], s.chars[keep], s.sig[keep]
    lists = pa.ListArray.from_arrays(arrow.numeric(off.astype(np.int32)), arrow.numeric(sh))
    sigs = pa.FixedSizeListArray.from_arrays(
        arrow.numeric(np.ascontiguousarray(sig).ravel()), num_perm
    )
    cols = [arrow.numeric(np.asarray(docs, np.int64)), arrow.numeric(chars), sigs, lists]
    return pa.Table.from_arrays(cols, schema=sketch_schema(num_perm))


def read_sketch_files(
    paths: list[str], batch_rows: int = 20_000
) -> Iterator[tuple[np.ndarray, Sketch]]:
    """(doc keys, sketch) batches of sketch files, in file order (`exact` and `truncated` are
    not stored: zeros)."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_rows):
            docs = batch.column("doc").to_numpy()
            lists = batch.column("shingles")
            off = np.asarray(lists.offsets).astype(np.int64)
            sh = lists.values.to_numpy()[off[0] : off[-1]]
            sigc = batch.column("sig")
            sig = sigc.flatten().to_numpy().reshape(len(sigc), -1)
            n = len(docs)
            yield (
                docs,
                Sketch(
                    sh,
                    off - off[0],
                    sig,
                    np.zeros(n, bool),
                    np.zeros((n, 2), np.uint64),
                    batch.column("chars").to_numpy(),
                ),
            )


@dataclass
class SketchShardResult:
    index: int
    path: str  # the sketch file
    docs: int
    without_shingles: int
    truncated: int


def minhash_shard(shard: Shard, params: SketchParams, batch_rows: int = 2_000) -> SketchShardResult:
    """Sketches of one shard of `(doc, text)` rows into `<out_dir>/sketch-<index>.parquet`."""
    out = Path(shard.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sketch-{shard.index:05d}.parquet"
    docs = without = truncated = 0
    with pq.ParquetWriter(path, sketch_schema(params.num_perm), compression="zstd") as w:
        for batch in pq.ParquetFile(shard.path).iter_batches(batch_rows, columns=["doc", "text"]):
            s = sketch(batch.column("text"), params)
            docs += len(s)
            without += int((s.sizes == 0).sum())
            truncated += int(s.truncated.sum())
            w.write_table(sketch_table(batch.column("doc").to_numpy(), s, params.num_perm))
    return SketchShardResult(shard.index, str(path), docs, without, truncated)


class SketchStore:
    """Append-only, out-of-core store of one run's sketches.

    Scratch files in `folder`: shingles.u64 (sorted distinct shingle hashes, documents one
    after another), sig.u32 ([n, num_perm], only with `keep_sig`: estimate verification) and
    bands.u64 ([n, bands] LSH band keys). In memory: doc keys, chars and set sizes (24 bytes
    per document).
    """

    def __init__(self, folder: Path, num_perm: int, bands: int, keep_sig: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.num_perm, self.bands, self.keep_sig = num_perm, bands, keep_sig
        self._sh = open(self.folder / "shingles.u64", "wb")  # noqa: SIM115 (closed in close)
        self._bk = open(self.folder / "bands.u64", "wb")  # noqa: SIM115
        self._sig = open(self.folder / "sig.u32", "wb") if keep_sig else None  # noqa: SIM115
        self._docs: list[np.ndarray] = []
        self._chars: list[np.ndarray] = []
        self._sizes: list[np.ndarray] = []
        self.n = 0
        self.truncated = 0

    def append(self, s: Sketch, bk: np.ndarray, docs: np.ndarray | None = None) -> None:
        """Append one batch with its band keys [n, bands]; `docs` default to row numbers."""
        self._sh.write(memoryview(np.ascontiguousarray(s.shingles)))
        self._bk.write(memoryview(np.ascontiguousarray(bk)))
        if self._sig is not None:
            self._sig.write(memoryview(np.ascontiguousarray(s.sig)))
        if docs is None:
            docs = np.arange(self.n, self.n + len(s), dtype=np.int64)
        self._docs.append(np.asarray(docs, np.int64))
        self._chars.append(s.chars)
        self._sizes.append(s.sizes)
        self.n += len(s)
        self.truncated += int(s.truncated.sum())

    def close(self) -> None:
        for f in (self._sh, self._bk, self._sig):
            if f is not None:
                f.close()
        self.docs = _cat(self._docs, np.int64)
        self.chars = _cat(self._chars, np.int64)
        self.sizes = _cat(self._sizes, np.int64)
        self._docs, self._chars, self._sizes = [], [], []

    def band_key_matrix(self) -> np.ndarray:
        """The band keys, memory-mapped [n, bands]."""
        if not self.n or not self.bands:
            return np.zeros((self.n, self.bands), np.uint64)
        return np.memmap(self.folder / "bands.u64", np.uint64, "r", shape=(self.n, self.bands))

    def shingles(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat shingle hashes memory-mapped, offsets [n + 1])."""
        off = np.zeros(self.n + 1, np.int64)
        np.cumsum(self.sizes, out=off[1:])
        if not off[-1]:
            return np.zeros(0, np.uint64), off
        return np.memmap(self.folder / "shingles.u64", np.uint64, "r"), off

    def signatures(self) -> np.ndarray:
        if not self.keep_sig:
            raise ValueError("signatures were not kept (keep_sig=False)")
        if not self.n:
            return np.zeros((0, self.num_perm), np.uint32)
        return np.memmap(self.folder / "sig.u32", np.uint32, "r", shape=(self.n, self.num_perm))


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
