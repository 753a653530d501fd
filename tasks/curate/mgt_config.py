"""Settings of the machine-generated-text score (`dedup.mgt` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MgtConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = False
    """Score every row with Fast-DetectGPT (one forward pass of the scoring LM per text; off by
    default because it is the costliest filter)."""
    model: str | None = None
    """Scoring LM (folder, .gguf, pkg:NAME or HF id); default the teacher. With `performer` set it
    is Binoculars' observer."""
    performer: str | None = None
    """A second LM with the same tokenizer (e.g. the instruct version of `model`): the score becomes
    Binoculars (-(log perplexity / cross-perplexity)) instead of Fast-DetectGPT. None:
    Fast-DetectGPT with one model."""
    max_tokens: int = Field(256, ge=2)
    """Tokens of each text that are scored."""
    min_tokens: int = Field(16, ge=2)
    """Texts with fewer tokens get no mgt_score (null): on a handful of tokens the statistic is
    noise, and a null score never marks a row."""
    batch_size: int = Field(8, ge=1)
    """Texts per forward pass."""
    threshold: float | None = None
    """Rows scoring above this are marked `machine_generated`; None: score only (set it with
    `llm4all calibrate` on human-written text)."""
    action: Literal["drop", "downweight"] = "drop"
    """What happens to a row above the threshold: drop (reason `machine_generated`), or downweight
    (kept, with `sample_weight` = `weight`; the tokens stage includes it with that probability)."""
    weight: float = Field(0.25, ge=0.0, le=1.0)
    """sample_weight of a machine-like row under action=downweight (others: 1)."""
    max_share: float | None = Field(None, ge=0.0, le=1.0)
    """At most this share of the kept rows of a snapshot may be machine-like (score above the
    threshold); the excess highest-scoring rows are dropped with reason `mgt_share_cap`. The guard
    against training on model output; needs `threshold`."""
