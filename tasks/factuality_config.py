"""Settings of the factual-consistency score (`dedup.factuality` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FactualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Score document-summary pairs (entity and number precision)."
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Pairs scoring below this are marked `unfaithful`; None: score only.",
    )
