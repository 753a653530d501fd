"""Data commands: ingest, curate, score, calibrate, quarantine, status."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli import app as cli
from flows.cli import printers

FiltersOpt = Annotated[
    str | None,
    typer.Option(
        "--filters",
        help="Comma-separated: exact,quality,near,semantic,mgt,factuality. "
        "Default: the dedup filters enabled in the config.",
    ),
]


@cli.app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="File, folder, saved HF dataset or hf:NAME.")],
    dataset: cli.DatasetOpt,
    fmt: Annotated[
        str | None, typer.Option("--format", help="auto|jsonl|parquet|csv|txt|hf")
    ] = None,
    text_field: Annotated[str | None, typer.Option(help="Field with the text.")] = None,
    summary_field: Annotated[str | None, typer.Option(help="Field with the summary.")] = None,
    id_field: Annotated[str | None, typer.Option(help="Field with the row id.")] = None,
    max_chars: Annotated[int | None, typer.Option(help="Quarantine longer texts.")] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Ingest a source into a new raw snapshot; bad rows are quarantined, not dropped."""
    flags = {
        "ingest.format": fmt,
        "ingest.text_field": text_field,
        "ingest.summary_field": summary_field,
        "ingest.id_field": id_field,
        "ingest.max_chars": max_chars,
    }

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from tasks.ingest.readers import check_source

        check_source(source, inv.cfg.ingest)  # fail fast, before a Prefect server is started
        return inv.run_flow("flows.ingest:ingest_flow", source=source, dataset=dataset)

    cli.run_command(
        work, printers.ingest, config=config, sets=cli.with_flags(flags, set_),
        as_json=as_json, debug=debug, names={"dataset name": dataset},
    )  # fmt: skip


def _filters(spec: str | None, cfg: Any) -> list[str]:
    """The filters asked for, in run order; an unknown one is a usage error (exit 2)."""
    from tasks.curate.config import CurateError, parse_filters

    try:
        return parse_filters(spec, cfg.dedup)
    except CurateError as e:
        raise cli.usage_error(str(e)) from None


@cli.app.command()
def curate(
    dataset: cli.DatasetOpt,
    filters: FiltersOpt = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Dedup every raw version not yet curated into curated snapshots (decisions, no deletions)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        names = _filters(filters, inv.cfg)
        from tasks.curate.pending import nothing_to_curate
        from warehouse import Catalog

        catalog = Catalog(inv.home)
        with catalog.reading():  # one view of the catalog for every check
            nothing = nothing_to_curate(catalog, dataset)
        if nothing:  # no flow run for nothing
            return {"dataset": dataset, "filters": names, "versions": [], "rows": 0, "kept": 0}
        inv.connect()
        from flows.cli.prefect_env import configure_logging
        from flows.curate import run_curate

        configure_logging(debug)
        return run_curate(
            dataset, config_path=inv.config_path, overrides=inv.overrides, filters=",".join(names)
        )

    cli.run_command(
        work, printers.curate, config=config, sets=set_, as_json=as_json, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


@cli.app.command()
def score(
    source: Annotated[str, typer.Argument(help="JSONL, Parquet or CSV file (column `text`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    filters: FiltersOpt = None,
    text_field: Annotated[str | None, typer.Option(help="Field with the text.")] = None,
    id_field: Annotated[str | None, typer.Option(help="Field with the row id.")] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Score any file without touching the warehouse: one output row per input row, in order."""
    flags = {"ingest.text_field": text_field, "ingest.id_field": id_field}
    warm_up = None
    if filters is None or {"exact", "near"} & {f.strip() for f in filters.split(",")}:
        warm_up = _warm_up_kernels(source)  # overlaps numba's start-up with config and reader

    def work(inv: cli.Invocation) -> dict[str, Any]:
        names = _filters(filters, inv.cfg)
        from tasks.curate.score import score_file

        cli.plain_logging(debug)
        dedup = inv.cfg.dedup
        shard_map = None
        if not set(names) <= {"exact", "near"}:  # the general path maps shards on threads
            from tasks.curate.dedup import thread_map

            shard_map = thread_map(dedup.runner.workers)
        return score_file(
            source, str(output), dedup, names, inv.cfg.ingest, shard_map=shard_map,
            teacher=inv.cfg.teacher, home=inv.home,
        ).to_dict()  # fmt: skip

    try:
        cli.run_command(
            work, printers.score, config=config, sets=cli.with_flags(flags, set_),
            as_json=as_json, debug=debug, prefect=False,
        )  # fmt: skip
    finally:  # no thread outlives the command (in-process callers, e.g. tests, reuse stderr)
        if warm_up is not None:
            warm_up.join()


def _warm_up_kernels(source: str) -> threading.Thread | None:
    """Load (or, on the first run after an install, compile) the near-dup kernels on a thread:
    numba's start-up (~1 s of CPU) then runs beside the config and the reader. Not for a tiny
    input, which runs them interpreted (`tasks.curate.jit`)."""
    from tasks.curate.jit import is_tiny

    if is_tiny(source):
        return None

    def warm() -> None:
        from tasks.curate import kernels

        kernels.warm_up()

    thread = threading.Thread(target=warm, name="numba-warm-up", daemon=True)
    thread.start()
    return thread


@cli.app.command()
def calibrate(
    reference: Annotated[str, typer.Argument(help="Human-written texts (JSONL/Parquet/CSV).")],
    target_fpr: Annotated[
        float, typer.Option("--target-fpr", help="Share of human texts allowed above it.")
    ] = 0.01,
    write: Annotated[
        Path | None,
        typer.Option("--write", help="Also set dedup.mgt.threshold in this YAML config file."),
    ] = None,
    text_field: Annotated[str | None, typer.Option(help="Field with the text.")] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Threshold of the machine-text score for a target false-positive rate on human text."""
    if not 0.0 < target_fpr < 1.0:
        raise cli.usage_error(f"--target-fpr must be in (0, 1), got {target_fpr}")

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from flows.cli.prefect_env import configure_logging
        from tasks.curate.calibrate import calibrate_file, write_threshold

        configure_logging(debug)
        cfg = inv.cfg
        out = calibrate_file(reference, cfg.dedup, cfg.ingest, cfg.teacher, target_fpr)
        if write is not None:
            write_threshold(write, out["threshold"])
        out["written"] = str(write) if write is not None else None
        return out

    cli.run_command(
        work, printers.calibrate, config=config,
        sets=cli.with_flags({"ingest.text_field": text_field}, set_), as_json=as_json, debug=debug,
        prefect=False,
    )  # fmt: skip


@cli.app.command()
def quarantine(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    run: Annotated[str | None, typer.Option(help="Only this ingest run id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    config: cli.ConfigOpt = None, as_json: cli.JsonOpt = False, debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Rows that ingest set aside, with line numbers and reasons."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from warehouse import Catalog

        rows = Catalog(inv.home).quarantined(dataset, run_id=run, limit=limit)
        return {"dataset": dataset, "rows": rows}

    cli.run_command(
        work, printers.quarantine, config=config, sets=None, as_json=as_json, debug=debug,
        names={"dataset name": dataset}, prefect=False,
    )  # fmt: skip


@cli.app.command()
def status(
    config: cli.ConfigOpt = None, as_json: cli.JsonOpt = False, debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Datasets with their versions, rows and gate results; models with metrics and lineage."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from warehouse import Catalog
        from warehouse.names import STAGES
        from warehouse.registry import list_models

        catalog = Catalog(inv.home)
        order = {stage: i for i, stage in enumerate(STAGES)}  # pipeline order, not alphabetical
        versions = sorted(
            catalog.versions(), key=lambda v: (v.ref.name, order[v.ref.stage], v.ref.version)
        )
        datasets: dict[str, dict[str, Any]] = {}
        for v in versions:
            d = datasets.setdefault(
                f"{v.ref.stage}/{v.ref.name}",
                {"stage": v.ref.stage, "name": v.ref.name, "rows": 0, "versions": []},
            )
            d["versions"].append(v.to_dict())
            if v.gate_passed:
                d["rows"] += v.ref.rows
        names = sorted({d["name"] for d in datasets.values()})
        return {
            "home": str(inv.home),
            "datasets": list(datasets.values()),
            "settings": {n: s for n in names if (s := catalog.settings(n)) is not None},
            "ingest_runs": catalog.ingest_runs()[-20:],
            "models": [m.to_dict() for m in list_models(catalog)],
        }

    cli.run_command(
        work, printers.status, config=config, sets=None, as_json=as_json, debug=debug,
        prefect=False,
    )  # fmt: skip
