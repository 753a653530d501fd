"""What quantization has left to do, from the catalog alone (no Prefect, no torch, no model):
which model a variant is made from, the data it is evaluated on, the run key, and whether the
registry already holds the variant. `quantize_model` starts here, and `llm4all quantize`,
`llm4all export` and `llm4all pipeline` (`tasks/pending.py`) answer "nothing to do" from it
without starting a flow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.loading_config import ModelSpec
from models.quant import QUANT_FILE
from models.quant_config import QuantError
from tasks.publish import done_run, run_key
from tasks.quantize.config import QuantizeConfig, QuantizeError
from warehouse import Catalog, VersionInfo, validate_name
from warehouse.catalog import CatalogError
from warehouse.registry import ModelInfo, get_model, list_models

TEACHER = "teacher"  # the model argument that names the configured teacher


@dataclass
class QuantizeResult:
    parent: str  # registry key of the fp32 parent (models/NAME@V), or the teacher's path
    model: dict[str, Any]  # the registered quantized model (ModelInfo.to_dict())
    skipped: bool  # the registry already held this exact run
    metrics: dict[str, Any] | None  # None when skipped (the model's metrics hold them)
    seconds: float

    @property
    def file(self) -> str | None:
        """gguf-*: the registered .gguf file (what `llm4all export` hands the user)."""
        name = (self.metrics or self.model.get("metrics") or {}).get("file")
        return str(Path(self.model["path"]) / name) if name else None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"file": self.file}

    @classmethod
    def already_done(cls, parent: str, model: ModelInfo) -> QuantizeResult:
        """The result of a run whose variant the registry already holds."""
        return cls(parent, model.to_dict(), True, None, 0.0)


@dataclass
class Parent:
    key: str  # lineage: models/NAME@V, or the teacher's path
    name: str  # for the default name of the variant
    spec: ModelSpec  # how to load it, in fp32
    info: ModelInfo | None  # None for the teacher


@dataclass
class VariantRun:
    """One quantization: its parent, the dataset it is evaluated on, the variant's registry
    name, the tokens versions of the evaluation and the run key."""

    parent: Parent
    dataset: str
    name: str
    tokens: list[VersionInfo]
    key: str


def resolve_parent(model_arg: str, catalog: Catalog, teacher: ModelSpec) -> Parent:
    """`teacher`, `NAME` (its promoted version, else its newest) or `NAME:VERSION`."""
    if model_arg == TEACHER:
        return Parent(teacher.path, TEACHER, teacher.model_copy(update={"dtype": "float32"}), None)
    name, _, version = model_arg.partition(":")
    validate_name(name, "model name")
    if version and not version.isdigit():
        raise QuantizeError(f"model {model_arg!r}: the version after ':' must be a number")
    try:
        if version:
            info = get_model(catalog, name, int(version))
        else:
            models = list_models(catalog, name)
            promoted = [m for m in models if m.promoted]
            info = (promoted or models)[-1] if models else get_model(catalog, name)
    except CatalogError as e:
        raise QuantizeError(f"{e}: see `llm4all status`, or quantize `teacher`") from None
    if (Path(info.path) / QUANT_FILE).exists():
        raise QuantizeError(f"{info.key} is already quantized: quantize its fp32 parent")
    spec = ModelSpec(path=info.path, dtype="float32")
    return Parent(info.key, name, spec, info)


def eval_tokens(catalog: Catalog, dataset: str) -> list[VersionInfo]:
    tokens = [v for v in catalog.versions("tokens", dataset) if v.gate_passed]
    if not tokens:
        raise QuantizeError(f"no tokens snapshot of {dataset!r} has passed its gate")
    return tokens


def _dataset_of(parent: Parent, dataset: str | None) -> str:
    if dataset:
        return validate_name(dataset)
    trained = _tokens_dataset(parent.info)
    if trained is None:
        raise QuantizeError(
            f"no dataset to evaluate {parent.key} on: pass --dataset (its validation blocks)"
        )
    return trained


def _tokens_dataset(info: ModelInfo | None) -> str | None:
    """The dataset of the first tokens snapshot a registered model was trained on."""
    for key in info.tokens if info else []:
        stage, _, rest = key.partition("/")
        if stage == "tokens" and "@" in rest:
            return rest.partition("@")[0]
    return None


def trained_on(catalog: Catalog, model_arg: str) -> str | None:
    """The dataset a registered model (NAME: its newest version, or NAME:VERSION) was trained
    on: whose run lock a quantization of it takes, and whose settings it uses; None for the
    teacher or a model not registered."""
    name, _, version = model_arg.partition(":")
    try:
        info = get_model(catalog, name, int(version)) if version.isdigit() else None
        info = info or (list_models(catalog, name) or [None])[-1]
    except CatalogError:
        return None
    return _tokens_dataset(info)


def variant_run(
    model_arg: str, catalog: Catalog, teacher: ModelSpec, cfg: QuantizeConfig,
    dataset: str | None, method: str,
) -> VariantRun:  # fmt: skip
    """What `quantize_model` would make of `model_arg` with `method` now; raises QuantizeError
    when there is nothing to quantize or evaluate on."""
    parent = resolve_parent(model_arg, catalog, teacher)
    dataset = _dataset_of(parent, dataset)
    name = cfg.name if cfg.name and method == cfg.method else f"{parent.name}-{method}"
    validate_name(name, "model name")
    tokens = eval_tokens(catalog, dataset)
    key = run_key({
        "parent": parent.key,
        "parent_created": str(parent.info.created_at) if parent.info else None,
        "tokens": [(v.ref.key, v.ref.sha256) for v in tokens],
        "config": cfg.model_copy(update={"method": method}).config_hash(),
    })  # fmt: skip
    return VariantRun(parent, dataset, name, tokens, key)


def already_quantized(
    catalog: Catalog, model_arg: str, teacher: ModelSpec, cfg: QuantizeConfig,
    dataset: str | None, method: str | None = None,
) -> QuantizeResult | None:  # fmt: skip
    """The result a `quantize_model` run returns when the registry already holds the variant
    it would make (its run key); None when it would quantize, or fail (the run says why)."""
    method = method or cfg.method
    try:
        cfg.quant_config(method)  # a method the run would refuse is its to report
        run = variant_run(model_arg, catalog, teacher, cfg, dataset, method)
        done = done_run(catalog, run.name, run.key)
    except (QuantizeError, QuantError, CatalogError, ValueError):  # ValueError: a bad name
        return None
    return QuantizeResult.already_done(run.parent.key, done) if done else None
