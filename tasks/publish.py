"""The one way a stage that makes a model finishes: a run key that says whether the registry
already holds this exact run, then register (with lineage), clear the work folder, and gate.

distill, refresh and quantize all end here:

    key = run_key({...everything the result depends on...})
    if (done := done_run(catalog, name, key)): return done        # a rerun is a no-op
    ... train or quantize into <work>/final ...
    info = publish(catalog, name, work / "final", lineage, metrics | {"run_key": key},
                   gate="student", gates=cfg, work=work)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_quality import GatesConfig
from tasks.gates import gate_model
from warehouse import Catalog
from warehouse.registry import ModelInfo, get_model, list_models, register_model


def run_key(payload: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of `payload` (JSON, sorted keys): the identity of a run."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def done_run(catalog: Catalog, name: str, key: str) -> ModelInfo | None:
    """The registered version of `name` that a run with `key` already produced, if any."""
    for m in list_models(catalog, name):
        if m.metrics.get("run_key") == key:
            return m
    return None


@dataclass
class Lineage:
    """Where a model came from, as the registry records it."""

    teacher: str
    tokens: list[str]  # tokens snapshots it was trained (or evaluated) on
    logits: list[str]  # logit caches it learned from
    config_hash: str
    parent: str | None = None  # the teacher's path, or models/NAME@V it was continued from
    flow_run_id: str | None = None


def publish(
    catalog: Catalog,
    name: str,
    folder: Path,
    lineage: Lineage,
    metrics: dict[str, Any],
    *,
    gate: str | None,
    gates: GatesConfig,
    work: Path | None = None,
    gate_run: dict[str, Any] | None = None,
) -> ModelInfo:
    """Register `folder` as the next version of `name`, remove `work` (checkpoints, scratch),
    then run the `gate` suite on it ("student" or "quantized"; None: no gate) and return the
    version as the registry now has it. A failed gate is recorded, then raised (GateFailed)."""
    info = register_model(catalog, name, folder, metrics=metrics, **asdict(lineage))
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)  # the model is registered
    if gate is not None:
        gate_model(catalog, info, gate, gates, **(gate_run or {}))
    return get_model(catalog, name, info.version)
