"""Settings of the factual-consistency score (`dedup.factuality` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FactualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Score document-summary pairs (entity and number precision)."
    )
    lm: bool = Field(
        False,
        description="Add the LM score: how much the document raises the summary's likelihood "
        "under the teacher (two forward passes per pair; off by default for cost). "
        "factuality_score is then the mean of entity precision and sigmoid(LM score).",
    )
    max_document_tokens: int = Field(
        512, ge=16, description="LM score: document tokens given as context."
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Pairs scoring below this are marked `unfaithful`; None: score only.",
    )
