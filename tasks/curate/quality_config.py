"""Thresholds of the quality heuristics (`quality:` in a config file).

Defaults follow datatrove's Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and FineWeb
(Penedo et al. 2024) filters. Each rule can be switched off by name in `disabled`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Run the quality heuristics."""
    disabled: list[str] = Field(default_factory=list)
    """Rule names to skip, e.g. [c4_curly_bracket] for code-heavy corpora."""

    # Gopher quality
    min_words: int = Field(50, ge=0)
    """gopher_short_document: fewer words than this."""
    max_words: int = Field(100_000, ge=1)
    """gopher_long_document: more words."""
    min_mean_word_length: float = 3.0
    """gopher_word_length: shorter mean."""
    max_mean_word_length: float = 10.0
    """gopher_word_length: longer mean."""
    max_symbol_word_ratio: float = 0.1
    """gopher_symbols: ('#' + ellipses) per word above this."""
    max_bullet_lines_ratio: float = 0.9
    """gopher_bullets: share of lines starting with a bullet above this."""
    max_ellipsis_lines_ratio: float = 0.3
    """gopher_ellipsis_lines: share of lines ending in an ellipsis above this."""
    min_alpha_words_ratio: float = 0.8
    """gopher_alpha_words: share of words with a letter below this."""
    min_stop_words: int = Field(2, ge=0)
    """gopher_stop_words: fewer English stop words than this."""

    # Gopher repetition
    max_dup_line_frac: float = 0.3
    """gopher_dup_lines: share of repeated lines."""
    max_dup_para_frac: float = 0.3
    """gopher_dup_paragraphs: same, paragraphs."""
    max_dup_line_char_frac: float = 0.2
    """gopher_dup_line_chars: share of characters in repeated lines."""
    max_dup_para_char_frac: float = 0.2
    """gopher_dup_paragraph_chars: same, paragraphs."""
    top_ngram_max: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    """gopher_top_ngram: share of characters covered by the most frequent n-gram, per n."""
    dup_ngram_max: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    """gopher_dup_ngrams: share of characters inside repeated n-grams, per n."""

    # C4
    c4_min_sentences: int = Field(3, ge=0)
    """c4_few_sentences: fewer sentences (terminal punctuation) than this."""

    # FineWeb
    min_line_punct_ratio: float = 0.12
    """fineweb_line_punct: share of lines ending in punctuation below this."""
    short_line_chars: int = Field(30, ge=1)
    """fineweb_short_lines: a short line."""
    max_short_line_ratio: float = 0.67
    """fineweb_short_lines: share of short lines above this."""
    max_newline_word_ratio: float = 0.3
    """fineweb_list_like: newlines per word above this (lists, menus)."""
