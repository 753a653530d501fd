"""Factual consistency of a summary with its document — the cheapest scorer first.

Entity and number precision (Nan et al., EACL 2021): the share of the named entities and
numbers in the summary that also occur in the document. Hallucinated summaries often bring in
a name, a place or a figure the document never mentions; this catches those without any model.

Entities are found without a tagger (none ships offline): runs of capitalised words, minus a
sentence's first word when it is a common word, and numbers normalised (`1,200` -> `1200`,
`3.50` -> `3.5`, number words up to twenty). Matching is case-insensitive on the document's
words and numbers, so "the Obama administration" in the summary finds "Obama" in the document.

`tasks.curate.row_scores` applies it in `curate` and `score` as `factuality_score`. Still
open: the LM score (log p(summary | document) - log p(summary)) and NLI, combined with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w])")
_CAP_RUN = re.compile(r"\b(?:[A-Z][\w'’-]*|[A-Z]\.)(?:\s+(?:[A-Z][\w'’-]*|of|de|la|van|von|al))*")
_WORD = re.compile(r"[\w'’-]+")
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
COMMON_SENTENCE_STARTS = frozenset(
    [
        "the",
        "a",
        "an",
        "it",
        "he",
        "she",
        "they",
        "we",
        "i",
        "this",
        "that",
        "these",
        "those",
        "there",
        "his",
        "her",
        "their",
        "its",
        "in",
        "on",
        "at",
        "for",
        "but",
        "and",
        "or",
        "so",
        "as",
        "after",
        "before",
        "when",
        "while",
        "if",
        "from",
        "with",
        "by",
        "to",
        "of",
    ]
)


@dataclass(frozen=True)
class Precision:
    """How much of the summary's checkable content the document supports."""

    entities: int  # entities + numbers found in the summary
    supported: int  # of those, found in the document
    unsupported: tuple[str, ...]  # the ones that were not, for a person to read

    @property
    def score(self) -> float | None:
        """supported / entities; None when the summary has nothing checkable."""
        return self.supported / self.entities if self.entities else None


def numbers(text: str) -> set[str]:
    found = {_norm_number(m.group()) for m in _NUMBER.finditer(text)}
    found |= {str(NUMBER_WORDS[w]) for w in _WORD.findall(text.lower()) if w in NUMBER_WORDS}
    return found


def entities(text: str) -> set[str]:
    """Capitalised runs, lower-cased; a common word opening a sentence is not an entity."""
    out = set()
    for m in _CAP_RUN.finditer(text):
        words = m.group().split()
        starts_sentence = m.start() == 0 or text[: m.start()].rstrip().endswith((".", "!", "?"))
        if starts_sentence and words[0].lower() in COMMON_SENTENCE_STARTS:
            words = words[1:]
        while words and words[-1] in {"of", "de", "la", "van", "von", "al"}:
            words = words[:-1]
        if words and not all(w.lower() in COMMON_SENTENCE_STARTS for w in words):
            out.add(" ".join(words).lower())
    return out


def entity_precision(document: str, summary: str) -> Precision:
    """Entities and numbers of `summary` that `document` supports."""
    doc_lower = document.lower()
    doc_words = set(_WORD.findall(doc_lower))
    doc_numbers = numbers(document)
    checks: list[tuple[str, bool]] = []
    for ent in sorted(entities(summary)):
        # A multi-word entity counts when the whole run, or every word of it, is in the document.
        ok = ent in doc_lower or all(w in doc_words for w in _WORD.findall(ent))
        checks.append((ent, ok))
    for num in sorted(numbers(summary)):
        checks.append((num, num in doc_numbers))
    missing = tuple(name for name, ok in checks if not ok)
    return Precision(len(checks), len(checks) - len(missing), missing)


def _norm_number(s: str) -> str:
    s = s.replace(",", "").lstrip("+")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def lm_support(
    pairs: list[tuple[str, str]],
    model,
    tokenizer,
    *,
    max_document_tokens: int = 512,
    max_summary_tokens: int = 128,
) -> list[float | None]:
    """How much the document helps the LM predict the summary, per pair:

        mean_t log p(s_t | document, s_<t) - mean_t log p(s_t | s_<t)     (nats per token)

    A summary the document supports becomes much more likely given it; an unfaithful one
    much less so. The document is truncated to its first `max_document_tokens` tokens (the
    lede carries most of what summaries use). None for an empty summary.
    """
    import torch

    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    out: list[float | None] = []
    for document, summary in pairs:
        s_ids = tokenizer(" " + summary.strip(), add_special_tokens=False)["input_ids"]
        s_ids = s_ids[:max_summary_tokens]
        if not summary.strip() or not s_ids:
            out.append(None)
            continue
        d_ids = tokenizer(document, add_special_tokens=False)["input_ids"][:max_document_tokens]
        means = []
        for context in (bos + d_ids, bos):
            ids = torch.tensor([context + s_ids], device=device)
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            start = len(context)
            if start == 0:  # no BOS: the first summary token has no prediction; skip it
                start = 1
            targets = ids[0, start:]
            picked = logp[start - 1 : len(ids[0]) - 1].gather(-1, targets[:, None])
            means.append(picked.mean().item())
        out.append(means[0] - means[1])
    return out


def combine(precision: float | None, lm_delta: float | None) -> float | None:
    """One `factuality_score` in [0, 1]: the mean of the available components, the LM score
    squashed with a sigmoid (0 nats/token -> 0.5: the document neither helps nor hurts)."""
    parts = [
        p
        for p in (precision, None if lm_delta is None else 1 / (1 + math.exp(-lm_delta)))
        if p is not None
    ]
    return sum(parts) / len(parts) if parts else None
