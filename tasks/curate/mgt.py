"""Machine-generated text: Fast-DetectGPT's analytic sampling discrepancy (Bao et al., ICLR 2024).

One scoring LM, no training data. For each token x_t of a text, compare its log-probability
under the model with what the model expects of its own samples at that position:

    d(x) = sum_t (log p(x_t | x_<t) - mu_t) / sqrt(sum_t sigma_t^2)
    mu_t = E_{y ~ p(.|x_<t)} log p(y | x_<t)          (minus the entropy)
    sigma_t^2 = Var_{y ~ p(.|x_<t)} log p(y | x_<t)

Text the model would write itself scores around 0 (its tokens are typical samples); human
text picks less likely tokens and scores lower. Higher = more machine-like, so `mgt_score` =
d(x) as is. Both moments come from one forward pass — no perturbations, no second model.

Binoculars (Hans et al., ICML 2024), when a second LM is configured (`dedup.mgt.performer`):

    B(x) = log PPL_performer(x) / X-PPL(x)
    X-PPL(x) = mean_t  -sum_v p_observer(v | x_<t) log p_performer(v | x_<t)

(as the authors' code computes it). Machine text has a low perplexity *for its entropy*: B is
low for machine text, so `mgt_score` = -B (higher = more machine-like, like Fast-DetectGPT).
Both models must share a tokenizer (checked: same vocabulary).

`threshold_for_fpr` turns scores of human-written reference text into a threshold with a
target false-positive rate (`llm4all calibrate`). `tasks.curate.curate.row_scores` applies the score
in `curate` and `score` (`dedup.mgt`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class MgtError(ValueError):
    """Bad input to the machine-text scorer or its calibration (the message says what)."""


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


def binoculars(
    observer_logits: torch.Tensor,
    performer_logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """-B(x) per sequence (higher = more machine-like); logits aligned as in
    `sampling_discrepancy`. With observer = performer, X-PPL is the model's entropy."""
    import torch

    perf_logp = torch.log_softmax(performer_logits.float(), dim=-1)
    obs_p = torch.softmax(observer_logits.float(), dim=-1)
    m = mask.float()
    n = m.sum(-1).clamp_min(1)
    nll = -(perf_logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * m).sum(-1) / n
    x_ent = (-(obs_p * perf_logp).sum(-1) * m).sum(-1) / n
    return -nll / x_ent.clamp_min(1e-12)


def check_same_tokenizer(observer_tokenizer, performer_tokenizer, observer, performer) -> None:
    """Binoculars compares two models' distributions token by token: same vocabulary needed."""
    if observer_tokenizer.get_vocab() != performer_tokenizer.get_vocab():
        raise MgtError(
            "Binoculars needs two models with the same tokenizer: dedup.mgt.model and "
            "dedup.mgt.performer have different vocabularies"
        )
    v_obs = observer.get_output_embeddings().weight.shape[0]
    v_perf = performer.get_output_embeddings().weight.shape[0]
    if v_obs != v_perf:
        raise MgtError(
            f"Binoculars needs models with the same output vocabulary: {v_obs} != {v_perf}"
        )


def score_texts(
    texts: list[str],
    model: PreTrainedModel,
    tokenizer,
    *,
    max_tokens: int = 256,
    batch_size: int = 8,
    min_tokens: int = 2,
    performer: PreTrainedModel | None = None,
    progress: bool = False,
) -> list[float]:
    """`mgt_score` of each text: Fast-DetectGPT with `model`, or Binoculars with `model` as
    observer and `performer`. Texts with fewer than `min_tokens` tokens get NaN (too short
    to score: the statistic is noise on a handful of tokens)."""
    import torch
    from tqdm.auto import tqdm

    min_tokens = max(min_tokens, 2)
    device = next(model.parameters()).device
    scores: list[float] = []
    bar = tqdm(total=len(texts), desc="mgt score", unit=" texts", disable=not progress)
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        enc = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in batch]
        width = max((len(ids) for ids in enc), default=0)
        bar.update(len(batch))
        if width < min_tokens:
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
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
            if performer is None:
                d = sampling_discrepancy(logits, ids[:, 1:], attn[:, 1:])
            else:
                perf = performer(input_ids=ids, attention_mask=attn).logits[:, :-1]
                d = binoculars(logits, perf.to(logits.device), ids[:, 1:], attn[:, 1:])
        for i, row in enumerate(enc):
            scores.append(float(d[i]) if len(row) >= min_tokens else math.nan)
    bar.close()
    return scores


def threshold_for_fpr(human_scores: list[float], target_fpr: float = 0.01) -> float:
    """The lowest threshold that marks at most `target_fpr` of human-written texts as machine
    text (the rule is `mgt_score > threshold`). NaN scores (too short to score) are ignored.

    Needs at least ceil(1 / target_fpr) scored texts: with fewer, not even one human text may
    lie above the threshold and the rate cannot be estimated. Ties are resolved
    conservatively (never more than the target above the threshold)."""
    import numpy as np

    if not 0.0 < target_fpr < 1.0:
        raise MgtError(f"target false-positive rate must be in (0, 1), got {target_fpr}")
    scores = np.asarray([s for s in human_scores if s is not None], dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    need = math.ceil(1 / target_fpr - 1e-9)
    if len(scores) < need:
        raise MgtError(
            f"calibrating at {target_fpr:g} false positives needs at least {need} scored "
            f"human texts; got {len(scores)}"
        )
    desc = np.sort(scores)[::-1]
    k = math.floor(target_fpr * len(scores) + 1e-9)  # human texts allowed above the threshold
    return float(desc[k])


def load_scorer(cfg, teacher) -> tuple:
    """(model, tokenizer, performer or None) for `cfg` (an MgtConfig); the scoring LM defaults
    to `teacher` (a ModelSpec). Raises MgtError when Binoculars' two models do not match."""
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec

    spec = ModelSpec(path=cfg.model) if cfg.model else teacher
    if spec is None:
        raise MgtError("the machine-text score needs an LM: set dedup.mgt.model or teacher")
    model, tokenizer = load_causal_lm(spec), load_tokenizer(spec)
    performer = None
    if cfg.performer:
        p_spec = ModelSpec(path=cfg.performer)
        performer = load_causal_lm(p_spec, str(next(model.parameters()).device))
        check_same_tokenizer(tokenizer, load_tokenizer(p_spec), model, performer)
    return model, tokenizer, performer
