"""Thresholds of the data-quality gates (`gates:` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RawGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(
        1, ge=0, description="Shortest text (after trimming whitespace) allowed."
    )
    max_chars: int = Field(200_000, gt=0, description="Longest text allowed.")
    max_quarantined_share: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="Largest share of an ingest run's rows that may be quarantined; above it "
        "the source is treated as broken and the run fails its gate.",
    )


class LogitsGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mass_tolerance: float = Field(
        2e-3,
        ge=0.0,
        description="How far above 1 a position's stored mass may round (fp16 values).",
    )


class GatesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    raw: RawGateConfig = Field(default_factory=RawGateConfig)
    logits: LogitsGateConfig = Field(default_factory=LogitsGateConfig)
    examples: int = Field(5, ge=0, description="Example ids reported per failing expectation.")
