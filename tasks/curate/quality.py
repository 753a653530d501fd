"""Quality heuristics: Gopher quality and repetition, C4 and FineWeb rules.

Each rule is a small contract, datatrove-style: `rule(doc, cfg) -> reason | None`, where the
reason names the rule and the measured value (`gopher_short_document: 12 words < 50`). A
`Doc` computes the words, lines and paragraphs of a text once for all rules. `QualityFilter`
runs the enabled rules in order, keeps the first reason per document (the `quality_reason`
column of a curated snapshot and of `llm4all score`) and counts every rule that fires, so a
funnel can show what each rule costs. Nothing is deleted here: callers record decisions.

`tasks.curate.dedup` runs them after exact dedup and before near/semantic dedup (`reason =
'quality'`, `quality_reason` = the first rule's reason), in `curate` and in `llm4all score`.
Thresholds: `dedup.quality` in the config (tasks/curate/quality_config.py); `quality_step` is
the dedup step.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.curate.quality_config import QualityConfig
from tasks.curate.shards import DedupStats
from warehouse.sql import sql_str

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "●", "○", "▪", "■", "◦", "-", "*", "–", "‣", "⁃")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";")
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?](?:[\"'”’)\]]*)(?=\s|$)")


@dataclass
class Doc:
    """A text with the pieces every rule looks at, computed once."""

    text: str

    @cached_property
    def words(self) -> list[str]:
        return _WORD.findall(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.split("\n") if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in re.split(r"\n\s*\n", self.text) if p.strip()]

    @cached_property
    def lower_words(self) -> list[str]:
        return [w.lower().strip(".,;:!?\"'()[]") for w in self.words]


Rule = Callable[[Doc, QualityConfig], str | None]


# --------------------------------------------------------------------------- Gopher quality
def gopher_short_document(d: Doc, c: QualityConfig) -> str | None:
    n = len(d.words)
    return f"{n} words < {c.min_words}" if n < c.min_words else None


def gopher_long_document(d: Doc, c: QualityConfig) -> str | None:
    n = len(d.words)
    return f"{n} words > {c.max_words}" if n > c.max_words else None


def gopher_word_length(d: Doc, c: QualityConfig) -> str | None:
    if not d.words:
        return None
    mean = sum(len(w) for w in d.words) / len(d.words)
    if not c.min_mean_word_length <= mean <= c.max_mean_word_length:
        lo, hi = c.min_mean_word_length, c.max_mean_word_length
        return f"mean word length {mean:.1f} outside [{lo}, {hi}]"
    return None


def gopher_symbols(d: Doc, c: QualityConfig) -> str | None:
    if not d.words:
        return None
    symbols = d.text.count("#") + d.text.count("...") + d.text.count("…")
    ratio = symbols / len(d.words)
    return (
        f"{ratio:.2f} symbols per word > {c.max_symbol_word_ratio}"
        if ratio > c.max_symbol_word_ratio
        else None
    )


def gopher_bullets(d: Doc, c: QualityConfig) -> str | None:
    if not d.lines:
        return None
    ratio = sum(line.startswith(BULLETS) for line in d.lines) / len(d.lines)
    return (
        f"{ratio:.2f} of lines are bullets > {c.max_bullet_lines_ratio}"
        if ratio > c.max_bullet_lines_ratio
        else None
    )


def gopher_ellipsis_lines(d: Doc, c: QualityConfig) -> str | None:
    if not d.lines:
        return None
    ratio = sum(line.endswith(("...", "…")) for line in d.lines) / len(d.lines)
    if ratio > c.max_ellipsis_lines_ratio:
        return f"{ratio:.2f} of lines end in an ellipsis > {c.max_ellipsis_lines_ratio}"
    return None


def gopher_alpha_words(d: Doc, c: QualityConfig) -> str | None:
    if not d.words:
        return None
    ratio = sum(any(ch.isalpha() for ch in w) for w in d.words) / len(d.words)
    if ratio < c.min_alpha_words_ratio:
        return f"{ratio:.2f} of words have a letter < {c.min_alpha_words_ratio}"
    return None


def gopher_stop_words(d: Doc, c: QualityConfig) -> str | None:
    n = sum(w in STOP_WORDS for w in d.lower_words)
    return f"{n} stop words < {c.min_stop_words}" if n < c.min_stop_words else None


# --------------------------------------------------------------------------- Gopher repetition
def _dup_share(pieces: list[str]) -> tuple[float, float]:
    """(share of pieces that repeat an earlier one, share of characters in them)."""
    if not pieces:
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = 0
    for p in pieces:
        if p in seen:
            dup += 1
            dup_chars += len(p)
        seen.add(p)
    return dup / len(pieces), dup_chars / max(sum(len(p) for p in pieces), 1)


def gopher_dup_lines(d: Doc, c: QualityConfig) -> str | None:
    frac, chars = _dup_share(d.lines)
    if frac > c.max_dup_line_frac:
        return f"{frac:.2f} of lines repeated > {c.max_dup_line_frac}"
    if chars > c.max_dup_line_char_frac:
        return f"{chars:.2f} of characters in repeated lines > {c.max_dup_line_char_frac}"
    return None


def gopher_dup_paragraphs(d: Doc, c: QualityConfig) -> str | None:
    frac, chars = _dup_share(d.paragraphs)
    if frac > c.max_dup_para_frac:
        return f"{frac:.2f} of paragraphs repeated > {c.max_dup_para_frac}"
    if chars > c.max_dup_para_char_frac:
        return f"{chars:.2f} of characters in repeated paragraphs > {c.max_dup_para_char_frac}"
    return None


def gopher_top_ngram(d: Doc, c: QualityConfig) -> str | None:
    words = d.lower_words
    total = sum(len(w) for w in words) or 1
    for n, limit in sorted(c.top_ngram_max.items()):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        if not grams:
            continue
        gram, count = grams.most_common(1)[0]
        if count < 2:
            continue
        share = count * sum(len(w) for w in gram) / total
        if share > limit:
            return f"top {n}-gram covers {share:.2f} of characters > {limit}"
    return None


def gopher_dup_ngrams(d: Doc, c: QualityConfig) -> str | None:
    words = d.lower_words
    total = sum(len(w) for w in words) or 1
    for n, limit in sorted(c.dup_ngram_max.items()):
        if len(words) < n:
            continue
        seen: set[tuple[str, ...]] = set()
        covered = [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            if gram in seen:
                covered[i : i + n] = [True] * n
            seen.add(gram)
        share = sum(len(w) for w, hit in zip(words, covered, strict=True) if hit) / total
        if share > limit:
            return f"repeated {n}-grams cover {share:.2f} of characters > {limit}"
    return None


def repetition_reason(text: str, cfg: QualityConfig | None = None) -> str | None:
    """The first of Gopher's n-gram repetition rules that `text` fails, or None: repeated
    n-grams first (a loop covers most of the text with them: `repeated 5-grams cover 0.86`),
    then the top n-gram. Distillation's evaluation calls a generated summary that fails it
    looping: it repeats itself instead of summarising (tasks/distill/evaluate.summary_rouge).
    Words are split on whitespace, so text without spaces (CJK) and a loop inside one token go
    unflagged; bench/looping.py measures its false alarms on human summaries."""
    doc, c = Doc(text), cfg or QualityConfig()
    return gopher_dup_ngrams(doc, c) or gopher_top_ngram(doc, c)


# --------------------------------------------------------------------------- C4
def c4_lorem_ipsum(d: Doc, c: QualityConfig) -> str | None:
    return "contains 'lorem ipsum' (placeholder text)" if "lorem ipsum" in d.text.lower() else None


def c4_curly_bracket(d: Doc, c: QualityConfig) -> str | None:
    return "contains '{' (code or templates)" if "{" in d.text else None


def c4_few_sentences(d: Doc, c: QualityConfig) -> str | None:
    n = len(_SENTENCE_END.findall(d.text))
    return f"{n} sentences < {c.c4_min_sentences}" if n < c.c4_min_sentences else None


# --------------------------------------------------------------------------- FineWeb
def fineweb_line_punct(d: Doc, c: QualityConfig) -> str | None:
    if not d.lines:
        return None
    ratio = sum(line.endswith(TERMINAL) for line in d.lines) / len(d.lines)
    if ratio < c.min_line_punct_ratio:
        return f"{ratio:.2f} of lines end in punctuation < {c.min_line_punct_ratio}"
    return None


def fineweb_short_lines(d: Doc, c: QualityConfig) -> str | None:
    if not d.lines:
        return None
    ratio = sum(len(line) <= c.short_line_chars for line in d.lines) / len(d.lines)
    if ratio > c.max_short_line_ratio:
        return f"{ratio:.2f} of lines shorter than {c.short_line_chars} chars > {c.max_short_line_ratio}"
    return None


def fineweb_list_like(d: Doc, c: QualityConfig) -> str | None:
    if not d.words:
        return None
    ratio = d.text.count("\n") / len(d.words)
    return (
        f"{ratio:.2f} newlines per word > {c.max_newline_word_ratio}"
        if ratio > c.max_newline_word_ratio
        else None
    )


RULES: dict[str, Rule] = {
    rule.__name__: rule
    for rule in (
        gopher_short_document,
        gopher_long_document,
        gopher_word_length,
        gopher_symbols,
        gopher_bullets,
        gopher_ellipsis_lines,
        gopher_alpha_words,
        gopher_stop_words,
        gopher_dup_lines,
        gopher_dup_paragraphs,
        gopher_top_ngram,
        gopher_dup_ngrams,
        c4_lorem_ipsum,
        c4_curly_bracket,
        c4_few_sentences,
        fineweb_line_punct,
        fineweb_short_lines,
        fineweb_list_like,
    )
}


@dataclass
class QualityFilter:
    """Runs the enabled rules; `keep(text) -> (bool, reason)`; counts what fires."""

    cfg: QualityConfig = field(default_factory=QualityConfig)
    first_reason: Counter[str] = field(default_factory=Counter)  # the rule that decided
    fired: Counter[str] = field(default_factory=Counter)  # every rule that fired
    seen: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.cfg.disabled) - set(RULES)
        if unknown:
            raise ValueError(
                f"unknown quality rule(s) {sorted(unknown)}; known: {', '.join(RULES)}"
            )
        self.rules = [(n, r) for n, r in RULES.items() if n not in self.cfg.disabled]

    def keep(self, text: str | None) -> tuple[bool, str | None]:
        self.seen += 1
        doc = Doc(text or "")
        reason = None
        for name, rule in self.rules:
            why = rule(doc, self.cfg)
            if why is not None:
                self.fired[name] += 1
                if reason is None:
                    reason = f"{name}: {why}"
                    self.first_reason[name] += 1
        return reason is None, reason

    def reasons(self, texts: Iterable[str | None]) -> list[str | None]:
        """The `quality_reason` column for `texts` (None where a text passes)."""
        return [self.keep(t)[1] for t in texts]


def quality_step(con: Any, scratch: Path, cfg: QualityConfig, stats: DedupStats) -> None:
    """Quality rules on the rows exact dedup kept; `qual` gets a reason for each rejected doc."""
    check = QualityFilter(cfg)
    path = scratch / "quality.parquet"
    schema = pa.schema([("doc", pa.int64()), ("quality_reason", pa.string())])
    reader = con.sql(
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL ORDER BY w.doc"
    ).to_arrow_reader(10_000)
    with pq.ParquetWriter(path, schema) as out:
        for batch in reader:
            reasons = check.reasons(batch.column(1).to_pylist())
            rejected = [
                (d, r) for d, r in zip(batch.column(0).to_pylist(), reasons, strict=True) if r
            ]
            if rejected:
                docs, why = zip(*rejected, strict=True)
                out.write_table(
                    pa.table([pa.array(docs, pa.int64()), pa.array(why)], schema=schema)
                )
    con.execute(f"INSERT INTO qual SELECT * FROM read_parquet({sql_str(str(path))})")
    stats.low_quality = sum(check.first_reason.values())
    stats.quality_rules = dict(check.first_reason.most_common())
