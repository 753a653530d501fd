"""Thresholds of the data-quality gates (`gates:` in a config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RawGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    min_chars: int = Field(1, ge=0)
    """Shortest text (after trimming whitespace) allowed."""
    max_chars: int = Field(200_000, gt=0)
    """Longest text allowed."""
    max_quarantined_share: float = Field(0.10, ge=0.0, le=1.0)
    """Largest share of an ingest run's rows that may be quarantined; above it the source is treated
    as broken and the run fails its gate."""


class LogitsGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    mass_tolerance: float = Field(2e-3, ge=0.0)
    """How far above 1 a position's stored mass may round (fp16 values)."""


class CuratedGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    min_kept_share: float = Field(0.2, ge=0.0, le=1.0)
    """Smallest share of a curated snapshot's rows that may be kept; below it the filters (or the
    data) are suspect and the snapshot fails its gate."""
    max_kept_share: float = Field(1.0, ge=0.0, le=1.0)
    """Largest share of a curated snapshot's rows kept."""
    max_cluster_share: float = Field(0.2, ge=0.0, le=1.0)
    """Largest share of a snapshot's rows that one near-duplicate cluster may hold (a giant cluster
    means chained, unrelated documents)."""
    min_rows_for_shares: int = Field(50, ge=0)
    """The share checks apply only to snapshots with at least this many rows (a three-row refresh of
    which two are duplicates is no alarm)."""


class StudentGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_ppl_ratio: float = Field(1.5, gt=0.0)
    """Largest student / teacher held-out perplexity ratio a registered student may have (DistilGPT2
    / GPT-2 on WikiText-103: 21.1 / 16.3 = 1.29)."""


class QuantizedGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_ppl_delta_8bit: float = 1.0
    """Largest held-out perplexity increase, in percent of the fp32 parent's, of an 8-bit model
    (llama.cpp LLaMA-7B Q8_0: +0.01%)."""
    max_ppl_delta_4bit: float = 5.0
    """Largest held-out perplexity increase, in percent, of a model below 8 bits (4-5-bit:
    llama.cpp LLaMA-7B Q4_K_M +0.9%; small models lose more)."""


class FactualityGateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    min_auroc: float = Field(0.80, ge=0.0, le=1.0)
    """Least AUROC a factuality model must reach on synthetic pairs of held-out documents
    (`llm4all train-factuality`). A working run reaches ~0.85-0.9 on CNN/DailyMail; a broken
    one (nothing learnt, wrong data) lands near 0.5. It checks training, not how the score
    does on real hallucinations (bench/factuality.py measures that)."""


class GatesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    raw: RawGateConfig = Field(default_factory=RawGateConfig)
    logits: LogitsGateConfig = Field(default_factory=LogitsGateConfig)
    curated: CuratedGateConfig = Field(default_factory=CuratedGateConfig)
    student: StudentGateConfig = Field(default_factory=StudentGateConfig)
    quantized: QuantizedGateConfig = Field(default_factory=QuantizedGateConfig)
    factuality: FactualityGateConfig = Field(default_factory=FactualityGateConfig)
    examples: int = Field(5, ge=0)
    """Example ids reported per failing expectation."""
    data_docs: bool = True
    """Also render each gate's validation as Great Expectations Data Docs (HTML) under
    `<home>/data_docs/<stage>/<target>/`, linked from the gate's Prefect artifact."""
