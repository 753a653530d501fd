"""Settings of the teacher-logit cache (`logits:` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LogitCacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    mode: Literal["sampled", "topk"] = "sampled"
    """`sampled`: counts of `samples` draws from the teacher distribution (unbiased; Anshumann et
    al. 2025). `topk`: the k most likely ids plus the tail mass."""
    k: int = Field(32, ge=1, le=4096)
    """topk: ids kept per position."""
    samples: int = Field(50, ge=1, le=255)
    """sampled: draws per position (counts are uint8)."""
    shard_blocks: int = Field(64, ge=1)
    """Blocks per shard: the unit of resume after a kill."""
    batch_blocks: int = Field(4, ge=1)
    """Blocks per teacher forward pass."""
    seed: int = 0
    """Seed of the sampler; a rerun gives the same bytes."""
    device: str | None = None
    """cpu, cuda, cuda:1 ...; default: CUDA if present."""

    def params(self) -> dict[str, int | str]:
        """What determines the cache's bytes (and so its identity)."""
        if self.mode == "topk":
            return {"mode": "topk", "k": self.k, "shard_blocks": self.shard_blocks}
        return {
            "mode": "sampled",
            "samples": self.samples,
            "seed": self.seed,
            "shard_blocks": self.shard_blocks,
            "batch_blocks": self.batch_blocks,
        }
