"""Settings of the continual-learning refresh (`refresh:` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RefreshConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    sources: list[str] = Field(default_factory=list)
    """Inputs re-read by every refresh (files, folders, hf:NAME). Ingest is incremental by content
    hash, so only rows never seen before become new data."""
    steps: int = Field(50, ge=1)
    """Optimizer steps of one refresh."""
    lr: float | None = Field(None, gt=0.0)
    """Peak learning rate, re-warmed then re-decayed (Ibrahim et al. 2024); default distill.lr."""
    warmup_steps: int = Field(5, ge=0)
    """Linear re-warmup steps."""
    replay_share: float = Field(0.5, ge=0.0, lt=1.0)
    """Expected share of each batch drawn from the earlier training blocks (replay against
    forgetting); the rest comes from the new data. bench/refresh.py, tiny profile: 25% forgets +4.1%
    of the old perplexity, 50% +1.2% (naive +55%), for a new-data gain of 54% instead of 60%."""
    max_old_regression: float = Field(0.02, ge=0.0)
    """Promote only if the perplexity on the earlier held-out set grows by at most this fraction."""
    min_new_gain: float = Field(0.0, ge=0.0, lt=1.0)
    """... and the perplexity on the new held-out set falls by more than this fraction."""
    cron: str = "0 3 * * 1"
    """Schedule of the refresh deployment served by `llm4all serve` (default: Mondays 03:00)."""
    pipeline_cron: str | None = None
    """Schedule of the pipeline deployment; None: it runs when triggered (`llm4all run pipeline -d
    NAME`)."""
