"""Settings of the tokenize-and-pack stage (`tokens:` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokensConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    block_size: int = Field(256, ge=8)
    """Tokens per packed training block."""
    validation_share: float = Field(0.05, ge=0.0, lt=1.0)
    """Share of documents held out of training, chosen by content hash: a document never changes
    split when data is added."""
    selection_share: float = Field(0.5, ge=0.0, le=1.0)
    """Share of the held-out documents used for selection (keep-best, early stopping, a
    refresh's keep-best); the rest are the test split every reported figure is computed on."""
    source_stage: Literal["auto", "curated", "raw"] = "auto"
    """Which snapshots to tokenize: curated (kept rows only) when the dataset has any, else raw
    (auto); or force one."""
    pairs: Literal["summarize", "lm"] = "summarize"
    """Rows with a summary: `summarize` renders `template` and (with mask_prompt) trains on the
    summary tokens only; `lm` uses the text alone."""
    template: str = "{document}\n\nSummary: {summary}"
    """How a pair is written; the part before {summary} is the prompt."""
    mask_prompt: bool = True
    """Loss mask 0 on a pair's prompt (document) tokens, 1 on its summary."""
    max_documents: int | None = Field(None, ge=1)
    """Use at most this many documents per snapshot (a budget)."""
