"""Batched greedy generation: prompts of different lengths, left-padded, one `generate` call
per batch, optionally with the model's logits at every generated step (the teacher's
distributions over its own summaries, for sequence-level KD)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class Generated:
    tokens: list[int]  # the new tokens, up to and including EOS if the model emitted it
    ended: bool  # whether the model emitted EOS (else it ran out of max_new_tokens)
    logits: torch.Tensor | None = None  # (len(tokens), V): the distribution of each new token


def greedy(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    batch_size: int = 8,
    keep_logits: bool = False,
    no_repeat_ngram_size: int = 0,
) -> list[Generated]:
    """Greedy continuations of `prompts` (token ids), `batch_size` at a time. Rows of a batch
    are left-padded (masked), so each continues exactly as it would alone. With
    `no_repeat_ngram_size` n > 0, no n-gram of tokens occurs twice in a continuation
    (`NoRepeatInContinuation`): a token that would repeat one gives way to the next best."""
    import torch
    from transformers import LogitsProcessorList

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[Generated] = []
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo : lo + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, p in enumerate(chunk):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        processors = LogitsProcessorList(
            [NoRepeatInContinuation(no_repeat_ngram_size, width)] if no_repeat_ngram_size else []
        )
        with torch.inference_mode():
            res = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos_id,
                pad_token_id=pad_id,
                return_dict_in_generate=True,
                output_logits=keep_logits,
                logits_processor=processors,
            )
        new = res.sequences[:, width:].cpu()
        steps = torch.stack(res.logits, 1).float().cpu() if keep_logits else None  # (B, S, V)
        for r in range(len(chunk)):
            row = new[r].tolist()
            ended = eos_id in row
            n = row.index(eos_id) + 1 if ended else len(row)
            out.append(
                Generated(row[:n], ended, steps[r, :n].clone() if steps is not None else None)
            )
    model.train(was_training)
    return out


class NoRepeatInContinuation:
    """A logits processor: no n-gram occurs twice in what was generated after position `start`.

    transformers' `no_repeat_ngram_size` counts the prompt too, which for a decoder-only model
    bans every phrase of the article from its summary; this counts the continuation only, as
    `no_repeat_ngram_size` does for an encoder-decoder's decoder (BART's CNN/DM setup, n = 3).
    """

    def __init__(self, n: int, start: int) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, not {n}")
        self.n, self.start = n, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n = self.n
        for row, ids in enumerate(input_ids[:, self.start :].tolist()):
            if len(ids) < n - 1:
                continue
            prefix = ids[len(ids) - n + 1 :]  # the last n-1 tokens: what would be repeated
            banned = [
                ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i : i + n - 1] == prefix
            ]
            if banned:
                scores[row, banned] = -float("inf")
        return scores
