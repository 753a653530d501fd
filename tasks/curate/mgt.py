"""Machine-generated text: statistics of a scoring LM's view of a text (`mgt_score`).

One forward pass of the scoring LM (and of a second one, the performer, when configured)
gives every statistic `dedup.mgt.method` can pick (`text_features`); higher = more
machine-like for each. The two that matter most:

Fast-DetectGPT's analytic sampling discrepancy (Bao et al., ICLR 2024). For each token x_t,
compare its log-probability with what the model expects of its own samples there:

    d(x) = sum_t (log p(x_t | x_<t) - mu_t) / sqrt(sum_t sigma_t^2)
    mu_t = E_{y ~ p(.|x_<t)} log p(y | x_<t)          (minus the entropy)
    sigma_t^2 = Var_{y ~ p(.|x_<t)} log p(y | x_<t)

Text the model would write itself scores around 0; human text picks less likely tokens and
scores lower.

Binoculars (Hans et al., ICML 2024), the default:

    B(x) = log PPL_performer(x) / X-PPL(x)
    X-PPL(x) = mean_t  -sum_v p_observer(v | x_<t) log p_performer(v | x_<t)

(as the authors' code computes it); with one LM, observer = performer and X-PPL is its
entropy. Machine text has a low perplexity *for its entropy*, so `mgt_score` = -B. Two models
must share a tokenizer (checked: same vocabulary). Also: log-rank, mean log-probability (the
baseline), entropy, and `stack`, a logistic model over all of them (`load_stacker`).

Each text can be scored after a prefix (`dedup.mgt.prefix: auto`: the scoring model's
assistant header), so an instruct model judges it as its own reply.

`threshold_for_fpr` turns scores of human-written reference text into a threshold with a
target false-positive rate (`llm4all calibrate`). `tasks.curate.scores.row_scores` applies
the score in `curate` and `score`; `bench/mgt.py` measures every method on held-out text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from tasks.curate.mgt_config import MgtConfig
    from tasks.factcheck.stack import Stacker

# `score_texts` methods: each names a `text_features` statistic, or "stack" (`load_stacker`).
ONE_MODEL_FEATURES = ("fast_detectgpt", "binoculars", "log_rank", "log_prob", "entropy")
TWO_MODEL_FEATURES = ("binoculars_swapped", "performer_log_prob", "performer_fast_detectgpt")
METHODS = (*ONE_MODEL_FEATURES, *TWO_MODEL_FEATURES, "stack")
# Every feature is oriented "higher = more machine-like", so a stacker may only weigh it up
# (stack.fit's `signs`); the word count is free. Fitted without bounds on a few hundred texts,
# entropy and log-rank got negative weights (bench/results/mgt_cpu_rerun_2026-12-01.txt): the
# fit leaned on correlations among the features that need not hold on other text.
STACKER_SIGNS = {name: 1 for name in (*ONE_MODEL_FEATURES, *TWO_MODEL_FEATURES)}


class MgtError(ValueError):
    """Bad input to the machine-text scorer or its calibration (the message says what)."""


def _token_stats(logits: torch.Tensor, tokens: torch.Tensor) -> tuple:
    """Per position: log-probabilities (B, T, V), their exp, the text token's log-probability,
    mu (expected log-probability = minus the entropy), its variance, the token's rank (0 = top)."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.exp()
    token_logp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mu = (probs * logp).sum(-1)
    var = (probs * logp.square()).sum(-1) - mu.square()
    rank = (logp > token_logp.unsqueeze(-1)).sum(-1)
    return logp, probs, token_logp, mu, var, rank


def text_features(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    performer_logits: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per sequence, every statistic `score_texts` can score by (higher = more machine-like
    for each; `logits[:, t]` must be the distribution for `tokens[:, t]`, counted where `mask`
    is 1). One log-softmax per model serves all of them:

      fast_detectgpt   d(x) above
      binoculars       -B(x); without a performer, observer = performer (X-PPL = entropy)
      log_rank         minus the mean log(1 + rank) of the text's tokens (Mitchell et al. 2023)
      log_prob         mean token log-probability (the trivial baseline every detector must beat)
      entropy          minus the mean predictive entropy
    and with a performer: binoculars_swapped (the two roles exchanged), performer_log_prob,
    performer_fast_detectgpt."""
    m = mask.float()
    n = m.sum(-1).clamp_min(1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * m).sum(-1) / n

    def discrepancy(token_logp, mu, var) -> torch.Tensor:
        spread = (var.clamp_min(0) * m).sum(-1).clamp_min(1e-12).sqrt()
        return ((token_logp - mu) * m).sum(-1) / spread

    logp, probs, token_logp, mu, var, rank = _token_stats(logits, tokens)
    f = {
        "fast_detectgpt": discrepancy(token_logp, mu, var),
        "binoculars": mean(token_logp) / mean(-mu).clamp_min(1e-12),
        "log_rank": -mean(rank.float().log1p()),
        "log_prob": mean(token_logp),
        "entropy": mean(mu),
    }
    if performer_logits is not None:
        q_logp, q_probs, q_token_logp, q_mu, q_var, _ = _token_stats(performer_logits, tokens)
        x_ent = mean(-(probs * q_logp).sum(-1))  # observer's distribution, performer's log-probs
        x_ent_swapped = mean(-(q_probs * logp).sum(-1))
        f["binoculars"] = mean(q_token_logp) / x_ent.clamp_min(1e-12)
        f["binoculars_swapped"] = mean(token_logp) / x_ent_swapped.clamp_min(1e-12)
        f["performer_log_prob"] = mean(q_token_logp)
        f["performer_fast_detectgpt"] = discrepancy(q_token_logp, q_mu, q_var)
    return f


def sampling_discrepancy(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """d(x) per sequence from (B, T, V) logits predicting `tokens` (B, T) where `mask` is 1.

    `logits[:, t]` must be the distribution for `tokens[:, t]` (shift before calling).
    """
    return text_features(logits, tokens, mask)["fast_detectgpt"]


def binoculars(
    observer_logits: torch.Tensor,
    performer_logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """-B(x) per sequence (higher = more machine-like); logits aligned as in
    `sampling_discrepancy`. With observer = performer, X-PPL is the model's entropy."""
    return text_features(observer_logits, tokens, mask, performer_logits)["binoculars"]


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


def assistant_header(tokenizer) -> str:
    """What an instruct model's chat template puts before its reply ("<|im_start|>assistant\n"
    for SmolLM2), or "" when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return ""
    turn = [{"role": "user", "content": "x"}]
    try:
        asked = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
        said = tokenizer.apply_chat_template(turn, add_generation_prompt=False, tokenize=False)
    except Exception:  # a template that needs more than one user turn: no header
        return ""
    return asked[len(said) :] if asked.startswith(said) else ""


def resolve_prefix(prefix: str, tokenizer) -> str:
    """`dedup.mgt.prefix` as text: "auto" is the scoring model's assistant header."""
    return assistant_header(tokenizer) if prefix == "auto" else prefix


def features_of_texts(
    texts: list[str],
    model: PreTrainedModel,
    tokenizer,
    *,
    max_tokens: int = 256,
    batch_size: int = 8,
    min_tokens: int = 2,
    performer: PreTrainedModel | None = None,
    prefix: str = "",
    progress: bool = False,
) -> list[dict[str, float] | None]:
    """`text_features` of each text (plus `n_words`), or None for a text with fewer than
    `min_tokens` tokens (too short to score: the statistics are noise on a handful of tokens).

    `prefix` goes before every text, unscored ("auto": the model's assistant header, so an
    instruct model scores the text as its own reply); the text's first token is scored then.

    Texts are batched in order of length, so a batch pads to its own longest text rather than
    to the longest of the file; the bar counts texts/s."""
    import torch
    from tqdm.auto import tqdm

    min_tokens = max(min_tokens, 2)
    device = next(model.parameters()).device
    enc = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in texts]
    prefix = resolve_prefix(prefix, tokenizer)
    head = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    out: list[dict[str, float] | None] = [None] * len(texts)
    todo = sorted(
        (i for i, ids in enumerate(enc) if len(ids) >= min_tokens), key=lambda i: len(enc[i])
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(texts), desc="mgt score", unit=" texts", disable=not progress)
    bar.update(len(texts) - len(todo))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        width = len(head) + max(len(enc[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            row = head + enc[i]
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            attn[r, : len(row)] = 1
        ids, attn = ids.to(device), attn.to(device)
        # Scored: every text token after the first, or every one after a prefix.
        first = max(len(head), 1)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attn).logits[:, first - 1 : -1]
            perf = None
            if performer is not None:
                perf = performer(input_ids=ids, attention_mask=attn).logits[:, first - 1 : -1]
                perf = perf.to(logits.device)
            feats = text_features(logits, ids[:, first:], attn[:, first:], perf)
        for r, i in enumerate(batch):
            out[i] = {name: float(v[r]) for name, v in feats.items()}
            out[i]["n_words"] = float(len(texts[i].split()))
        bar.update(len(batch))
    bar.close()
    return out


def score_texts(
    texts: list[str],
    model: PreTrainedModel,
    tokenizer,
    *,
    max_tokens: int = 256,
    batch_size: int = 8,
    min_tokens: int = 2,
    performer: PreTrainedModel | None = None,
    method: str | None = None,
    stacker: Stacker | None = None,
    prefix: str = "",
    progress: bool = False,
) -> list[float]:
    """`mgt_score` of each text by `method` (a `text_features` name, or `stack`: the
    stacker's probability that the text is machine-written; None: `binoculars`). Texts too
    short to score get NaN."""
    method = method or "binoculars"
    if method == "stack" and stacker is None:
        raise MgtError("method 'stack' needs a stacker")
    known = (*ONE_MODEL_FEATURES, *(TWO_MODEL_FEATURES if performer is not None else ()), "stack")
    if method not in known:  # before the forward passes, not after them
        raise MgtError(f"unknown machine-text method {method!r} (or it needs a performer)")
    feats = features_of_texts(
        texts, model, tokenizer, max_tokens=max_tokens, batch_size=batch_size,
        min_tokens=min_tokens, performer=performer, prefix=prefix, progress=progress,
    )  # fmt: skip
    scored = [f for f in feats if f is not None]
    if not scored:
        return [math.nan] * len(texts)
    if method == "stack":
        values = iter(stacker.predict(scored).tolist())
    else:
        values = iter(f[method] for f in scored)
    return [math.nan if f is None else next(values) for f in feats]


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


@dataclass
class MgtScorer:
    """The machine-text scorer a config asks for (`load_scorer`): `score` gives `mgt_score`."""

    model: PreTrainedModel
    tokenizer: Any
    performer: PreTrainedModel | None
    method: str
    stacker: Stacker | None
    cfg: MgtConfig

    def score(self, texts: list[str], progress: bool = False) -> list[float]:
        """`mgt_score` per text (NaN: fewer than `min_tokens` tokens)."""
        return score_texts(
            texts, self.model, self.tokenizer, max_tokens=self.cfg.max_tokens,
            batch_size=self.cfg.batch_size, min_tokens=self.cfg.min_tokens,
            performer=self.performer, method=self.method, stacker=self.stacker,
            prefix=self.cfg.prefix, progress=progress,
        )  # fmt: skip


def load_stacker(path: str | Path | None, performer: bool) -> Stacker:
    """The stacker at `path`. Raises MgtError when there is none or it needs features that
    this scorer cannot compute (a performer's, without one)."""
    from tasks.factcheck.stack import Stacker

    if not path:
        raise MgtError("method 'stack' needs a stacker file: set dedup.mgt.stacker")
    path = Path(path)
    if not path.is_file():
        raise MgtError(f"no machine-text stacker at {path}")
    try:
        stacker = Stacker.load(path)
    except (ValueError, TypeError) as e:  # not JSON, or not a stacker's fields
        raise MgtError(f"{path} is not a machine-text stacker file: {e}") from None
    known = (
        set(ONE_MODEL_FEATURES) | {"n_words"} | (set(TWO_MODEL_FEATURES) if performer else set())
    )
    missing = sorted(set(stacker.features) - known)
    if missing:
        raise MgtError(
            f"the stacker {path} needs {', '.join(missing)}"
            + ("" if performer else ": set dedup.mgt.performer")
        )
    return stacker


def load_scorer(cfg: MgtConfig, teacher) -> MgtScorer:
    """The scorer for `cfg`; the scoring LM defaults to `teacher` (a ModelSpec). Raises
    MgtError when Binoculars' two models do not match or the method cannot run."""
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec

    spec = ModelSpec(path=cfg.model) if cfg.model else teacher
    if spec is None:
        raise MgtError("the machine-text score needs an LM: set dedup.mgt.model or teacher")
    method = cfg.method or "binoculars"
    if method in TWO_MODEL_FEATURES and not cfg.performer:
        raise MgtError(f"method {method!r} needs a second LM: set dedup.mgt.performer")
    stacker = load_stacker(cfg.stacker, bool(cfg.performer)) if method == "stack" else None
    model, tokenizer = load_causal_lm(spec), load_tokenizer(spec)
    performer = None
    if cfg.performer:
        p_spec = ModelSpec(path=cfg.performer)
        performer = load_causal_lm(p_spec, str(next(model.parameters()).device))
        check_same_tokenizer(tokenizer, load_tokenizer(p_spec), model, performer)
    return MgtScorer(model, tokenizer, performer, method, stacker, cfg)
