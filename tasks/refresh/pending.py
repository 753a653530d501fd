"""What a refresh has left to do, from the catalog alone (no Prefect, no torch, no model): the
promoted student it would continue, the tokens snapshots new since that student's data, the run
key, and the result of a refresh with nothing to train. `refresh_student` starts here, and
`llm4all refresh` (`tasks/pending.py: nothing_to_run`) answers "nothing to do" from it without
starting a flow run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig, DistillError
from tasks.distill.pending import training_data
from tasks.publish import done_run, run_key
from tasks.refresh.config import RefreshConfig
from warehouse import Catalog, CatalogError, InvalidName, VersionInfo, validate_name
from warehouse.registry import ModelInfo, list_models


@dataclass
class RefreshResult:
    dataset: str
    parent: str | None  # the version that was continued
    model: dict[str, Any] | None  # the candidate (None when there was nothing to do)
    promoted: str | None  # the promoted version after this run
    skipped: str | None  # why nothing was trained, if so
    decision: dict[str, Any] | None
    train: dict[str, Any] | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RefreshRun:
    """One refresh: the student it continues, its data, what is new in it, and the run key."""

    dataset: str
    name: str  # the student's registry name
    current: ModelInfo  # its promoted version, the one continued
    tokens: list[VersionInfo]  # every tokens version the refresh reads (old and new)
    caches: list[VersionInfo]  # their logit caches ([] online)
    new: list[int]  # indices into `tokens` of the versions `current` was not trained on
    train_cfg: DistillConfig  # the distill settings with the refresh's steps, warmup and lr
    key: str  # parent, data and configs: a registered candidate with it is this run's result

    def nothing_new(self) -> RefreshResult | None:
        """The result of a refresh with no tokens snapshot newer than `current`'s data."""
        if self.new:
            return None
        key = self.current.key
        why = f"no tokens snapshot of {self.dataset!r} newer than {key}'s data"
        return RefreshResult(self.dataset, key, None, key, why, None, None, 0.0)


def promoted_model(catalog: Catalog, name: str) -> ModelInfo:
    current = [m for m in list_models(catalog, name) if m.promoted]
    if not current:
        raise DistillError(f"no promoted version of {name!r}: run `llm4all distill` first")
    return current[-1]


def refresh_run(
    catalog: Catalog, dataset: str, teacher: ModelSpec, dcfg: DistillConfig, rcfg: RefreshConfig
) -> RefreshRun:
    """What a refresh of `dataset` would do now; raises DistillError when it cannot (no
    promoted student, another teacher, no data)."""
    validate_name(dataset)
    name = dcfg.student_name(dataset)
    current = promoted_model(catalog, name)
    if current.teacher != teacher.path:  # before anything is trained or written
        raise DistillError(
            f"{current.key} was distilled from {current.teacher}, but this run's teacher is "
            f"{teacher.path}: a refresh must not mix two teachers (run with the "
            f"dataset's recorded settings, or distill a new student)"
        )
    tokens, caches = training_data(catalog, dataset, teacher, dcfg)
    seen = set(current.tokens)
    new = [i for i, v in enumerate(tokens) if v.ref.key not in seen]
    train_cfg = dcfg.model_copy(
        update={
            "max_steps": rcfg.steps,
            "warmup_steps": rcfg.warmup_steps,
            "lr": rcfg.lr or dcfg.lr,
            "early_stop_patience": 0,
        }
    )
    key = run_key({
        "parent": current.key,
        "tokens": [(v.ref.key, v.ref.sha256) for v in tokens],
        "logits": [(v.ref.key, v.ref.sha256) for v in caches],
        "distill": train_cfg.config_hash(),
        "refresh": rcfg.model_dump(exclude={"sources", "cron", "pipeline_cron"}),
    })  # fmt: skip
    return RefreshRun(dataset, name, current, tokens, caches, new, train_cfg, key)


def done_before(catalog: Catalog, run: RefreshRun) -> RefreshResult | None:
    """The result of a refresh whose candidate the registry already holds (its run key)."""
    done = done_run(catalog, run.name, run.key)
    if done is None:
        return None
    promoted = promoted_model(catalog, run.name).key
    return RefreshResult(
        run.dataset, run.current.key, done.to_dict(), promoted, "done before",
        done.metrics.get("refresh"), None, 0.0,
    )  # fmt: skip


def already_refreshed(
    catalog: Catalog, dataset: str, teacher: ModelSpec, dcfg: DistillConfig, rcfg: RefreshConfig
) -> RefreshResult | None:
    """The result a refresh of `dataset` returns when it has nothing to train: no tokens
    snapshot newer than the promoted student's data, or a candidate already registered with
    this run's key; None when it would train, or fail (the run says why)."""
    try:
        run = refresh_run(catalog, dataset, teacher, dcfg, rcfg)
        return run.nothing_new() or done_before(catalog, run)
    except (DistillError, CatalogError, InvalidName):
        return None
