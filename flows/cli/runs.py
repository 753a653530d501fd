"""Whole-DAG and operations commands: pipeline, refresh, demo, ui, serve, run."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from flows.cli import app as cli
from flows.cli import printers

SourcesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Inputs to ingest first (default: refresh.sources of the config)."),
]


@cli.app.command()
def pipeline(
    dataset: cli.DatasetOpt,
    sources: SourcesArg = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Every stage, each gated: ingest, curate, tokens, logits, distill (unchanged inputs skip)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        done = _nothing_to_run(inv, dataset, sources)
        if done is not None:  # no flow run (and no model load) for nothing
            return done
        return inv.run_flow("flows.pipeline:pipeline_flow", dataset=dataset, sources=sources)

    cli.run_command(
        work, printers.stages, config=config, sets=set_, as_json=as_json, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


def _nothing_to_run(
    inv: cli.Invocation, dataset: str, sources: list[str] | None, *, refresh: bool = False
) -> dict[str, Any] | None:
    """What a pipeline run (with `refresh`, a refresh) of `dataset` would return when it has
    nothing to do, answered from the catalog (`tasks/pending.py`); None when it might do
    something, or record other settings for the dataset."""
    from flows.runtime import settings_to_record
    from tasks.pending import nothing_to_run
    from warehouse import Catalog

    catalog, cfg = Catalog(inv.home), inv.cfg
    with catalog.reading():  # one view of the catalog for every check
        if settings_to_record(catalog, dataset, inv.settings, replace=True):
            return None
        return nothing_to_run(
            catalog, dataset, sources if sources is not None else cfg.refresh.sources,
            teacher=cfg.teacher, ingest=cfg.ingest, dedup=cfg.dedup, tokens=cfg.tokens,
            logits=cfg.logits, distill=cfg.distill, quantize=cfg.quantize,
            refresh=cfg.refresh if refresh else None,
        )  # fmt: skip


@cli.app.command()
def refresh(
    dataset: cli.DatasetOpt,
    sources: SourcesArg = None,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Continual learning: continue the promoted student on new data, with replay; promote it
    only if it learned the new data without forgetting the old."""
    answered: list[bool] = []  # whether the catalog answered (no flow run, no report)

    def work(inv: cli.Invocation) -> dict[str, Any]:
        done = _nothing_to_run(inv, dataset, sources, refresh=True)
        answered.append(done is not None)
        if done is not None:  # no flow run (and no model load) for nothing
            return done
        return inv.run_flow("flows.refresh:refresh_flow", dataset=dataset, sources=sources)

    def show(out: dict[str, Any]) -> None:
        printers.refresh(out)
        if any(answered):
            cli.say("nothing to do: no flow run, no refresh report published")

    cli.run_command(
        work, show, config=config, sets=set_, as_json=as_json, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


@cli.app.command()
def demo(
    config: cli.ConfigOpt = None,
    tiny: Annotated[
        bool,
        typer.Option(
            "--tiny",
            help="A random 2-layer teacher and the first 300 articles: every stage in ~2 min.",
        ),
    ] = False,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference",
            help="Also train the CE-only reference student (same init, batches, steps): "
            "about doubles the training time.",
        ),
    ] = False,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Instead: does curation pay? Students on a noisy corpus's raw vs curated "
            "rows, 3 seeds, its own report (~40 min on 2 CPU cores).",
        ),
    ] = False,
    set_: cli.SetOpt = None,
    as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:
    """The embedded default, offline: every stage on CNN/DailyMail with SmolLM2-135M-Instruct
    (both shipped in PyPI packages), then a report (with --reference, a CE-only student beside
    the KD one; with --ablation, the curation ablation instead of the pipeline).

    Prints the report's path (markdown + PNGs under the home folder; also a Prefect artifact)
    and a five-line summary.
    """
    with cli.cli_errors(as_json, debug):
        from flows.config import bundled_config

        config = config or bundled_config("demo.yaml")

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from flows.demo import demo_corpus, tiny_setup

        source, dataset = demo_corpus(), "cnn_dailymail"
        if tiny:
            source, inv.overrides = tiny_setup(inv.home, source, inv.config_path, inv.overrides)
            dataset = "cnn_dailymail_tiny"
        if ablation:  # the tiny one: the test profile (a few dozen rows, two seeds)
            profile = "ci" if tiny else "default"
            return inv.run_flow("flows.demo:ablation_flow", source=str(source), profile=profile)
        return inv.run_flow(
            "flows.demo:demo_flow", source=str(source), dataset=dataset,
            reference=reference or tiny,
        )  # fmt: skip

    printer = printers.ablation if ablation else printers.demo
    cli.run_command(work, printer, config=config, sets=set_, as_json=as_json, debug=debug)


@cli.app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 4200,
    host: Annotated[
        str, typer.Option(help="Interface; 127.0.0.1 keeps it off the network.")
    ] = "127.0.0.1",
    config: cli.ConfigOpt = None,
    debug: cli.DebugOpt = False,
) -> None:
    """The Prefect UI for this warehouse's runs (Ctrl-C or SIGTERM stops it and its server).

    It takes over from the background server flow commands start (same database)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        import fcntl
        import os
        import signal

        from flows.cli import prefect_env as pe

        def stop(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        folder = inv.home / "prefect"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "server.lock", "w") as lock:  # no background start meanwhile
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = pe.running_server(inv.home)
            if current and current.get("kind") == "ui":
                raise pe.ServerError(f"`llm4all ui` already serves this home: {current['url']}")
            if current:
                cli.err(f"stopping the background Prefect server {current['url']}")
                pe.stop_process(int(current["pid"]))
            info = pe.start_server(inv.home, host, port, folder / "server.log", 180.0)
            pe.record_server(inv.home, info | {"kind": "ui"})
        cli.err(
            f"Prefect UI: {info['url']}  (llm4all commands for {inv.home} report to it; "
            f"server log: {folder / 'server.log'})"
        )
        try:
            _, status = os.waitpid(int(info["pid"]), 0)
            raise SystemExit(os.waitstatus_to_exitcode(status))
        except KeyboardInterrupt:
            pass
        finally:
            pe.stop_process(int(info["pid"]))
            recorded = pe.running_server(inv.home) or {}
            if recorded.get("pid") in (None, info["pid"]):
                pe.server_file(inv.home).unlink(missing_ok=True)
        return {}

    cli.run_command(work, None, config=config, sets=None, as_json=False, debug=debug)


@cli.app.command()
def serve(
    dataset: cli.DatasetOpt,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Serve the pipeline and refresh deployments of DATASET on their schedules (Ctrl-C stops).

    Runs use the dataset's recorded settings (those it was built with) unless --config/--set
    say otherwise; runs of the dataset queue and go one at a time, in the order scheduled."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        url = inv.connect()
        from prefect import serve as prefect_serve

        from flows.cli.prefect_env import configure_logging
        from flows.deployments import build_deployments

        told = inv.config_path is not None or bool(inv.overrides)
        deployments = build_deployments(
            dataset, inv.cfg, inv.config_path, inv.overrides if told else None
        )
        configure_logging(debug)
        cli.err(f"settings: {inv.settings.describe()}; Prefect server {url}")
        for d in deployments:
            when = d.schedules[0].schedule.cron if d.schedules else "on demand"
            cli.err(f"serving {d.flow_name}/{d.name} ({when}); "
                    f"trigger: llm4all run {d.flow_name} -d {dataset}")  # fmt: skip
        prefect_serve(*deployments, limit=1, print_starting_message=False)
        return {}

    cli.run_command(
        work, None, config=config, sets=set_, as_json=False, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


@cli.app.command()
def run(
    flow_name: Annotated[str, typer.Argument(help="pipeline | refresh", metavar="FLOW")],
    dataset: cli.DatasetOpt,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Flow parameter k=v (YAML value).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the run; exit non-zero unless it completes.")
    ] = False,
    config: cli.ConfigOpt = None, as_json: cli.JsonOpt = False, debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Trigger a run of a served deployment (`llm4all serve`); prints the flow run id.

    Fails at once when no `llm4all serve` is serving it (the run would never start). With
    --wait, prints the run's log lines as they come and exits 0 when it completes, 3 when a
    gate failed, 1 when it failed, crashed or was cancelled otherwise."""
    if flow_name not in ("pipeline", "refresh"):
        raise cli.usage_error(f"FLOW must be pipeline or refresh, not {flow_name!r}")

    def work(inv: cli.Invocation) -> dict[str, Any]:
        from flows.config import parse_overrides
        from flows.deployments import RunFailed, follow, trigger

        inv.connect(start=False)
        flow_run = trigger(flow_name, dataset, parse_overrides(param or []))
        out = {"deployment": f"{flow_name}/{dataset}", "flow_run_id": str(flow_run.id),
               "flow_run": flow_run.name, "state": flow_run.state_name}  # fmt: skip
        if not wait:
            return out
        if not as_json:
            cli.err(f"started {out['deployment']}: flow run {flow_run.name} ({flow_run.id})")
        started = time.monotonic()
        final = follow(flow_run.id, echo=cli.err)
        out |= {"state": final.name, "message": final.message,
                "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
        if not final.is_completed():
            raise RunFailed(out)
        return out

    cli.run_command(
        work, _print_run, config=config, sets=None, as_json=as_json, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


def _print_run(out: dict[str, Any]) -> None:
    if "seconds" in out:
        cli.say(f"{out['deployment']}: flow run {out['flow_run']} {out['state']} "
                f"in {out['seconds']} s")  # fmt: skip
    else:
        cli.say(f"started {out['deployment']}: flow run {out['flow_run']} ({out['state']}; "
                "follow it in the Prefect UI, or rerun with --wait)")  # fmt: skip
