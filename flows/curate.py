"""Curate flow: each pending raw version -> curated snapshot (decision columns) -> funnel report
(markdown + score histograms, a Prefect artifact) -> curated gate.

Signature and embedding shards run as mapped Prefect tasks on the configured task runner
(`dedup.runner`: threads or dask); everything else is `tasks.curate.curate.curate_next`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from data_quality import GateFailed
from flows.config import run_config
from flows.runtime import dataset_run
from tasks.curate.config import RunnerConfig, parse_filters
from tasks.curate.curate import curate_next, prefect_map
from tasks.curate.report import report_curation
from tasks.gates import check_gate, gate_pending
from tasks.runtime import current_flow_run_id
from warehouse import Catalog


@flow(name="curate")
def curate_flow(
    dataset: str, config_path: str | None = None, overrides: dict[str, Any] | None = None,
    filters: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Curate every raw version of DATASET not yet curated, oldest first, gating each."""
    with dataset_run("curate", dataset, config_path, overrides, lock=False) as run:
        out = _curate(dataset, run.cfg, run.home, filters)
        run.remember()
    return out


def _curate(dataset: str, cfg: Any, home: str, filters: str | None) -> dict[str, Any]:
    names = parse_filters(filters, cfg.dedup)
    gate_pending("curated", dataset, home, cfg.gates)
    catalog = Catalog(Path(home))
    versions: list[dict[str, Any]] = []
    while True:
        result = curate_next(
            dataset,
            catalog,
            cfg.dedup,
            names,
            shard_map=prefect_map,
            teacher=cfg.teacher,
            flow_run_id=current_flow_run_id(),
        )
        if result.ref is None:
            break
        out = result.to_dict()
        versions.append(out)
        out["report"] = report_curation(result.ref, home)  # funnel + histograms, before the gate
        try:
            out["gate"] = check_gate("curated", result.ref, home, cfg.gates).to_dict()
        except GateFailed as e:
            e.stage_result = {"dataset": dataset, "versions": versions}
            raise
    return {
        "dataset": dataset,
        "filters": names,
        "versions": versions,
        "rows": sum(v["rows"] for v in versions),
        "kept": sum(v["kept"] for v in versions),
    }


def make_task_runner(rc: RunnerConfig) -> Any:
    """The Prefect task runner that `dedup.runner` asks for."""
    if rc.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=rc.workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise RuntimeError(
            "dedup.runner.kind=dask needs prefect-dask: pip install 'llm4all[scale]'"
        ) from None
    if rc.address:  # a running cluster (`dask scheduler` + `dask worker`s): see docs/scale.md
        return DaskTaskRunner(address=rc.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": rc.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        },
    )


def run_curate(
    dataset: str, config_path: str | None = None, overrides: dict[str, Any] | None = None,
    filters: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run `curate_flow` on the task runner its config names."""
    cfg, _ = run_config(config_path, overrides, dataset)
    runner = make_task_runner(cfg.dedup.runner)
    return curate_flow.with_options(task_runner=runner)(
        dataset=dataset, config_path=config_path, overrides=overrides, filters=filters
    )
