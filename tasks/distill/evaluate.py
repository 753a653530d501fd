"""How good and how small a student is, next to its teacher, on held-out blocks.

perplexity        exp(mean next-token cross-entropy) over the validation blocks' positions
                  that carry loss (loss_mask of the predicted token), for student and teacher
top1_agreement    share of those positions where the student's argmax is the teacher's
params, bytes     unique parameters (tied weights once) and their bytes in memory
tokens_per_s      greedy generation speed, batch 1, KV cache on (inference)
rouge_l           ROUGE-L F1 (Lin 2004, the rouge-score package) of greedy summaries of test
                  articles against their human summaries, for student and teacher
                  (`summary_rouge`), and how many summaries came out empty or loop
                  (tasks.curate.quality.repetition_reason)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tasks.curate.quality import repetition_reason
from tasks.distill.data import TokenBlocks


@dataclass
class EvalResult:
    blocks: int
    positions: int
    student_ppl: float
    teacher_ppl: float
    ppl_ratio: float  # student / teacher
    top1_agreement: float
    student_params: int
    teacher_params: int
    param_share: float  # student / teacher
    student_bytes: int
    teacher_bytes: int
    student_tokens_per_s: float
    teacher_tokens_per_s: float
    rouge_pairs: int = 0  # held-out pairs summarised (0: no pairs, or not asked)
    student_rouge_l: float | None = None
    teacher_rouge_l: float | None = None
    student_empty_summaries: int | None = None  # of rouge_pairs: generations with no text
    teacher_empty_summaries: int | None = None
    student_looping_summaries: int | None = None  # of rouge_pairs: generations that loop
    teacher_looping_summaries: int | None = None
    rouge_no_repeat_ngram: int = 0  # how the summaries were decoded (0: plain greedy)
    examples: list[dict[str, str]] = field(default_factory=list)  # a few generated summaries

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def count_params(model: torch.nn.Module) -> int:
    """Parameters, each shared tensor (tied embeddings) counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def model_bytes(model: torch.nn.Module) -> int:
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() * p.element_size() for p in unique)


@torch.no_grad()
def compare_on_blocks(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    blocks: TokenBlocks,
    indices: np.ndarray,
    vocab_size: int,
    batch_blocks: int = 8,
) -> dict[str, float]:
    """Held-out perplexity of both models and their top-1 agreement, in one pass."""
    if len(indices) == 0:
        raise ValueError("no held-out (validation) blocks to evaluate on")
    device = next(student.parameters()).device
    sums = {"student": 0.0, "teacher": 0.0, "agree": 0.0, "count": 0.0}
    for model in (student, teacher):
        model.eval()
    for lo in range(0, len(indices), batch_blocks):
        idx = indices[lo : lo + batch_blocks]
        ids = torch.from_numpy(blocks.input_ids[idx]).to(device)
        w = torch.from_numpy(blocks.loss_mask[idx][:, 1:].astype(np.float32)).to(device).reshape(-1)
        labels = ids[:, 1:].reshape(-1)
        argmax = {}
        for name, model in (("student", student), ("teacher", teacher)):
            logits = model(input_ids=ids).logits[:, :-1, :vocab_size].float()
            logits = logits.reshape(-1, vocab_size)
            ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            sums[name] += float((ce * w).sum())
            argmax[name] = logits.argmax(-1)
        sums["agree"] += float(((argmax["student"] == argmax["teacher"]).float() * w).sum())
        sums["count"] += float(w.sum())
    n = sums["count"]
    if n == 0:
        raise ValueError("the validation blocks have no positions that carry loss")
    return {
        "student_ppl": math.exp(sums["student"] / n),
        "teacher_ppl": math.exp(sums["teacher"] / n),
        "top1_agreement": sums["agree"] / n,
        "positions": n,
    }


@torch.no_grad()
def generation_speed(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> float:
    """Greedy tokens per second for one sequence (KV cache on), after one warm-up token."""
    model.eval()
    prompt = prompt.to(next(model.parameters()).device)
    kwargs = {"do_sample": False, "pad_token_id": 0}
    model.generate(input_ids=prompt, max_new_tokens=1, min_new_tokens=1, **kwargs)
    started = time.perf_counter()
    out = model.generate(
        input_ids=prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs
    )
    seconds = time.perf_counter() - started
    return (out.shape[1] - prompt.shape[1]) / seconds


def evaluate_student(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    blocks: TokenBlocks,
    vocab_size: int,
    *,
    max_blocks: int | None = None,
    batch_blocks: int = 8,
    speed_tokens: int = 64,
) -> EvalResult:
    """Everything above on the test blocks (the first `max_blocks` of them): blocks that no
    choice during training (keep-best, early stopping) has seen."""
    val = blocks.test()[:max_blocks]
    scores = compare_on_blocks(student, teacher, blocks, val, vocab_size, batch_blocks)
    prompt = torch.from_numpy(blocks.input_ids[val[0], :16][None])
    s_params, t_params = count_params(student), count_params(teacher)
    return EvalResult(
        blocks=len(val),
        positions=int(scores["positions"]),
        student_ppl=round(scores["student_ppl"], 4),
        teacher_ppl=round(scores["teacher_ppl"], 4),
        ppl_ratio=round(scores["student_ppl"] / scores["teacher_ppl"], 4),
        top1_agreement=round(scores["top1_agreement"], 4),
        student_params=s_params,
        teacher_params=t_params,
        param_share=round(s_params / t_params, 4),
        student_bytes=model_bytes(student),
        teacher_bytes=model_bytes(teacher),
        student_tokens_per_s=round(generation_speed(student, prompt, speed_tokens), 1),
        teacher_tokens_per_s=round(generation_speed(teacher, prompt, speed_tokens), 1),
    )


# --------------------------------------------------------------------------- ROUGE-L
def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokenisation: lower case, runs of [a-z0-9], no stemming."""
    from rouge_score import tokenize

    return tokenize.tokenize(text, None)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (Lin 2004) by the rouge-score package: the longest common subsequence of the
    two token sequences over their lengths (precision, recall, harmonic mean); 0 when empty."""
    from rouge_score import rouge_scorer

    return float(
        rouge_scorer.RougeScorer(["rougeL"]).score(reference, candidate)["rougeL"].fmeasure
    )


def summary_prompt(document: str, template: str, tokenizer: Any, max_tokens: int) -> list[int]:
    """The prompt part of `template` (before {summary}) for `document`, its document cut so
    the whole prompt fits `max_tokens` tokens (tasks/tokens/tokenize.prompt_ids)."""
    from tasks.tokens.tokenize import prompt_ids

    return prompt_ids(document, template, tokenizer, max_tokens)


def summary_text(tokenizer: Any, tokens: list[int]) -> str:
    """A generated summary as text: special tokens dropped, cut at the first blank line."""
    return tokenizer.decode(tokens, skip_special_tokens=True).strip().split("\n\n")[0].strip()


def generate_summaries(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 8,
    no_repeat_ngram: int = 0,
) -> list[str]:
    """Greedy summaries of the prompts (batched, left-padded), up to EOS or a blank line; with
    `no_repeat_ngram` n > 0, no n tokens repeat within a summary (models.generate.greedy)."""
    from models.generate import greedy

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    done = greedy(
        model, prompts, max_new_tokens=max_new_tokens, eos_id=eos, pad_id=pad,
        batch_size=batch_size, no_repeat_ngram_size=no_repeat_ngram,
    )  # fmt: skip
    return [summary_text(tokenizer, g.tokens) for g in done]


def summary_rouge(
    models: dict[str, torch.nn.Module],
    tokenizer: Any,
    pairs: list[tuple[str, str]],
    template: str,
    *,
    max_prompt_tokens: int,
    max_new_tokens: int = 48,
    examples: int = 3,
    no_repeat_ngram: int = 0,
) -> tuple[dict[str, dict[str, float]], list[dict[str, str]]]:
    """Per model, over the (document, reference summary) pairs: mean ROUGE-L F1 against the
    references and how many summaries came out empty (a failure: the model wrote nothing) or
    loop (a failure too: `repetition_reason`); and the generations of the first `examples`
    pairs, with the article's start, to read. Every model decodes the same way."""
    prompts = [summary_prompt(d, template, tokenizer, max_prompt_tokens) for d, _ in pairs]
    texts = {
        name: generate_summaries(
            model, tokenizer, prompts, max_new_tokens, no_repeat_ngram=no_repeat_ngram
        )
        for name, model in models.items()
    }
    n = max(len(pairs), 1)
    scores = {
        name: {
            "rouge_l": round(
                sum(rouge_l(g, r) for g, (_, r) in zip(gen, pairs, strict=True)) / n, 4
            ),
            "empty": sum(not g for g in gen),
            "looping": sum(repetition_reason(g) is not None for g in gen),
        }
        for name, gen in texts.items()
    }
    shown = [
        {"article": d[:400], "reference": r, **{name: texts[name][i] for name in models}}
        for i, (d, r) in enumerate(pairs[:examples])
    ]
    return scores, shown
