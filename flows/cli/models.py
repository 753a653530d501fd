"""Model commands: cache-logits, distill, quantize, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli import app as cli
from flows.cli import printers

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="NAME[:VERSION] of a registered model, or teacher.")
]


@cli.app.command("cache-logits")
def cache_logits(
    dataset: cli.DatasetOpt,
    mode: Annotated[str | None, typer.Option(help="sampled | topk")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="Teacher: folder, .gguf, pkg:NAME or HF id.")
    ] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Tokenize new snapshots and cache the teacher's sparse distributions (resumable)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from tasks.logits.pending import nothing_to_cache
        from warehouse import Catalog

        cfg, catalog = inv.cfg, Catalog(inv.home)
        with catalog.reading():  # one view of the catalog for every check
            done = nothing_to_cache(catalog, dataset, cfg.teacher, cfg.tokens, cfg.logits)
        if done is not None:  # no flow run (and no teacher load) for nothing
            return done
        return inv.run_flow("flows.logits:cache_logits_flow", dataset=dataset)

    cli.run_command(
        work, printers.logits, config=config,
        sets=cli.with_flags({"logits.mode": mode, "teacher.path": teacher}, set_),
        as_json=as_json, debug=debug, names={"dataset name": dataset},
    )  # fmt: skip


@cli.app.command()
def distill(
    dataset: cli.DatasetOpt,
    mode: Annotated[str | None, typer.Option(help="offline (from the cache) | online")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (distill.max_steps).")] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Train a student of the teacher on a dataset, evaluate, register and gate it.

    Several processes: `accelerate launch [--multi_gpu] --num_processes N -m flows.cli distill`."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from tasks.runtime import launch_rank

        if launch_rank() == 0:
            done = _already_distilled(inv, dataset)
            if done is not None:  # no flow run (and no model load) for nothing
                return done
            return inv.run_flow("flows.distill:distill_flow", dataset=dataset)
        # Another process of a multi-process launch: it trains its share of every batch beside
        # the main one's flow run (no flow of its own), and prints nothing: the main process
        # evaluates, registers, gates and reports.
        from tasks.distill.distill import distill as train_share
        from warehouse import Catalog

        cfg = inv.cfg
        train_share(dataset, Catalog(inv.home), cfg.teacher, cfg.distill, cfg.gates, progress=False)
        raise typer.Exit(0)

    cli.run_command(
        work, printers.distill, config=config,
        sets=cli.with_flags({"distill.mode": mode, "distill.max_steps": steps}, set_),
        as_json=as_json, debug=debug, names={"dataset name": dataset},
    )  # fmt: skip


def _already_distilled(inv: cli.Invocation, dataset: str) -> dict[str, Any] | None:
    """What a distill run of `dataset` returns when the registry already holds its student,
    answered from the catalog (`tasks/distill/pending.py`); None when it might train, or would
    record settings for the dataset (none are recorded yet)."""
    from flows.runtime import settings_to_record
    from tasks.distill.pending import already_distilled
    from warehouse import Catalog

    catalog, cfg = Catalog(inv.home), inv.cfg
    with catalog.reading():  # one view of the catalog for every check
        if settings_to_record(catalog, dataset, inv.settings, replace=False):
            return None
        done = already_distilled(catalog, dataset, cfg.teacher, cfg.distill)
    return done.to_dict() if done is not None else None


@cli.app.command()
def quantize(
    model: ModelOpt,
    method: Annotated[
        str | None,
        typer.Option(
            help="int8 | nf4 | torchao-int8 | torchao-int4 | dynamic-int8 | gguf-TYPE[-mixed] "
            "(TYPE: q8_0 q5_1 q5_0 q4_1 q4_0; `export` writes the same)"
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="Evaluate on its validation blocks (default: the model's)."
        ),
    ] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Quantize a registered model (or the teacher), evaluate it against fp32, register, gate."""
    from models.quant_config import METHODS

    if method is not None and method not in METHODS:
        raise cli.usage_error(f"--method must be one of {', '.join(METHODS)}, not {method!r}")

    _quantize_flow(
        model, dataset, printers.quantize, sets=cli.with_flags({"quantize.method": method}, set_),
        config=config, as_json=as_json, debug=debug,
    )  # fmt: skip


@cli.app.command()
def export(
    model: ModelOpt,
    format_: Annotated[str, typer.Option("--format", help="gguf (the one format)")] = "gguf",
    gguf_type: Annotated[
        str,
        typer.Option(
            "--type",
            help="q8_0 | q5_1 | q5_0 | q4_1 | q4_0; `,mixed` (e.g. q4_0,mixed) raises the "
            "tensors measured most sensitive to higher types within quantize.mixed_budget",
        ),
    ] = "q8_0",
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="Calibrate on its training blocks, evaluate on its test blocks."
        ),
    ] = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Write a registered model (or the teacher) as one GGUF file (llama.cpp, ollama, LM Studio),
    evaluate it loaded back through transformers, register it with lineage, gate it."""
    from models.quant_config import QuantError, gguf_method

    if format_ != "gguf":
        raise cli.usage_error(f"--format must be gguf, not {format_!r}")
    try:
        method = gguf_method(gguf_type)
    except QuantError as e:
        raise cli.usage_error(f"--type: {e}") from None

    _quantize_flow(
        model, dataset, printers.export, sets=set_, config=config, as_json=as_json, debug=debug,
        method=method, path=True,
    )  # fmt: skip


def _quantize_flow(
    model: str, dataset: str | None, printer: Callable[[dict[str, Any]], None], *,
    sets: list[str] | None, config: Path | None, as_json: bool, debug: bool,
    method: str | None = None, path: bool = False,
) -> None:  # fmt: skip
    """The body of `quantize` and `export`: the quantize flow on MODEL (with `method`, or
    quantize.method of the config), the model and dataset names validated first; with `path`,
    the result leads with the file written (export's GGUF)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        out = _already_quantized(inv, model, dataset, method)
        if out is None:  # no flow run (and no model load) for nothing
            out = inv.run_flow(
                "flows.quantize:quantize_flow", model=model, dataset=dataset, method=method
            )
        return {"path": out.get("file"), **out} if path else out

    cli.run_command(
        work, printer, config=config, sets=sets, as_json=as_json, debug=debug,
        names={"model name": model.partition(":")[0], "dataset name": dataset},
    )  # fmt: skip


def _already_quantized(
    inv: cli.Invocation, model: str, dataset: str | None, method: str | None
) -> dict[str, Any] | None:
    """What a quantize run of MODEL returns when the registry already holds the variant it
    would make, answered from the catalog (`tasks/quantize/pending.py`) with the settings the
    run uses (those of the dataset MODEL was trained on, without --dataset); None when it might
    quantize, or fail."""
    from flows.config import resolve_settings
    from tasks.quantize.pending import already_quantized, trained_on
    from warehouse import Catalog

    catalog, cfg = Catalog(inv.home), inv.cfg
    if not dataset:
        on = trained_on(catalog, model)
        if on is None:  # the teacher without --dataset: the run says what is missing
            return None
        cfg = resolve_settings(on, inv.config_path, inv.overrides)[0].load()
    with catalog.reading():  # one view of the catalog for every check
        done = already_quantized(catalog, model, cfg.teacher, cfg.quantize, dataset, method)
    return done.to_dict() if done is not None else None
