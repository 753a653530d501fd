"""What a student learned, measured on clean held-out test pairs only:

- perplexity of the human summaries given their articles (the summary tokens of the test
  blocks);
- factual preference: the share of test articles where the student gives the faithful
  (human) summary a higher per-token log-likelihood than an unfaithful one (a rule corruption
  of it, `tasks.ablation.corpus.corrupt`), the article cut identically for both;
- ROUGE-L F1 (rouge-score, stemmed) of its greedy summaries against the human ones;
- the machine-text share of those generations under the product's detector (the curation's
  scorer and threshold).
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch

from tasks.ablation.blocks import article_room, render_pair
from tasks.ablation.config import AblationConfig
from tasks.ablation.corpus import corrupt, entity_pool
from tasks.distill.data import TokenBlocks


@torch.no_grad()
def summary_logprobs(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray,
                     batch: int = 16) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(sum of log p over each block's loss-carrying next tokens, their count) per block."""
    model.eval()
    device = next(model.parameters()).device
    sums, counts = [], []
    for lo in range(0, len(ids), batch):
        x = torch.from_numpy(ids[lo : lo + batch]).to(device)
        w = torch.from_numpy(mask[lo : lo + batch, 1:].astype(np.float32)).to(device)
        logits = model(input_ids=x).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None])[..., 0]
        sums.append((lp * w).sum(-1).cpu().numpy())
        counts.append(w.sum(-1).cpu().numpy())
    return np.concatenate(sums), np.concatenate(counts)


def test_perplexity(model: torch.nn.Module, blocks: TokenBlocks, batch: int = 16) -> float:
    """Perplexity of the summary tokens of the test blocks (never seen by any selection)."""
    idx = blocks.test()
    s, n = summary_logprobs(model, blocks.input_ids[idx], blocks.loss_mask[idx], batch)
    return math.exp(-float(s.sum()) / float(n.sum()))


def preference_pairs(
    test: list[dict[str, Any]], tokenizer: Any, cfg: AblationConfig, seed: int = 0
) -> dict[str, Any]:
    """For each test pair that admits a rule corruption: the faithful and the unfaithful
    block, the article cut to the same tokens in both. Corruptions draw their entities from
    the test summaries' own pool."""
    rng = random.Random(seed)
    pool = entity_pool([r["summary"] for r in test])
    ids, masks, kinds = [], [], []
    for r in test:
        made = corrupt(r["summary"], r["text"], pool, rng)
        if made is None:
            continue
        bad = made[0]
        n_art = min(article_room(s, tokenizer, cfg) for s in (r["summary"], bad))
        for s in (r["summary"], bad):
            a, m = render_pair(r["text"], s, tokenizer, cfg, article_tokens=n_art)
            ids.append(a)
            masks.append(m)
        kinds.append(",".join(made[1]))
    return {
        "ids": np.asarray(ids, np.int64).reshape(-1, cfg.block_size),
        "mask": np.asarray(masks, np.uint8).reshape(-1, cfg.block_size),
        "kinds": kinds,
    }


def factual_preference(model: torch.nn.Module, pairs: dict[str, Any], batch: int = 16) -> float:
    """Share of pairs whose faithful summary has the higher mean log-likelihood per token."""
    if len(pairs["kinds"]) == 0:
        return float("nan")
    s, n = summary_logprobs(model, pairs["ids"], pairs["mask"], batch)
    per_token = s / np.maximum(n, 1)
    return float(np.mean(per_token[0::2] > per_token[1::2]))


def summary_prompts(test: list[dict[str, Any]], tokenizer: Any, cfg: AblationConfig) -> list:
    """The prompt part of each test block (article lead + template up to the summary)."""
    out = []
    for r in test:
        ids, mask = render_pair(r["text"], r["summary"], tokenizer, cfg)
        first = int(np.argmax(np.asarray(mask) > 0))
        out.append(ids[:first])
    return out


@torch.no_grad()
def generate_summaries(
    model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], cfg: AblationConfig
) -> list[str]:
    """Greedy summaries (up to `generate_tokens`, cut at EOS or a blank line), batched with
    left padding."""
    model.eval()
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for lo in range(0, len(order), cfg.gen_batch):
        chunk = order[lo : lo + cfg.gen_batch]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for j, i in enumerate(chunk):
            ids[j, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            attn[j, width - len(prompts[i]) :] = 1
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=attn.to(device), do_sample=False,
            max_new_tokens=cfg.generate_tokens, eos_token_id=eos, pad_token_id=pad,
        )  # fmt: skip
        for j, i in enumerate(chunk):
            text = tokenizer.decode(gen[j, width:], skip_special_tokens=True)
            out[i] = text.split("\n\n")[0].strip()
    return out


def rouge_l(generated: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (the rouge-score package, Porter stemming); an empty summary scores 0."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score(ref, gen)["rougeL"].fmeasure if gen.strip() else 0.0
        for gen, ref in zip(generated, references, strict=True)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def machine_share(texts: list[str], scorer: Any, dedup: Any) -> tuple[float, int]:
    """(share of the scorable texts above the machine-text threshold, how many were scorable):
    the curation's own detector (`dedup.mgt`) applied to the student's generations."""
    scores = scorer.score(texts)
    ok = [s for s in scores if s == s]
    if not ok or dedup.mgt.threshold is None:
        return float("nan"), len(ok)
    return float(np.mean([s > dedup.mgt.threshold for s in ok])), len(ok)


def evaluate(
    model: torch.nn.Module, blocks: TokenBlocks, pairs: dict[str, Any], prompts: list,
    references: list[str], tokenizer: Any, cfg: AblationConfig, scorer: Any, dedup: Any,
) -> dict[str, Any]:  # fmt: skip
    """Every figure of one model on the test split."""
    generated = generate_summaries(model, tokenizer, prompts, cfg)
    share, scored = machine_share(generated, scorer, dedup)
    return {
        "ppl": test_perplexity(model, blocks),
        "pref": factual_preference(model, pairs),
        "rouge_l": rouge_l(generated, references),
        "machine_share": share,
        "machine_scored": scored,
        "example": generated[0] if generated else "",
    }
