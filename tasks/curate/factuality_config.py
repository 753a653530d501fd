"""Settings of the factual-consistency score (`dedup.factuality` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CombineWeights(BaseModel):
    """Logistic weights of the combined score: sigmoid(bias + precision * p + lm_mean * mean
    lift + lm_low * lowest lift). Defaults: fitted (sklearn LogisticRegression, C=1) by
    `python -m bench.filters` on a 50-pair dev split of FactCC-style corruptions of
    CNN/DailyMail highlights with SmolLM2-135M-Instruct. They are weak: on the 100 test pairs
    the combination reached AUROC 0.544, the mean lift alone 0.552 (bench/results/
    filters_cpu.txt). Refit for another LM or domain."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    bias: float = -0.077
    """Intercept."""
    precision: float = 0.176
    """Weight of entity/number precision (0..1)."""
    lm_mean: float = 0.102
    """Weight of the mean LM lift (nats/token)."""
    lm_low: float = 0.059
    """Weight of the lowest per-token LM lift (nats)."""


class FactualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Score document-summary pairs."""
    method: Literal["stacked", "precision"] = "stacked"
    """stacked: the newest promoted `factuality` model of the registry (a cross-encoder trained
    by `llm4all train-factuality`, stacked with text features: tasks/factcheck/), or, when none
    is registered, a model-free stacker of text features that ships in the package (the command
    says which it used). precision: entity/number precision, with `lm` and `nli_model` below
    (the scorer before tasks/factcheck; near chance on real hallucinations)."""
    model: str | None = None
    """stacked: a factuality model folder to use instead of the registry's promoted one."""
    max_document_sentences: int = Field(2000, ge=1)
    """stacked: a longer document is scored on its first this many sentences (logged)."""
    lm: bool = False
    """precision: add the LM score: how much the document raises the summary's likelihood under the teacher
    (two forward passes per pair; off by default for cost). factuality_score is then a logistic
    combination of entity precision and the LM score (`weights`)."""
    weights: CombineWeights = Field(default_factory=CombineWeights)
    """How the components are combined."""
    batch_size: int = Field(4, ge=1)
    """LM score: pairs per forward pass."""
    nli_model: str | None = None
    """Optional NLI sequence classifier (folder or HF id; labels must include 'entailment'), scored
    SummaC-ZS style and averaged into factuality_score. None: off."""
    nli_max_length: int = Field(256, ge=16)
    """NLI: tokens of a (document sentence, summary sentence) pair."""
    max_document_tokens: int = Field(512, ge=16)
    """LM score: document tokens given as context."""
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    """Pairs scoring below this are marked `unfaithful`; None: score only."""
