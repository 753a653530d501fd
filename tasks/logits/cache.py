"""Cache the teacher's distributions over a tokens snapshot, shard by shard, resumably.

The work happens in `<home>/work/logits/<dataset>/<tokens version>-<cache key>/`, where the key
hashes the teacher, its tokenizer, the tokens snapshot and the cache parameters. Each shard is
written whole (models.logit_cache.write_shard) with a completion marker; a rerun after a kill
finds the same folder, skips complete shards and ends with the same bytes as an uninterrupted
run. When every shard is there, the folder becomes a `logits` snapshot in one catalog
transaction. A cache is refused, not mixed, when the teacher's tokenizer is not the one the
tokens were made with, and — before any shard is written — when the teacher at that path is not
the model (vocabulary, tokenizer) the dataset's other caches from it were made with (the logits
gate's compatibility check). Tokens superseded by curation are not cached.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from tqdm.auto import tqdm

from data_quality import GatesConfig, gate
from models.loading import load_causal_lm, load_tokenizer, model_vocab_size, tokenizer_sha256
from models.loading_config import ModelSpec
from models.logit_cache import (
    MANIFEST,
    LogitCacheError,
    concat,
    empty_targets,
    sampled_targets,
    shard_complete,
    slice_positions,
    topk_targets,
    write_shard,
)
from tasks.logits.config import LogitCacheConfig
from tasks.logits.pending import cache_key, cached_keys
from tasks.logits.summaries import SUMMARIES, fill_summaries
from tasks.runtime import current_flow_run_id
from tasks.tokens.pending import trainable_tokens
from warehouse import Catalog, DatasetRef, StagedSnapshot, VersionInfo, validate_name
from warehouse.files import atomic_write_text
from warehouse.lock import WriterLock

log = logging.getLogger(__name__)


@dataclass
class LogitsResult:
    dataset: str
    refs: list[DatasetRef]
    skipped: list[str]  # tokens versions that already had this cache
    positions: int
    seconds: float
    bytes_per_token: float | None

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["refs"] = [r.to_dict() for r in self.refs]
        return d


def cache_logits(
    dataset: str, catalog: Catalog, teacher: ModelSpec, cfg: LogitCacheConfig | None = None,
    gates: GatesConfig | None = None,
    *, flow_run_id: str | None = None, progress: bool = True,
) -> LogitsResult:  # fmt: skip
    """Cache logits for every trainable tokens version of `dataset` that lacks this cache."""
    cfg = cfg or LogitCacheConfig()
    validate_name(dataset)
    started = time.monotonic()
    tokens = trainable_tokens(catalog, dataset)
    if not tokens:
        raise LogitCacheError(f"no tokens snapshot of {dataset!r} has passed its gate")
    tokenizer = load_tokenizer(teacher)
    tok_hash = tokenizer_sha256(tokenizer)
    for v in tokens:
        if v.meta.get("tokenizer_sha256") != tok_hash:
            raise LogitCacheError(
                f"{v.ref.key} was tokenized with another tokenizer "
                f"({v.meta.get('teacher')}, {str(v.meta.get('tokenizer_sha256'))[:12]}) than "
                f"the teacher {teacher.path} ({tok_hash[:12]}): re-tokenize, do not mix"
            )
    existing = cached_keys(catalog, dataset)
    todo = [v for v in tokens if cache_key(teacher, tok_hash, v.ref, cfg) not in existing]
    skipped = [v.ref.key for v in tokens if v not in todo]
    refs: list[DatasetRef] = []
    positions = 0
    total_bytes = 0
    if todo:
        model = load_causal_lm(teacher, cfg.device)
        vocab = model_vocab_size(model)
        planned = {
            "dataset": dataset, "teacher": teacher.path, "vocab_size": vocab,
            "tokenizer_sha256": tok_hash,
            "target": f"logits/{dataset} (this run: {teacher.path}, vocabulary {vocab})",
        }  # fmt: skip
        gate("logits", None, catalog, gates, run=planned)  # before any shard is written
        for v in todo:
            ref, nbytes = _cache_version(
                v, catalog, model, vocab, teacher, tok_hash, cfg, flow_run_id, progress
            )
            refs.append(ref)
            positions += ref.rows
            total_bytes += nbytes
    return LogitsResult(
        dataset,
        refs,
        skipped,
        positions,
        round(time.monotonic() - started, 3),
        round(total_bytes / positions, 2) if positions else None,
    )


def _cache_version(
    tokens: VersionInfo,
    catalog: Catalog,
    model: Any,
    vocab: int,
    teacher: ModelSpec,
    tok_hash: str,
    cfg: LogitCacheConfig,
    flow_run_id: str | None,
    progress: bool,
) -> tuple[DatasetRef, int]:
    table = pq.read_table(tokens.ref.files(), columns=["input_ids", "split"], partitioning=None)
    block_size = int(tokens.meta["block_size"])
    ids = np.asarray(table.column("input_ids").combine_chunks().flatten(), dtype=np.int64)
    blocks = ids.reshape(-1, block_size)
    wanted = np.ones(len(blocks), bool)
    if not cfg.held_out:
        wanted = np.asarray(table.column("split").to_pylist()) == "train"
    if len(blocks) == 0:
        raise LogitCacheError(f"{tokens.ref.key} has no blocks to cache")
    if int(blocks.max()) >= vocab:
        raise LogitCacheError(
            f"{tokens.ref.key} holds token id {int(blocks.max())}, beyond the teacher's "
            f"vocabulary of {vocab}: the tokenizer does not match the model"
        )
    key = cache_key(teacher, tok_hash, tokens.ref, cfg)
    work = catalog.home / "work" / "logits" / tokens.ref.name / f"v{tokens.ref.version}-{key}"
    work.mkdir(parents=True, exist_ok=True)
    with WriterLock(work.parent, name=f"{work.name}.lock"):  # one process per cache folder
        shards = _fill_shards(work, blocks, wanted, model, vocab, cfg, tokens.ref.key, progress)
        summaries = None
        if cfg.summaries:
            summaries = fill_summaries(
                work / SUMMARIES, tokens, catalog, model, load_tokenizer(teacher), vocab, cfg,
                progress,
            )  # fmt: skip
        nbytes = sum(
            (work / f"shard-{s:05d}" / name).stat().st_size
            for s, shard in enumerate(shards)
            for name in shard["files"]
        )
        manifest = {
            "teacher": teacher.path,
            "tokenizer_sha256": tok_hash,
            "tokens": tokens.ref.key,
            "tokens_sha256": tokens.ref.sha256,
            "cache_key": key,
            "mode": cfg.mode,
            "params": cfg.params(),
            "vocab_size": vocab,
            "id_dtype": "uint16" if vocab <= 2**16 else "uint32",
            "block_size": block_size,
            "blocks": len(blocks),
            "positions": len(blocks) * block_size,
            "shard_blocks": cfg.shard_blocks,
            "shards": shards,
            "bytes": nbytes,
            "held_out_targets": cfg.held_out,
        }
        if summaries is not None:
            manifest["summaries"] = summaries
        write_manifest(work, manifest)
        meta = manifest | {"bytes_per_token": round(nbytes / manifest["positions"], 2)}
        with catalog.writing(), catalog.transaction() as tx:
            ref = tx.publish(
                StagedSnapshot("logits", tokens.ref.name, work),
                parent=tokens.ref.key,
                flow_run_id=flow_run_id,
                meta=meta,
                rows=manifest["positions"],
            )
    log.info(
        "logits %s: %d positions, %.1f bytes/token (%s)",
        ref.key,
        ref.rows,
        meta["bytes_per_token"],
        cfg.mode,
    )
    return ref, nbytes


def _fill_shards(
    work: Path,
    blocks: np.ndarray,
    wanted: np.ndarray,
    model: Any,
    vocab: int,
    cfg: LogitCacheConfig,
    what: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Compute and write every shard not yet complete; return each shard's marker."""
    import torch

    from models.losses import to_device

    n_shards = math.ceil(len(blocks) / cfg.shard_blocks)
    device = next(model.parameters()).device
    done_before = sum(shard_complete(work, s) for s in range(n_shards))
    if done_before:
        log.info("resuming %s: %d of %d shards already complete", work.name, done_before, n_shards)
    block_size = blocks.shape[1]
    bar = tqdm(
        total=len(blocks) * block_size,
        initial=min(done_before * cfg.shard_blocks, len(blocks)) * block_size,
        unit=" tok",
        unit_scale=True,
        desc=f"logits {what}",
        disable=not progress,
    )
    shards = []
    for s in range(n_shards):
        lo, hi = s * cfg.shard_blocks, min((s + 1) * cfg.shard_blocks, len(blocks))
        if shard_complete(work, s):
            shards.append(json.loads((work / f"shard-{s:05d}" / "COMPLETE.json").read_text()))
            continue
        parts = []
        todo = [b for b in range(lo, hi) if wanted[b]]  # the others get no target
        targets = {}
        for i in range(0, len(todo), cfg.batch_blocks):
            chosen = todo[i : i + cfg.batch_blocks]
            batch = to_device(torch.from_numpy(blocks[chosen]), device)
            with torch.inference_mode():
                logits = model(input_ids=batch).logits[..., :vocab].flatten(0, 1)
            if cfg.mode == "topk":
                t = topk_targets(logits, cfg.k, vocab)
            else:
                g = torch.Generator(device=device).manual_seed(_seed(cfg.seed, s, chosen[0]))
                t = sampled_targets(logits, cfg.samples, vocab, g)
            for j, b in enumerate(chosen):
                targets[b] = slice_positions(t, j * block_size, (j + 1) * block_size)
            bar.update(batch.numel())
        empty = empty_targets(cfg.mode, block_size, vocab, cfg.k, cfg.samples)
        parts = [targets.get(b, empty) for b in range(lo, hi)]
        bar.update((hi - lo - len(todo)) * block_size)
        shards.append(write_shard(work, s, concat(parts)))
    bar.close()
    return shards


def _seed(seed: int, shard: int, block: int) -> int:
    """A seed per batch that depends only on where the batch is: resume-proof sampling."""
    return (seed * 1_000_003 + shard * 10_007 + block) % (2**63)


@task(name="cache-teacher-logits", task_run_name="teacher logits {dataset}", cache_policy=NO_CACHE)
def cache_teacher_logits(
    dataset: str,
    home: str,
    teacher: ModelSpec,
    cfg: LogitCacheConfig,
    gates: GatesConfig | None = None,
) -> LogitsResult:
    """Cache sparse teacher distributions for new tokens snapshots (see `cache_logits`)."""
    return cache_logits(
        dataset, Catalog(Path(home)), teacher, cfg, gates, flow_run_id=current_flow_run_id()
    )


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """The cache folder's manifest (teacher, tokenizer, parameters, shards), atomically."""
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
