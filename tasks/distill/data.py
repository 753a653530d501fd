"""What a student trains on: the blocks of tokens snapshots and, offline, their cached targets.

Block i of a tokens snapshot is row i of its Parquet files read in order (as tasks/logits/cache.py
reads them), and the logit cache of that snapshot holds block i's positions at
[i * block_size, (i + 1) * block_size) of the shard `i // shard_blocks`. Position t of a block
is the teacher's distribution for token t + 1, aligned with the student's logits at t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from models.logit_cache import LogitCacheError, SparseTargets, concat, read_manifest, read_shard

SPLIT_CODES = {"train": 0, "selection": 1, "test": 2}


@dataclass
class TokenBlocks:
    """Every block of one or more tokens snapshots, with where each came from."""

    input_ids: np.ndarray  # (B, L) int64
    loss_mask: np.ndarray  # (B, L) uint8
    split: np.ndarray  # (B,) int8: SPLIT_CODES
    source: np.ndarray  # (B,) index into `keys`/`caches`
    local: np.ndarray  # (B,) block index inside its snapshot (and its cache)
    keys: list[str] = field(default_factory=list)  # tokens snapshot keys

    @property
    def block_size(self) -> int:
        return int(self.input_ids.shape[1])

    def indices(self, split: str) -> np.ndarray:
        """Indices of the blocks of `split` (train, selection, test) that carry loss. A block
        with no next-token target under loss (a stretch of an article whose summary is masked
        as prompt, say) adds nothing to a loss but its compute, so it is left out."""
        has_target = self.loss_mask[:, 1:].any(axis=1)
        return np.flatnonzero((self.split == SPLIT_CODES[split]) & has_target)

    def train(self) -> np.ndarray:
        return self.indices("train")

    def extended(self, input_ids: np.ndarray, loss_mask: np.ndarray, key: str) -> TokenBlocks:
        """These blocks plus training blocks of one more source (a cache's teacher-summary
        blocks), whose targets are the reader at index `len(keys)`."""
        n = len(input_ids)
        return TokenBlocks(
            np.concatenate([self.input_ids, np.asarray(input_ids, np.int64)]),
            np.concatenate([self.loss_mask, np.asarray(loss_mask, np.uint8)]),
            np.concatenate([self.split, np.full(n, SPLIT_CODES["train"], np.int8)]),
            np.concatenate([self.source, np.full(n, len(self.keys))]),
            np.concatenate([self.local, np.arange(n)]),
            [*self.keys, key],
        )

    def selection(self) -> np.ndarray:
        """Held-out blocks that choose: keep-best, early stopping, a refresh's keep-best."""
        return self.indices("selection")

    def test(self) -> np.ndarray:
        """Held-out blocks no choice has seen: every reported figure is computed on these."""
        return self.indices("test")


def split_codes(splits: list[str]) -> np.ndarray:
    """The split of each block. Snapshots tokenized before the selection/test split have one
    `validation` split: its blocks alternate, even ones selection and odd ones test."""
    codes = np.array([SPLIT_CODES.get(s, -1) for s in splits], np.int8)
    legacy = np.flatnonzero(np.asarray(splits) == "validation")
    codes[legacy] = np.where(np.arange(legacy.size) % 2 == 0, 1, 2)
    if (codes < 0).any():
        raise ValueError(f"unknown split in tokens: {sorted(set(splits) - set(SPLIT_CODES))}")
    return codes


def read_blocks(snapshots: list[tuple[str, list[Path]]]) -> TokenBlocks:
    """Blocks of the tokens snapshots given as (key, parquet files), in file order."""
    ids, masks, splits, src, local = [], [], [], [], []
    for s, (_, files) in enumerate(snapshots):
        table = pq.read_table(
            [str(f) for f in files], columns=["input_ids", "loss_mask", "split"], partitioning=None
        )
        n = table.num_rows
        if n == 0:
            continue
        length = len(table.column("input_ids")[0])
        ids.append(
            np.asarray(table.column("input_ids").combine_chunks().flatten(), np.int64).reshape(
                n, length
            )
        )
        masks.append(
            np.asarray(table.column("loss_mask").combine_chunks().flatten(), np.uint8).reshape(
                n, length
            )
        )
        splits.append(split_codes(table.column("split").to_pylist()))
        src.append(np.full(n, s))
        local.append(np.arange(n))
    if not ids:
        raise ValueError("the tokens snapshots hold no blocks")
    if len({a.shape[1] for a in ids}) != 1:
        raise ValueError("tokens snapshots with different block sizes cannot be mixed")
    return TokenBlocks(
        np.concatenate(ids),
        np.concatenate(masks),
        np.concatenate(splits),
        np.concatenate(src),
        np.concatenate(local),
        [k for k, _ in snapshots],
    )


class CacheReader:
    """Targets of whole blocks from one logit cache folder (shards memory-mapped, kept open)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.block_size = int(self.manifest["block_size"])
        self.per_shard = int(self.manifest["shard_blocks"])
        self.mode = self.manifest["mode"]
        self._shards: dict[int, tuple[SparseTargets, np.ndarray | None]] = {}

    def _shard(self, index: int) -> tuple[SparseTargets, np.ndarray | None]:
        if index not in self._shards:
            t = read_shard(self.root, index, self.manifest)
            self._shards[index] = (t, t.offsets() if t.mode == "sampled" else None)
        return self._shards[index]

    def block(self, b: int) -> SparseTargets:
        if not 0 <= b < int(self.manifest["blocks"]):
            raise LogitCacheError(f"block {b} is outside the cache {self.root}")
        t, offsets = self._shard(b // self.per_shard)
        lo = (b % self.per_shard) * self.block_size
        hi = lo + self.block_size
        if t.mode == "topk":
            return SparseTargets(
                "topk", ids=t.ids[lo:hi], values=t.values[lo:hi], tail=t.tail[lo:hi]
            )  # type: ignore[index]
        assert offsets is not None
        a, z = int(offsets[lo]), int(offsets[hi])
        return SparseTargets(
            "sampled",
            ids=t.ids[a:z],
            values=t.values[a:z],
            lengths=t.lengths[lo:hi],  # type: ignore[index]
            samples=t.samples,
        )

    def blocks(self, indices: list[int] | np.ndarray) -> SparseTargets:
        """The targets of these blocks, positions back to back in the order given."""
        return concat([self.block(int(b)) for b in indices])
