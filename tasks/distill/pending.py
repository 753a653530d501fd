"""What distillation has left to do, from the catalog alone (no Prefect, no torch, no model):
the data a student of a dataset trains on, the run key of that training, and whether the
registry already holds its student. `distill` starts here, and `llm4all distill` and
`llm4all pipeline` (`tasks/pending.py`) answer "nothing to do" from it without starting a flow
run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig, DistillError
from tasks.publish import done_run, run_key
from tasks.tokens.pending import trainable_tokens
from warehouse import Catalog, CatalogError, InvalidName, VersionInfo, validate_name
from warehouse.registry import ModelInfo


@dataclass
class DistillResult:
    dataset: str
    model: dict[str, Any]
    skipped: bool  # the registry already held this exact model
    train: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def already_done(cls, dataset: str, model: ModelInfo) -> DistillResult:
        """The result of a run whose student the registry already holds."""
        return cls(dataset, model.to_dict(), True, None, None, 0.0)


@dataclass
class StudentRun:
    """One training of a student: its registry name, its data and the run key."""

    name: str
    tokens: list[VersionInfo]  # the tokens versions it trains on
    caches: list[VersionInfo]  # their logit caches ([] online)
    key: str  # teacher, data and config: a registered model with it is this run's result


def training_data(
    catalog: Catalog, dataset: str, teacher: ModelSpec, cfg: DistillConfig
) -> tuple[list[VersionInfo], list[VersionInfo]]:
    """(gated tokens versions not superseded by curation, their gated logit caches from the
    teacher; [] online). The caches of one run all hold the same kind of targets (mode and
    draws or k): the newest kind that covers every tokens version."""
    tokens = trainable_tokens(catalog, dataset)
    if not tokens:
        raise DistillError(f"no tokens snapshot of {dataset!r} has passed its gate")
    if cfg.mode == "online":
        return tokens, []
    by_kind: dict[str, dict[str, VersionInfo]] = {}
    for v in catalog.versions("logits", dataset):
        if v.gate_passed and v.meta.get("teacher") == teacher.path:
            by_kind.setdefault(cache_kind(v.meta), {})[str(v.meta.get("tokens"))] = v
    complete = [k for k in by_kind if all(t.ref.key in by_kind[k] for t in tokens)]
    if not complete:
        best = max(by_kind, key=lambda k: sum(t.ref.key in by_kind[k] for t in tokens), default="")
        missing = next(t for t in tokens if t.ref.key not in by_kind.get(best, {}))
        raise DistillError(
            f"no gated logit cache of {missing.ref.key} from {teacher.path}"
            + (f" with the others' kind of targets ({best})" if by_kind else "")
            + f": run `llm4all cache-logits --dataset {dataset}` first, or set "
            "distill.mode=online"
        )
    kind = max(complete, key=lambda k: max(c.ref.version for c in by_kind[k].values()))
    return tokens, [by_kind[kind][t.ref.key] for t in tokens]


def cache_kind(meta: dict[str, Any]) -> str:
    """What makes two caches' targets mixable: the mode, and S draws or k ids."""
    params = meta.get("params") or {}
    return f"{params.get('mode')}/{params.get('samples', params.get('k'))}"


def student_run(
    catalog: Catalog, dataset: str, teacher: ModelSpec, cfg: DistillConfig
) -> StudentRun:
    """What `distill` would train now; raises DistillError when the data is not there."""
    validate_name(dataset)
    name = cfg.student_name(dataset)
    validate_name(name)
    tokens, caches = training_data(catalog, dataset, teacher, cfg)
    key = run_key({
        "teacher": teacher.path,
        "tokens": [(v.ref.key, v.ref.sha256) for v in tokens],
        "logits": [(v.ref.key, v.ref.sha256) for v in caches],
        "config": cfg.config_hash(),
    })  # fmt: skip
    return StudentRun(name, tokens, caches, key)


def already_distilled(
    catalog: Catalog, dataset: str, teacher: ModelSpec, cfg: DistillConfig
) -> DistillResult | None:
    """The result a `distill` run of `dataset` returns when the registry already holds the
    student it would train (its run key); None when it would train, or fail (the run says
    why)."""
    try:
        run = student_run(catalog, dataset, teacher, cfg)
        done = done_run(catalog, run.name, run.key)
    except (DistillError, CatalogError, InvalidName):
        return None
    return DistillResult.already_done(dataset, done) if done else None
