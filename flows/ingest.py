"""Ingest flow: source -> raw snapshot -> raw gate."""

from __future__ import annotations

from typing import Any

from prefect import flow

from data_quality import GateFailed
from flows.runtime import dataset_run
from tasks.gates import check_gate, gate_pending
from tasks.ingest.ingest import ingest_source


@flow(name="ingest")
def ingest_flow(
    source: str,
    dataset: str,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read SOURCE into a new version of raw/DATASET and gate it."""
    with dataset_run("ingest", dataset, config_path, overrides, lock=False) as run:
        cfg, home = run.cfg, run.home
        gate_pending("raw", dataset, home, cfg.gates)
        result = ingest_source(source, dataset, home, cfg.ingest)
        out = result.to_dict()
        if result.ref is not None or result.quarantined:
            # Without a new snapshot there is still the run to judge: a file of garbage.
            stats = None if result.ref else _run_stats(out)
            try:
                out["gate"] = check_gate("raw", result.ref, home, cfg.gates, run=stats).to_dict()
            except GateFailed as e:
                e.stage_result = out  # the CLI reports the counts beside the failure
                raise
        else:
            out["gate"] = None  # nothing new, nothing bad: nothing to check
        run.remember()
    return out


def _run_stats(r: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": r["run_id"], "rows_in": r["rows_in"], "quarantined": r["quarantined"]}
