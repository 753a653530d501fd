"""Factual consistency of a summary with its document — the cheapest scorer first.

Entity and number precision (Nan et al., EACL 2021): the share of the named entities and
numbers in the summary that also occur in the document. Hallucinated summaries often bring in
a name, a place or a figure the document never mentions; this catches those without any model.

Entities are found without a tagger (none ships offline): runs of capitalised words, minus a
sentence's first word when it is a common word, and numbers normalised (`1,200` -> `1200`,
`3.50` -> `3.5`, number words up to twenty). Matching is case-insensitive on the document's
words and numbers, so "the Obama administration" in the summary finds "Obama" in the document.

Then, optionally: the LM lift (log p(summary | document) - log p(summary), per token: the
mean and the least supported token, `lm_support_features`) and an NLI classifier scored
SummaC-ZS style (`nli_scores`); `combine` makes one `factuality_score` of what is there.
`tasks.curate.curate.row_scores` applies it in `curate` and `score`.
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


@dataclass(frozen=True)
class LmSupport:
    """What the document does to the LM's view of the summary (nats per token)."""

    mean: float  # mean_t log p(s_t | doc, s_<t) - log p(s_t | s_<t)
    low: float  # the same lift at the summary's least supported token (a swapped name, ...)


def lm_support_features(
    pairs: list[tuple[str, str]],
    model,
    tokenizer,
    *,
    max_document_tokens: int = 512,
    max_summary_tokens: int = 128,
    batch_size: int = 4,
) -> list[LmSupport | None]:
    """Per pair, how much the document helps the LM predict the summary: the mean lift over
    the summary's tokens and the lift at its least supported token (an unfaithful summary
    often differs from a faithful one in one name, number or "not", which a mean over 40
    tokens dilutes). Two forward passes per pair, batched and right-padded. The document is
    truncated to its first `max_document_tokens` tokens (the lede carries most of what
    summaries use). None for an empty summary; an empty document is scored against nothing
    (lift 0)."""
    import torch

    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    todo = []
    for k, (document, summary) in enumerate(pairs):
        s_ids = tokenizer(" " + (summary or "").strip(), add_special_tokens=False)["input_ids"]
        s_ids = s_ids[:max_summary_tokens]
        if not (summary or "").strip() or not s_ids:
            continue
        d_ids = tokenizer(document or "", add_special_tokens=False)["input_ids"]
        todo.append((k, d_ids[:max_document_tokens], s_ids))

    def summary_logp(contexts: list[list[int]], summaries: list[list[int]]) -> list:
        """log p of each summary token after its context (the first token of a summary with
        no context at all has no prediction: it is skipped)."""
        seqs = [c + s for c, s in zip(contexts, summaries, strict=True)]
        width = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, q in enumerate(seqs):
            ids[i, : len(q)] = torch.tensor(q)
            attn[i, : len(q)] = 1
        ids, attn = ids.to(device), attn.to(device)
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float(), -1)
        out = []
        for i, (c, s) in enumerate(zip(contexts, summaries, strict=True)):
            start = max(len(c), 1)
            targets = ids[i, start : len(c) + len(s)]
            picked = logp[i, start - 1 : len(c) + len(s) - 1].gather(-1, targets[:, None])
            out.append(picked[:, 0].cpu())
        return out

    result: list[LmSupport | None] = [None] * len(pairs)
    for b in range(0, len(todo), batch_size):
        chunk = todo[b : b + batch_size]
        summaries = [s for _, _, s in chunk]
        with_doc = summary_logp([bos + d for _, d, _ in chunk], summaries)
        without = summary_logp([list(bos)] * len(chunk), summaries)
        for (k, _, _), lp_d, lp_0 in zip(chunk, with_doc, without, strict=True):
            # Align: without BOS the unconditioned pass has no prediction for token 0.
            n = min(len(lp_d), len(lp_0))
            lift = lp_d[len(lp_d) - n :] - lp_0[len(lp_0) - n :]
            if n == 0:  # a one-token summary and no BOS: nothing to compare
                result[k] = LmSupport(0.0, 0.0)
                continue
            result[k] = LmSupport(float(lift.mean()), float(lift.min()))
    return result


def lm_support(
    pairs: list[tuple[str, str]],
    model,
    tokenizer,
    *,
    max_document_tokens: int = 512,
    max_summary_tokens: int = 128,
) -> list[float | None]:
    """The mean lift of `lm_support_features` per pair (None for an empty summary)."""
    feats = lm_support_features(
        pairs,
        model,
        tokenizer,
        max_document_tokens=max_document_tokens,
        max_summary_tokens=max_summary_tokens,
    )
    return [None if f is None else f.mean for f in feats]


def combine(
    precision: float | None,
    lm: LmSupport | float | None,
    weights=None,
    nli: float | None = None,
) -> float | None:
    """One `factuality_score` in [0, 1] (higher = more consistent).

    - entity precision only: the precision itself (None when nothing is checkable);
    - with the LM score: a logistic model over (precision, mean lift, lowest lift), with the
      weights in `weights` (a CombineWeights; the defaults were fitted on a dev split of
      FactCC-style corruptions by bench/filters.py). A summary with nothing checkable
      counts as fully precise (nothing in it is unsupported);
    - with an NLI score: the mean of the above and the NLI score (no NLI model ships
      offline, so this weight could not be fitted; equal weight is the honest default).
    """
    from tasks.curate.factuality_config import CombineWeights

    w = weights or CombineWeights()
    if isinstance(lm, float | int):
        lm = LmSupport(float(lm), float(lm))
    base = precision
    if lm is not None:
        p = 1.0 if precision is None else precision
        z = w.bias + w.precision * p + w.lm_mean * lm.mean + w.lm_low * lm.low
        base = 1 / (1 + math.exp(-max(min(z, 60.0), -60.0)))
    parts = [v for v in (base, nli) if v is not None]
    return sum(parts) / len(parts) if parts else None


# --------------------------------------------------------------------------- NLI (SummaC-ZS)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n+")


def sentences(text: str) -> list[str]:
    """Sentences of a text: split after . ! ? before a capital or digit, and at newlines."""
    return [s.strip() for s in _SENTENCE.split(text or "") if s.strip()]


def entailment_index(config) -> tuple[int, int | None]:
    """(entailment, contradiction) label indices of an NLI classifier, from its id2label."""
    labels = {int(i): str(name).lower() for i, name in config.id2label.items()}
    ent = [i for i, n in labels.items() if n.startswith("entail")]
    con = [i for i, n in labels.items() if n.startswith("contradict")]
    if len(ent) != 1:
        raise ValueError(
            f"the NLI model's labels {sorted(labels.values())} have no single 'entailment' label"
        )
    return ent[0], (con[0] if len(con) == 1 else None)


def nli_scores(
    pairs: list[tuple[str, str]],
    model,
    tokenizer,
    *,
    max_document_sentences: int = 40,
    max_length: int = 256,
    batch_size: int = 16,
) -> list[float | None]:
    """SummaC-ZS (Laban et al., TACL 2022) with any NLI sequence classifier: for each summary
    sentence, the best (entailment - contradiction) probability over the document's
    sentences; the pair's score is the mean over summary sentences, mapped to [0, 1].
    None for an empty summary or document."""
    import torch

    ent, con = entailment_index(model.config)
    device = next(model.parameters()).device
    out: list[float | None] = []
    for document, summary in pairs:
        doc_s = sentences(document)[:max_document_sentences]
        sum_s = sentences(summary)
        if not doc_s or not sum_s:
            out.append(None)
            continue
        premises = [d for _ in sum_s for d in doc_s]
        hypotheses = [h for h in sum_s for _ in doc_s]
        probs = []
        for b in range(0, len(premises), batch_size):
            enc = tokenizer(
                premises[b : b + batch_size],
                hypotheses[b : b + batch_size],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode():
                probs.append(torch.softmax(model(**enc).logits.float(), -1).cpu())
        p = torch.cat(probs).view(len(sum_s), len(doc_s), -1)
        margin = p[..., ent] - (p[..., con] if con is not None else 0.0)
        out.append(float((margin.max(dim=1).values.mean() + 1) / 2))
    return out
