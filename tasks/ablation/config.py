"""Settings of the curation ablation: a noisy corpus with known noise, students trained the same
way on its raw and its curated rows (and, for reference, its clean rows), and what each one
costs and learns (tasks/ablation/effect.py; tasks/ablation/run.py holds the profiles that set
them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.distill.config import StudentConfig


class NoiseConfig(BaseModel):
    """The corpus: real (article, human summary) pairs plus noise at stated rates
    (tasks/ablation/corpus.py). Shares are of the corpus rows."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rows: int = Field(1000, ge=10)
    """Corpus rows, noise included."""
    heldout: int = Field(200, ge=4)
    """Clean held-out articles (disjoint from the corpus): half choose (keep-best), half are the
    test split every figure is reported on (by content hash, as tokens.selection_share)."""
    calibration: int = Field(100, ge=20)
    """Clean human pairs, disjoint from both, on which thresholds left unset are calibrated."""
    duplicate_share: float = Field(0.2, ge=0.0, lt=1.0)
    """Near-duplicate copies of other rows (their Jaccard recorded)."""
    machine_share: float = Field(0.15, ge=0.0, lt=1.0)
    """Rows whose article the teacher wrote: it continues the first `machine_prompt_tokens` of
    the real article (sampled, temperature 1, top-p 0.95); the human summary stays."""
    unfaithful_share: float = Field(0.3, ge=0.0, lt=1.0)
    """Rows whose summary is unfaithful to the article."""
    hallucinated_share: float = Field(0.5, ge=0.0, le=1.0)
    """Of the unfaithful rows, the share that gets a real model hallucination (HaluEval's
    ChatGPT `hallucinated_summary`) where the source has one; the others get rule corruptions
    (an entity swapped for one of another article, a number changed, a negation added or
    removed; one per summary sentence that admits one)."""
    min_jaccard: float = Field(0.8, gt=0.0, le=1.0)
    """Near-duplicate copies get a word 5-gram Jaccard to their original drawn uniformly from
    [min_jaccard, max_jaccard] (word substitutions until it is reached)."""
    max_jaccard: float = Field(0.95, gt=0.0, le=1.0)
    """Upper end of that range."""
    machine_prompt_tokens: int = Field(24, ge=1)
    """Tokens of the real article the teacher continues."""
    machine_new_tokens: int = Field(200, ge=16)
    """Tokens the teacher writes."""
    min_chars: int = Field(600, ge=0)
    """Articles shorter than this are not used."""
    seed: int = 0
    """Seed of the choice of articles and of every noise draw."""

    @model_validator(mode="after")
    def _check(self) -> NoiseConfig:
        if self.min_jaccard > self.max_jaccard:
            raise ValueError("min_jaccard must not exceed max_jaccard")
        if self.duplicate_share + self.machine_share + self.unfaithful_share >= 1.0:
            raise ValueError("the noise shares must leave some clean rows")
        return self


class AblationConfig(BaseModel):
    """The comparison: the same student init, recipe, epochs and batch size on the raw and on
    the curated rows; `seeds` runs of each."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    """The corpus, when the ablation builds one."""
    max_rows: int | None = Field(None, ge=2)
    """Use at most this many corpus rows (the first ones): a budget for a given corpus."""
    max_heldout: int | None = Field(None, ge=2)
    """Use at most this many held-out articles."""
    block_size: int = Field(192, ge=32)
    """Tokens per training block: one (article lead, summary) pair each, padded."""
    max_article_tokens: int = Field(160, ge=8)
    """The article's lead: at most this many tokens (fewer when the summary needs the room)."""
    max_summary_tokens: int = Field(64, ge=4)
    """Summaries are cut to this many tokens."""
    student: StudentConfig = Field(default_factory=StudentConfig)
    """How the shared init is cut from the teacher, as `distill.student` cuts the product's
    student (tasks/distill/students.py): `layers` keeps `layers` below; `depth` / `width` run
    the calibration pass over the first corpus blocks (the same for both students)."""
    layers: list[int] = Field(default_factory=lambda: [0, 1, 28, 29])
    """student.kind layers: teacher layers the student keeps (both students start from this
    init). The default suits a 30-layer teacher (SmolLM2-135M: its first and last layers matter
    most, bench/student_init.py); indices past the teacher's depth are dropped."""
    train_embeddings: bool = False
    """Train the (tied) embedding and output layer too. Off: the student trains its layers
    only and keeps the teacher's vocabulary matrix (a third less compute per token on a 49k
    vocabulary, and nothing to overfit there on a few hundred pairs)."""
    epochs: float = Field(1.0, gt=0.0)
    """Passes over its own training rows each student makes (steps = epochs × rows / batch)."""
    batch_blocks: int = Field(8, ge=1)
    """Blocks per optimizer step."""
    lr: float = Field(5e-4, gt=0.0)
    """Peak learning rate (warmup, then cosine)."""
    warmup_share: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the steps spent warming up."""
    kd_weight: float = Field(1.0, ge=0.0)
    """Weight of the KD term (forward KL to the cached teacher distributions)."""
    ce_weight: float = Field(1.0, ge=0.0)
    """Weight of cross-entropy on the data's summary tokens: the student learns the summaries
    themselves as well as the teacher's distributions (Hinton et al. 2015's mix)."""
    evals: int = Field(4, ge=1)
    """Selection-split evaluations per run (keep-best picks among them)."""
    seeds: int = Field(3, ge=1)
    """Seeds (batch order) per student."""
    equal_steps_seeds: int = Field(1, ge=0)
    """Seeds of a third student, the curated rows trained for the raw student's step count (the
    equal-steps comparison); 0: skip it."""
    oracle_seeds: int = Field(0, ge=0)
    """Seeds of the oracle student: the rows that carry no known noise (a corpus whose rows
    label it), the same epochs. What perfect filters would buy: if it does not beat the raw
    student either, the recipe or the size cannot show curation paying, whatever the filters
    do. 0: skip it (as for a corpus without labels)."""
    deadline_minutes: float | None = Field(None, gt=0.0)
    """The reference students (equal steps, oracle) start only if that run is projected to end
    within this many minutes of the process start (a line fitted to the finished runs' seconds
    against their steps); skipped runs are listed in `skipped`. The raw and curated students
    always run. None: no deadline."""
    mgt_fpr: float = Field(0.05, gt=0.0, lt=1.0)
    """When `dedup.mgt.threshold` is unset: the threshold that marks this share of the
    calibration articles (human-written) as machine text."""
    factuality_fpr: float = Field(0.1, gt=0.0, lt=1.0)
    """When `dedup.factuality.threshold` is unset: the threshold under which this share of the
    calibration pairs (faithful human summaries) fall."""
    generate_tokens: int = Field(64, ge=4)
    """Greedy summary length for ROUGE-L and the machine-text share of the generations."""
    gen_batch: int = Field(16, ge=1)
    """Prompts per generation batch."""
    selection_share: float = Field(0.5, gt=0.0, lt=1.0)
    """Share of the held-out articles that choose (keep-best); the rest are the test split."""
    device: str | None = None
    """cpu, cuda ...; default: CUDA if present."""
