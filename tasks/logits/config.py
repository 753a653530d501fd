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
    held_out: bool = False
    """Also run the teacher over the selection and test blocks. Nothing reads their targets
    (training reads training blocks; evaluation runs the teacher itself), so by default their
    positions are stored with no target (mass 0) and cost nothing."""
    summaries: int = Field(0, ge=0)
    """Sequence-level KD: the teacher writes a greedy summary of up to this many training
    documents of each tokens snapshot (pairs only; never a selection or test document), with
    the snapshot's template; each becomes one extra training block (the article cut to fit,
    then the teacher's summary, loss on the summary) with the teacher's distributions over
    it, stored in the cache's `summaries/` folder. 0: none."""
    summary_max_new_tokens: int = Field(64, ge=1)
    """Longest teacher summary, in tokens (the article is cut to leave room for it)."""
    summary_batch: int = Field(8, ge=1)
    """Documents per generation batch, and per summaries shard (the unit of resume)."""

    def params(self) -> dict[str, int | str | bool]:
        """What determines the cache's bytes (and so its identity)."""
        extra: dict[str, int | str | bool] = {"held_out": self.held_out}
        if self.summaries:
            extra |= {
                "summaries": self.summaries,
                "summary_max_new_tokens": self.summary_max_new_tokens,
                "summary_batch": self.summary_batch,
            }
        if self.mode == "topk":
            return {"mode": "topk", "k": self.k, "shard_blocks": self.shard_blocks, **extra}
        return {
            "mode": "sampled",
            "samples": self.samples,
            "seed": self.seed,
            "shard_blocks": self.shard_blocks,
            "batch_blocks": self.batch_blocks,
            **extra,
        }
