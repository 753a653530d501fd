"""The one way a stage that makes a model finishes: a run key that says whether the registry
already holds this exact run, then gate, register (with lineage, the gate's outcome and the
promotion it earns, in one transaction) and clear the work folder.

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

from data_quality import GateFailed, GatesConfig
from data_quality import gate as run_gate
from warehouse import Catalog
from warehouse.registry import ModelInfo, list_models, next_version, register_model


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
    reject: dict[str, Any] | None = None,
    requires_promoted: str | None = None,
) -> ModelInfo:
    """Run the `gate` suite ("student" or "quantized") on the next version of `name`, then
    register `folder` as that version with the outcome, in one transaction under the writer
    lock: a crash leaves no version or a gated one. A pass promotes it (only while
    `requires_promoted` is still the promoted version, when given: a refresh's parent); a
    failure is recorded, then raised (GateFailed). `gate=None` with `reject` registers it as
    not passed for that reason (a refresh that kept its parent); with neither, ungated.
    `gate_run` adds facts the suite checks beside the metrics (e.g. `bad_weights`). `work`
    (checkpoints, scratch) is removed once the model is registered."""
    failed: GateFailed | None = None
    passed, report = (False, reject) if reject is not None else (None, None)
    with catalog.writing():
        version = next_version(catalog, name)
        if gate is not None:
            key = f"models/{name}@{version}"
            facts = {"run_id": key, "target": key, "metrics": metrics, **(gate_run or {})}
            try:
                passed = run_gate(gate, None, catalog, gates, run=facts).passed
            except GateFailed as e:
                failed, passed, report = e, False, e.result.to_dict()
        info = register_model(
            catalog, name, folder, metrics=metrics, **asdict(lineage), gate_passed=passed,
            gate_report=report, requires_promoted=requires_promoted, expect_version=version,
        )  # fmt: skip
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)  # the model is registered
    if failed is not None:
        raise failed
    return info
