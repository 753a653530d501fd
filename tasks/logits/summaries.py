"""Sequence-level KD data (Kim & Rush 2016): the teacher's own summaries of training articles.

For a tokens snapshot of document-summary pairs, the teacher writes a greedy summary of each of
its first `logits.summaries` training documents (id order; never a selection or test one),
prompted with the snapshot's own template, the article cut so that prompt and summary fit one
block. Each becomes one block:

    [ prompt (template + article, cut) | teacher's summary (+ EOS if it ended) | padding ]
      loss mask 0                        1                                        0

and the teacher's distribution at each summary position comes from the generation itself (the
logits of each greedy step), stored like the cache's other targets; prompt and padding
positions carry none. A summary that comes out empty (EOS at once, or only blank lines) keeps
its block with no loss: the student is not taught to say nothing.

The blocks live in `<cache>/summaries/`: a manifest like the cache's and shards of
`summary_batch` blocks, each written whole (targets, input_ids, loss_mask, doc ids in its
marker) so that a killed run resumes at the next shard; the logits gate checks them as it
checks the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from models.logit_cache import (
    MANIFEST,
    SparseTargets,
    concat,
    empty_targets,
    sampled_targets,
    shard_complete,
    shard_dir,
    topk_targets,
    write_shard,
)
from tasks.tokens.tokenize import prompt_ids
from warehouse.files import atomic_write_text

if TYPE_CHECKING:
    from tasks.logits.config import LogitCacheConfig
    from warehouse import Catalog, VersionInfo

log = logging.getLogger(__name__)

SUMMARIES = "summaries"


def training_documents(catalog: Catalog, tokens: VersionInfo, limit: int) -> list[tuple[str, str]]:
    """(id, text) of up to `limit` documents with a summary that the snapshot trains on, by id."""
    import duckdb
    import pyarrow.parquet as pq

    config = tokens.meta.get("config") or {}
    if config.get("pairs", "summarize") != "summarize" or limit <= 0:
        return []
    table = pq.read_table(tokens.ref.files(), columns=["split", "doc_ids"], partitioning=None)
    ids = sorted({d for s, docs in zip(table.column("split").to_pylist(),
                                       table.column("doc_ids").to_pylist(), strict=True)
                  if s == "train" for d in docs})  # fmt: skip
    stage, _, rest = str(tokens.meta.get("source", "")).partition("/")
    name, _, version = rest.partition("@")
    if not ids or not version:
        return []
    src = catalog.get(stage, name, int(version)).ref
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT id, text FROM read_parquet(?, hive_partitioning = false) "
            "WHERE summary IS NOT NULL AND length(summary) > 0 AND id IN (SELECT unnest(?)) "
            "ORDER BY id LIMIT ?",
            [[str(f) for f in src.files()], ids, limit],
        ).fetchall()
    finally:
        con.close()
    return [(str(i), str(t)) for i, t in rows]


def summary_block(
    prompt: list[int], new: list[int], steps: SparseTargets, block_size: int, pad: int,
    empty: SparseTargets, has_text: bool,
) -> tuple[np.ndarray, np.ndarray, SparseTargets]:  # fmt: skip
    """One block (ids, loss mask, targets) of a prompt and the teacher's continuation `new`,
    whose per-token distributions are `steps` (position t holds the distribution of t + 1)."""
    n_p, n_s = len(prompt), len(new)
    ids = np.full(block_size, pad, np.int32)
    ids[: n_p + n_s] = prompt + new
    mask = np.zeros(block_size, np.uint8)
    if has_text:
        mask[n_p : n_p + n_s] = 1
    before = _positions(empty, n_p - 1)
    after = _positions(empty, block_size - (n_p - 1) - n_s)
    return ids, mask, concat([before, steps, after])


def _positions(empty: SparseTargets, n: int) -> SparseTargets:
    """The first n positions of `empty` (a block's worth of no-target positions)."""
    from models.logit_cache import slice_positions

    return slice_positions(empty, 0, n)


def fill_summaries(
    work: Path,
    tokens: VersionInfo,
    catalog: Catalog,
    model: Any,
    tokenizer: Any,
    vocab: int,
    cfg: LogitCacheConfig,
    progress: bool,
) -> dict[str, Any]:
    """Write every summaries shard not yet complete under `work`; return the manifest."""
    import torch

    from models.generate import greedy

    block_size = int(tokens.meta["block_size"])
    template = (tokens.meta.get("config") or {}).get("template", "{document}\n\n{summary}")
    docs = training_documents(catalog, tokens, cfg.summaries)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    room = block_size - cfg.summary_max_new_tokens
    if room < 8:
        raise ValueError(f"block_size {block_size} leaves no room for a prompt")
    empty = empty_targets(cfg.mode, block_size, vocab, cfg.k, cfg.samples)
    work.mkdir(parents=True, exist_ok=True)
    per = cfg.summary_batch
    n_shards = -(-len(docs) // per)
    shards, written, ended, blank = [], 0, 0, 0
    bar = tqdm(total=len(docs), unit=" summaries", desc=f"teacher summaries {tokens.ref.key}",
               disable=not progress)  # fmt: skip
    device = next(model.parameters()).device
    for s in range(n_shards):
        chunk = docs[s * per : (s + 1) * per]
        if shard_complete(work, s):
            done = json.loads((shard_dir(work, s) / "COMPLETE.json").read_text())
            shards.append(done)
            ended, blank = ended + done["ended"], blank + done["empty"]
            bar.update(len(chunk))
            continue
        prompts = [prompt_ids(text, template, tokenizer, room) for _, text in chunk]
        out = greedy(
            model, prompts, max_new_tokens=cfg.summary_max_new_tokens, eos_id=eos, pad_id=pad,
            batch_size=per, keep_logits=True,
        )  # fmt: skip
        ids, masks, parts = [], [], []
        n_ended = n_blank = 0
        for j, (prompt, g) in enumerate(zip(prompts, out, strict=True)):
            assert g.logits is not None
            logits = g.logits[:, :vocab].to(device)
            if cfg.mode == "topk":
                steps = topk_targets(logits, cfg.k, vocab)
            else:
                gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + s * 1031 + j)
                steps = sampled_targets(logits, cfg.samples, vocab, gen)
            text = tokenizer.decode(g.tokens, skip_special_tokens=True).strip()
            has_text = bool(text)
            n_ended += g.ended
            n_blank += not has_text
            b_ids, b_mask, b_t = summary_block(prompt, g.tokens, steps, block_size, pad, empty,
                                               has_text)  # fmt: skip
            ids.append(b_ids)
            masks.append(b_mask)
            parts.append(b_t)
        meta = {"docs": [d for d, _ in chunk], "ended": n_ended, "empty": n_blank}
        extra = {"input_ids": np.stack(ids), "loss_mask": np.stack(masks)}
        shards.append(write_shard(work, s, concat(parts), extra, meta))
        ended, blank = ended + n_ended, blank + n_blank
        written += len(chunk)
        bar.update(len(chunk))
    bar.close()
    manifest = {
        "teacher": tokens.meta["teacher"],
        "tokens": tokens.ref.key,
        "mode": cfg.mode,
        "params": cfg.params(),
        "vocab_size": vocab,
        "block_size": block_size,
        "blocks": len(docs),
        "positions": len(docs) * block_size,
        "shard_blocks": per,
        "shards": shards,
        "template": template,
        "documents": len(docs),
        "ended": ended,
        "empty": blank,
    }
    atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    log.info(
        "teacher summaries of %s: %d documents (%d new), %d ended with EOS, %d empty",
        tokens.ref.key, len(docs), written, ended, blank,
    )  # fmt: skip
    return {k: manifest[k] for k in ("blocks", "documents", "ended", "empty", "shard_blocks")}


def read_summary_blocks(root: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(input_ids, loss_mask) of a cache's teacher-summary blocks, in shard order; None when the
    cache has none."""
    folder = Path(root) / SUMMARIES
    if not (folder / MANIFEST).exists():
        return None
    manifest = json.loads((folder / MANIFEST).read_text())
    ids, masks = [], []
    for s in range(len(manifest["shards"])):
        d = shard_dir(folder, s)
        ids.append(np.load(d / "input_ids.npy"))
        masks.append(np.load(d / "loss_mask.npy"))
    if not ids:
        return None
    return np.concatenate(ids).astype(np.int64), np.concatenate(masks)
