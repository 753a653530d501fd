"""Sparse teacher distributions: how they are computed, stored and read back.

Full distributions are too big to keep (vocab x 2 bytes per token: ~98 KB/token for a
49k vocab), so each position keeps a few token ids with their probability mass:

`topk`     the k most likely ids with their probabilities (fp16), plus the `tail` mass of all
           the others (fp16), so a loss can treat the rest as one bucket instead of
           renormalising the top k (which biases the student towards the head).
`sampled`  Sparse Logit Sampling (Anshumann et al., ACL 2025): draw S ids from the teacher
           distribution, keep the distinct ids and their counts (uint8). counts/S is an unbiased
           estimate of the distribution, so the KD gradient from it is unbiased too; at a few
           distinct ids per position it costs ~3 bytes per kept id.

On disk a cache is a folder of shards, each written whole or not at all:

    manifest.json                 teacher, tokenizer hash, tokens snapshot, mode, parameters
    shard-00000/ids.npy           topk: (P, k) ids       sampled: (N,) ids, rows back to back
                values.npy        topk: (P, k) fp16      sampled: (N,) uint8 counts
                tail.npy          topk: (P,) fp16        sampled: -
                lengths.npy       topk: -                sampled: (P,) uint8 distinct ids/position
                COMPLETE.json     positions + sha256 of each file (written last)

ids are uint16 when the vocabulary fits, else uint32. Arrays are memory-mapped on read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

Mode = Literal["topk", "sampled"]
MANIFEST = "manifest.json"
COMPLETE = "COMPLETE.json"


class LogitCacheError(RuntimeError):
    """A cache that cannot be written or trusted (disk full, wrong teacher, bad shard)."""


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass
class SparseTargets:
    """The sparse distributions of P positions (one shard, or one batch)."""

    mode: Mode
    ids: np.ndarray  # topk: (P, k); sampled: (N,)
    values: np.ndarray  # topk: (P, k) fp16 probabilities; sampled: (N,) uint8 counts
    tail: np.ndarray | None = None  # topk: (P,) fp16 mass outside the k ids
    lengths: np.ndarray | None = None  # sampled: (P,) distinct ids per position
    samples: int | None = None  # sampled: S, the number of draws per position

    @property
    def positions(self) -> int:
        return len(self.tail) if self.mode == "topk" else len(self.lengths)  # type: ignore[arg-type]

    def nbytes(self) -> int:
        extra = self.tail if self.mode == "topk" else self.lengths
        return int(self.ids.nbytes + self.values.nbytes + extra.nbytes)  # type: ignore[union-attr]

    def offsets(self) -> np.ndarray:
        """sampled: start of each position's ids in the flat arrays (P + 1 entries)."""
        assert self.lengths is not None
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def mass(self) -> np.ndarray:
        """Probability mass each position accounts for (stored ids + tail); 1 when exact."""
        if self.mode == "topk":
            return self.values.astype(np.float32).sum(1) + self.tail.astype(np.float32)  # type: ignore[union-attr]
        sums = np.add.reduceat(self.values.astype(np.int64), self.offsets()[:-1])
        return sums / float(self.samples)  # type: ignore[arg-type]

    def to_dense(self, vocab_size: int) -> np.ndarray:
        """(P, V) float32 estimate. topk spreads the tail evenly over the other ids."""
        p = np.zeros((self.positions, vocab_size), np.float32)
        rows = np.arange(self.positions)
        if self.mode == "topk":
            k = self.ids.shape[1]
            spread = self.tail.astype(np.float32) / max(vocab_size - k, 1)  # type: ignore[union-attr]
            p += spread[:, None]
            p[rows[:, None], self.ids.astype(np.int64)] = self.values.astype(np.float32)
        else:
            row_of = np.repeat(rows, self.lengths)  # type: ignore[arg-type]
            p[row_of, self.ids.astype(np.int64)] = self.values / float(self.samples)  # type: ignore[arg-type]
        return p


# --------------------------------------------------------------------------- computing
# Both formats are computed on the logits' device and in their dtype (bf16 on a GPU) without a
# full-vocabulary fp32 softmax: the normaliser is a max and a sum of exps accumulated in fp32;
# top-k runs on the logits themselves (softmax is monotone) and only the k winners become
# probabilities; sampling inverts the cumulative distribution at S uniform draws (one cumsum
# and a binary search per draw) instead of torch.multinomial. On a CPU the logits are fp32 and
# every step is exact; on a GPU each exp is rounded to bf16 before the fp32 sum, an error
# (<= 2^-9 of each probability) far below that of the bf16 logits themselves.


def log_normaliser(logits: torch.Tensor) -> torch.Tensor:
    """(P,) fp32 log of the softmax denominator of (P, V) logits, in one max and one exp-sum
    pass over them (no fp32 copy of bf16 logits)."""
    import torch

    if logits.dtype in (torch.float32, torch.float64):
        return torch.logsumexp(logits, dim=-1).float()
    top = logits.amax(dim=-1, keepdim=True)
    total = (logits - top).exp_().sum(dim=-1, dtype=torch.float32)
    return top.squeeze(-1).float() + total.log()


def topk_targets(logits: torch.Tensor, k: int, vocab_size: int) -> SparseTargets:
    """The k most likely ids per position of (P, V) logits, and the mass of the rest."""
    import torch

    top_l, top_i = logits.topk(k, dim=-1)
    top_p = torch.exp(top_l.float() - log_normaliser(logits)[:, None])
    tail = (1.0 - top_p.sum(-1)).clamp_min(0.0)
    return SparseTargets(
        "topk",
        ids=top_i.cpu().numpy().astype(id_dtype(vocab_size)),
        values=top_p.cpu().numpy().astype(np.float16),
        tail=tail.cpu().numpy().astype(np.float16),
    )


def sample_ids(logits: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
    """(P, S) ids drawn independently from softmax(logits) by inverse-CDF sampling: u ~ U(0, 1)
    scaled by each row's total, then the first id whose cumulative mass exceeds it. A given
    generator state gives the same draws; an id of zero probability is never drawn."""
    import torch

    mass = (logits - logits.amax(dim=-1, keepdim=True)).exp_()  # one (P, V) buffer, in place
    if mass.dtype == torch.float32:
        cdf = mass.cumsum_(dim=-1)
    else:  # bf16/fp16 terms, accumulated in fp32
        cdf = torch.cumsum(mass, dim=-1, dtype=torch.float32)
    u = torch.rand(
        (logits.shape[0], samples), generator=generator, device=logits.device, dtype=torch.float32
    )
    total = cdf[:, -1:]
    # strictly below the total, so the id found always has mass (u * total may round up to it)
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True)


def count_ids(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, S) draws -> each row's distinct ids in ascending order and their counts, rows back
    to back, and the number of distinct ids per row. A sort of S values per row, no global one."""
    import torch

    d = draws.sort(dim=-1).values
    first = torch.ones_like(d, dtype=torch.bool)
    first[:, 1:] = d[:, 1:] != d[:, :-1]  # a new id starts here (every row starts one)
    starts = first.flatten().nonzero().squeeze(1)
    ends = torch.cat([starts[1:], starts.new_tensor([d.numel()])])
    return d.flatten()[starts], ends - starts, first.sum(dim=-1)


def sampled_targets(
    logits: torch.Tensor, samples: int, vocab_size: int, generator: torch.Generator
) -> SparseTargets:
    """S draws per position from softmax(logits); distinct ids with their counts."""
    if not 1 <= samples <= 255:
        raise ValueError("samples must be in 1..255 (counts are stored as uint8)")
    ids, counts, lengths = count_ids(sample_ids(logits, samples, generator))
    return SparseTargets(
        "sampled",
        ids=ids.cpu().numpy().astype(id_dtype(vocab_size)),
        values=counts.cpu().numpy().astype(np.uint8),
        lengths=lengths.cpu().numpy().astype(np.uint8),
        samples=samples,
    )


def concat(parts: list[SparseTargets]) -> SparseTargets:
    first = parts[0]
    kinds = {(p.mode, p.samples) for p in parts}
    if len(kinds) > 1:  # counts over different S cannot share one normaliser
        raise LogitCacheError(f"cannot mix targets of different kinds: {sorted(kinds, key=str)}")
    if first.mode == "topk":
        return SparseTargets(
            "topk",
            ids=np.concatenate([p.ids for p in parts]),
            values=np.concatenate([p.values for p in parts]),
            tail=np.concatenate([p.tail for p in parts]),  # type: ignore[misc]
        )
    return SparseTargets(
        "sampled",
        ids=np.concatenate([p.ids for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        lengths=np.concatenate([p.lengths for p in parts]),  # type: ignore[misc]
        samples=first.samples,
    )


# --------------------------------------------------------------------------- storage
def shard_dir(root: Path, index: int) -> Path:
    return root / f"shard-{index:05d}"


def shard_complete(root: Path, index: int) -> bool:
    return (shard_dir(root, index) / COMPLETE).exists()


def write_shard(root: Path, index: int, targets: SparseTargets) -> dict[str, Any]:
    """Write one shard atomically: files into `<shard>.partial`, fsync, rename, marker last.

    Whatever fails (a full disk included) leaves no shard behind that looks complete.
    """
    final = shard_dir(root, index)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    arrays = {"ids": targets.ids, "values": targets.values}
    arrays |= {"tail": targets.tail} if targets.mode == "topk" else {"lengths": targets.lengths}
    try:
        partial.mkdir(parents=True)
        digests = {}
        for name, array in arrays.items():
            path = partial / f"{name}.npy"
            with open(path, "wb") as f:
                np.save(f, np.ascontiguousarray(array))
                f.flush()
                os.fsync(f.fileno())
            digests[path.name] = _sha256(path)
        done = {"positions": targets.positions, "files": digests}
        marker = partial / COMPLETE
        marker.write_text(json.dumps(done, indent=1))
        _fsync_path(marker)
        shutil.rmtree(final, ignore_errors=True)  # a leftover without a marker
        os.rename(partial, final)
        _fsync_path(root)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise LogitCacheError(f"could not write shard {index} in {root}: {e}") from e
    return done


def read_shard(root: Path, index: int, manifest: dict[str, Any]) -> SparseTargets:
    d = shard_dir(root, index)
    if not (d / COMPLETE).exists():
        raise LogitCacheError(f"shard {index} of {root} is not complete")

    def load(name: str) -> np.ndarray:
        return np.load(d / f"{name}.npy", mmap_mode="r")

    if manifest["mode"] == "topk":
        return SparseTargets("topk", ids=load("ids"), values=load("values"), tail=load("tail"))
    return SparseTargets(
        "sampled",
        ids=load("ids"),
        values=load("values"),
        lengths=load("lengths"),
        samples=manifest["params"]["samples"],
    )


def verify_shard(root: Path, index: int) -> bool:
    """Do the shard's files still match the checksums in its marker?"""
    d = shard_dir(root, index)
    try:
        done = json.loads((d / COMPLETE).read_text())
    except (OSError, ValueError):
        return False
    return all(_sha256(d / name) == digest for name, digest in done["files"].items())


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / MANIFEST).read_text())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
