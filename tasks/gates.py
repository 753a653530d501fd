"""Gates as flows use them: a snapshot's gate as a Prefect task, the gate of a registered model,
and the catch-up for versions an interrupted run left unchecked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GateFailed, GateResult, GatesConfig, gate
from warehouse import Catalog, DatasetRef
from warehouse.registry import ModelInfo, set_model_gate

log = logging.getLogger(__name__)


@task(name="check-gate", cache_policy=NO_CACHE)
def check_gate(
    stage: str,
    ref: DatasetRef | None,
    home: str,
    cfg: GatesConfig,
    run: dict[str, Any] | None = None,
) -> GateResult:
    """Validate a snapshot; a failure raises GateFailed and so fails the flow run."""
    return gate(stage, ref, Catalog(Path(home)), cfg, run=run)


def gate_model(catalog: Catalog, info: ModelInfo, stage: str, cfg: GatesConfig, **run: Any) -> None:
    """Run the `stage` gate ("student", "quantized") on a registered model and record the
    outcome in the registry (a pass may promote it); a failure is recorded, then raised.
    `run` adds facts the suite checks beside the metrics (e.g. `bad_weights`)."""
    facts = {"run_id": info.key, "target": info.key, "metrics": info.metrics, **run}
    try:
        result = gate(stage, None, catalog, cfg, run=facts)
    except GateFailed as e:
        set_model_gate(catalog, info.name, info.version, False, e.result.to_dict())
        raise
    set_model_gate(catalog, info.name, info.version, result.passed, None)


def gate_pending(stage: str, name: str, home: str, cfg: GatesConfig) -> list[GateResult]:
    """Gate versions left unchecked by a run that died between commit and gate.

    A failure here is recorded (the version is marked failed, so nothing reads it) and logged,
    not raised: it belongs to the earlier run, and must not block this one.
    """
    catalog = Catalog(Path(home))
    results = []
    for v in catalog.versions(stage, name):
        if v.gate_passed is None:
            try:
                results.append(gate(stage, v.ref, catalog, cfg))
                log.warning("gated %s, left unchecked by an interrupted run: passed", v.ref.key)
            except GateFailed as e:
                results.append(e.result)
                log.warning("gated %s, left unchecked by an interrupted run: %s", v.ref.key, e)
    return results
