"""One block per (article lead, summary) pair, rendered as the tokens stage renders a pair
(`tasks.tokens.tokenize.render`: the template, the loss on the summary and its EOS), and the
teacher's sparse targets cached once per distinct block (`models.logit_cache`)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from tasks.ablation.config import AblationConfig
from tasks.distill.data import SPLIT_CODES, TokenBlocks
from tasks.logits.config import LogitCacheConfig
from tasks.tokens.config import TokensConfig


def tokens_config(cfg: AblationConfig) -> TokensConfig:
    """The tokens stage's settings for a pair: the product's template, loss on the summary."""
    return TokensConfig(block_size=cfg.block_size, mask_prompt=True)


def render_pair(
    text: str, summary: str, tokenizer: Any, cfg: AblationConfig, article_tokens: int | None = None
) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of one pair in one block: the summary cut to `max_summary_tokens`, the
    article to its first tokens so that the whole fits `block_size` (at most
    `max_article_tokens`, or exactly `article_tokens` when given), padded with EOS under
    mask 0."""
    from tasks.tokens.tokenize import render

    tcfg = tokens_config(cfg)
    summary = cut_summary(summary, tokenizer, cfg)
    a_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if article_tokens is None:
        article_tokens = article_room(summary, tokenizer, cfg)
    ids, mask = render(tokenizer.decode(a_ids[: max(article_tokens, 1)]), summary, tokenizer, tcfg)
    ids, mask = ids[: cfg.block_size], mask[: cfg.block_size]  # decode/encode may add a token
    pad = cfg.block_size - len(ids)
    return ids + [tokenizer.eos_token_id] * pad, mask + [0] * pad


def cut_summary(summary: str, tokenizer: Any, cfg: AblationConfig) -> str:
    """The summary cut to `max_summary_tokens` tokens."""
    ids = tokenizer(summary, add_special_tokens=False)["input_ids"]
    return (
        summary
        if len(ids) <= cfg.max_summary_tokens
        else tokenizer.decode(ids[: cfg.max_summary_tokens])
    )


def article_room(summary: str, tokenizer: Any, cfg: AblationConfig) -> int:
    """Article tokens that fit one block beside this summary (at most max_article_tokens)."""
    from tasks.tokens.tokenize import render

    overhead = len(
        render("", cut_summary(summary, tokenizer, cfg), tokenizer, tokens_config(cfg))[0]
    )
    return max(min(cfg.max_article_tokens, cfg.block_size - overhead - 2), 1)


def heldout_split(row: dict[str, Any], selection_share: float) -> str:
    """`selection` or `test` for a held-out pair, by its content hash (bits 64..95, as
    `tasks.tokens.tokenize.split_of` splits the held-out documents)."""
    digest = hashlib.sha256((row["text"] + "\x1f" + row["summary"]).encode()).hexdigest()
    return "selection" if int(digest[16:24], 16) / 2**32 < selection_share else "test"


def make_blocks(
    corpus: list[dict[str, Any]], heldout: list[dict[str, Any]], tokenizer: Any,
    cfg: AblationConfig,
) -> tuple[TokenBlocks, list[str]]:  # fmt: skip
    """Blocks: the corpus rows (train, cache block i = row i) then the held-out pairs
    (selection | test, no cached targets); and each held-out pair's split."""
    ids, masks, splits = [], [], []
    for r in corpus:
        a, m = render_pair(r["text"], r["summary"], tokenizer, cfg)
        ids.append(a)
        masks.append(m)
        splits.append(SPLIT_CODES["train"])
    held = [heldout_split(r, cfg.selection_share) for r in heldout]
    for r, split in zip(heldout, held, strict=True):
        a, m = render_pair(r["text"], r["summary"], tokenizer, cfg)
        ids.append(a)
        masks.append(m)
        splits.append(SPLIT_CODES[split])
    n = len(ids)
    return (
        TokenBlocks(
            input_ids=np.asarray(ids, np.int64),
            loss_mask=np.asarray(masks, np.uint8),
            split=np.asarray(splits, np.int8),
            source=np.zeros(n, np.int64),
            local=np.arange(n),
            keys=["corpus"],
        ),
        held,
    )


def write_cache(
    root: Path, teacher: Any, ids: np.ndarray, cfg: LogitCacheConfig, progress: bool = True
) -> dict[str, Any]:
    """The teacher's sparse targets of these blocks, laid out as tasks/logits/cache.py lays a
    cache (shards of `shard_blocks`, a manifest), readable by `CacheReader`. Returns the
    manifest (blocks, positions, bytes)."""
    import torch
    from tqdm.auto import tqdm

    from models.logit_cache import concat, sampled_targets, topk_targets, write_shard
    from tasks.logits.cache import write_manifest

    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    device = next(teacher.parameters()).device
    per, shards = cfg.shard_blocks, []
    bar = tqdm(total=ids.size, unit=" tok", unit_scale=True, desc="teacher logits",
               disable=not progress)  # fmt: skip
    nbytes = 0
    for s in range(math.ceil(len(ids) / per)):
        parts = []
        for b in range(s * per, min((s + 1) * per, len(ids)), cfg.batch_blocks):
            hi = min(b + cfg.batch_blocks, (s + 1) * per, len(ids))
            batch = torch.from_numpy(ids[b:hi]).to(device)
            with torch.inference_mode():
                logits = teacher(input_ids=batch).logits[..., :vocab].flatten(0, 1).float()
            if cfg.mode == "topk":
                parts.append(topk_targets(logits, cfg.k, vocab))
            else:
                g = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + b)
                parts.append(sampled_targets(logits, cfg.samples, vocab, g))
            bar.update(batch.numel())
        t = concat(parts)
        nbytes += t.nbytes()
        shards.append(write_shard(root, s, t))
    bar.close()
    manifest = {
        "mode": cfg.mode, "params": cfg.params(), "vocab_size": vocab,
        "block_size": int(ids.shape[1]), "blocks": len(ids), "positions": int(ids.size),
        "shard_blocks": per, "shards": shards, "bytes": nbytes,
    }  # fmt: skip
    write_manifest(root, manifest)
    return manifest
