"""Whole-DAG and operations commands: pipeline, refresh, demo, ui, serve, run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
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
    cli.run_command(
        lambda inv: inv.run_flow("flows.pipeline:pipeline_flow", dataset=dataset, sources=sources),
        printers.stages, config=config, sets=set_, as_json=as_json, debug=debug,
        names={"dataset name": dataset},
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
    cli.run_command(
        lambda inv: inv.run_flow("flows.refresh:refresh_flow", dataset=dataset, sources=sources),
        printers.refresh, config=config, sets=set_, as_json=as_json, debug=debug,
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
    set_: cli.SetOpt = None,
    as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:
    """The embedded default, offline: every stage on CNN/DailyMail with SmolLM2-135M-Instruct
    (both shipped in PyPI packages), then a report (with --reference, a CE-only student beside
    the KD one).

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
        return inv.run_flow(
            "flows.demo:demo_flow", source=str(source), dataset=dataset,
            reference=reference or tiny,
        )  # fmt: skip

    cli.run_command(work, printers.demo, config=config, sets=set_, as_json=as_json, debug=debug)


@cli.app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 4200,
    host: Annotated[
        str, typer.Option(help="Interface; 127.0.0.1 keeps it off the network.")
    ] = "127.0.0.1",
    config: cli.ConfigOpt = None,
    debug: cli.DebugOpt = False,
) -> None:
    """The Prefect UI for this warehouse's runs (Ctrl-C stops it)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        env = dict(os.environ)  # with the PREFECT_HOME that prefect_env chose
        env.pop("PREFECT_API_URL", None)
        url = f"http://{host}:{port}"
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host,
               "--port", str(port)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env)
        info_path = Path(env["PREFECT_HOME"]) / "ui-server.json"
        info_path.write_text(json.dumps({"pid": proc.pid, "api_url": f"{url}/api", "url": url}))
        cli.err(f"Prefect UI: {url}  (llm4all commands run from this folder report to it)")
        try:
            sys.exit(proc.wait())
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
        finally:
            info_path.unlink(missing_ok=True)
        return {}

    cli.run_command(work, None, config=config, sets=None, as_json=False, debug=debug)


@cli.app.command()
def serve(
    dataset: cli.DatasetOpt,
    config: cli.ConfigOpt = None,
    debug: cli.DebugOpt = False,
) -> None:
    """Serve the pipeline and refresh deployments of DATASET on their schedules (Ctrl-C stops).

    Needs a Prefect server: run `llm4all ui` first (or set PREFECT_API_URL)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        if "PREFECT_API_URL" not in os.environ:
            raise RuntimeError("no Prefect server to serve on: start `llm4all ui` first")
        from prefect import serve as prefect_serve

        from flows.cli.prefect_env import configure_logging
        from flows.deployments import build_deployments

        deployments = build_deployments(dataset, inv.config_path)
        configure_logging(debug)
        for d in deployments:
            when = d.schedules[0].schedule.cron if d.schedules else "on demand"
            cli.err(f"serving {d.flow_name}/{d.name} ({when}); "
                f"trigger: llm4all run {d.flow_name} -d {dataset}")  # fmt: skip
        prefect_serve(*deployments)
        return {}

    cli.run_command(
        work, None, config=config, sets=None, as_json=False, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


@cli.app.command()
def run(
    flow_name: Annotated[str, typer.Argument(help="pipeline | refresh", metavar="FLOW")],
    dataset: cli.DatasetOpt,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Flow parameter k=v (YAML value).")
    ] = None,
    config: cli.ConfigOpt = None, as_json: cli.JsonOpt = False, debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Trigger a run of a served deployment (`llm4all serve`); prints the flow run id."""
    if flow_name not in ("pipeline", "refresh"):
        raise cli.usage_error(f"FLOW must be pipeline or refresh, not {flow_name!r}")

    def work(inv: cli.Invocation) -> dict[str, Any]:
        if "PREFECT_API_URL" not in os.environ:
            raise RuntimeError("no Prefect server: start `llm4all ui` and `llm4all serve` first")
        from prefect.deployments import run_deployment

        from flows.config import parse_overrides
        from flows.deployments import deployment_name

        name = f"{flow_name}/{deployment_name(dataset)}"
        flow_run = run_deployment(name=name, parameters=parse_overrides(param or []), timeout=0)
        return {"deployment": name, "flow_run_id": str(flow_run.id),
                "state": flow_run.state.name if flow_run.state else None}  # fmt: skip

    cli.run_command(
        work, lambda out: cli.say(f"started {out['deployment']}: flow run {out['flow_run_id']} "
                              "(watch it in the Prefect UI)"),
        config=config, sets=None, as_json=as_json, debug=debug,
    )  # fmt: skip
