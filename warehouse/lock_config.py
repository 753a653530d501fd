"""How long the warehouse's locks are waited for (`locks:` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LocksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    writer_timeout_s: float = Field(4 * 3600.0, ge=0.0)
    """How long a write (a commit, a gate, a registration) waits for another process's write to
    finish before it gives up; a long tokenization holds the writer lock for its whole run."""
    run_timeout_s: float = Field(24 * 3600.0, ge=0.0)
    """How long a pipeline, refresh, distill or quantize run waits for the run of the same
    dataset ahead of it (runs of one dataset take turns, in the order they were scheduled)."""
    progress_s: float = Field(60.0, gt=0.0)
    """While waiting, a line naming the holder is logged this often."""
