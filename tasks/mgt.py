"""Machine-generated text: Fast-DetectGPT's analytic sampling discrepancy (Bao et al., ICLR 2024).

One scoring LM, no training data. For each token x_t of a text, compare its log-probability
under the model with what the model expects of its own samples at that position:

    d(x) = sum_t (log p(x_t | x_<t) - mu_t) / sqrt(sum_t sigma_t^2)
    mu_t = E_{y ~ p(.|x_<t)} log p(y | x_<t)          (minus the entropy)
    sigma_t^2 = Var_{y ~ p(.|x_<t)} log p(y | x_<t)

Text the model would write itself scores around 0 (its tokens are typical samples); human
text picks less likely tokens and scores lower. Higher = more machine-like, so `mgt_score` =
d(x) as is. Both moments come from one forward pass — no perturbations, no second model.

`tasks.curate.row_scores` applies it in `curate` and `score` (`dedup.mgt`). Still open:
calibrating the threshold on human text, a down-weight column, Binoculars.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def sampling_discrepancy(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """d(x) per sequence from (B, T, V) logits predicting `tokens` (B, T) where `mask` is 1.

    `logits[:, t]` must be the distribution for `tokens[:, t]` (shift before calling).
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.exp()
    token_logp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mu = (probs * logp).sum(-1)
    var = (probs * logp.square()).sum(-1) - mu.square()
    m = mask.float()
    num = ((token_logp - mu) * m).sum(-1)
    den = (var.clamp_min(0) * m).sum(-1).clamp_min(1e-12).sqrt()
    return num / den


def score_texts(
    texts: list[str],
    model: PreTrainedModel,
    tokenizer,
    *,
    max_tokens: int = 256,
    batch_size: int = 8,
) -> list[float]:
    """`mgt_score` of each text; texts shorter than 2 tokens get NaN (nothing to score)."""
    import torch

    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        enc = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in batch]
        width = max((len(ids) for ids in enc), default=0)
        if width < 2:
            scores += [math.nan] * len(batch)
            continue
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(enc):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attn[i, : len(row)] = 1
        ids, attn = ids.to(device), attn.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attn).logits
        d = sampling_discrepancy(logits[:, :-1], ids[:, 1:], attn[:, 1:])
        for i, row in enumerate(enc):
            scores.append(float(d[i]) if len(row) >= 2 else math.nan)
    return scores
