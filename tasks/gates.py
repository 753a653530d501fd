"""Gates as flows use them: a snapshot's gate as a Prefect task, and the catch-up for versions
an interrupted run left unchecked. (A model's gate runs inside `tasks.publish.publish`.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GateFailed, GateResult, GatesConfig, gate
from tasks.runtime import run_name
from warehouse import Catalog, DatasetRef

log = logging.getLogger(__name__)


@task(name="check-gate", task_run_name=run_name("gate {stage} {ref}"), cache_policy=NO_CACHE)
def check_gate(
    stage: str,
    ref: DatasetRef | None,
    home: str,
    cfg: GatesConfig,
    run: dict[str, Any] | None = None,
) -> GateResult:
    """Validate a snapshot; a failure raises GateFailed and so fails the flow run."""
    return gate(stage, ref, Catalog(Path(home)), cfg, run=run)


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
