"""The Typer app, the options every command shares, and `run_command`: the one way a command
runs (set up, validate names, do the work, print JSON or text, map errors to exit codes).

Exit codes: 0 success, 1 error (one line; the traceback only with `--debug`), 2 usage error,
3 a data-quality gate failed. With `--json`, stdout holds exactly one JSON object; logs and
progress bars go to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
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
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")]


def say(msg: str = "") -> None:
    """Human-readable output (never used under --json, where stdout holds one JSON object)."""
    typer.echo(msg)


def err(msg: str) -> None:
    typer.echo(msg, err=True)


def usage_error(msg: str) -> typer.Exit:
    """Print `usage: msg` and return the exit to raise (exit code 2)."""
    err(f"usage: {msg}")
    return typer.Exit(EXIT_USAGE)


def with_flags(flags: dict[str, Any], sets: list[str] | None) -> list[str]:
    """Command-line flags as `--set` overrides (flags first, so an explicit --set wins)."""
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + (sets or [])


@dataclass
class Invocation:
    """What a command's work gets: the validated config and where it came from.

    `config_path` and `overrides` are what the command was told; `cfg` is what a run of the
    command's dataset uses (its recorded settings unless told otherwise; `settings` says)."""

    cfg: Any  # flows.config.Config
    overrides: dict[str, Any]
    home: Path
    config_path: str | None
    debug: bool
    settings: Any = None  # flows.config.Settings

    def connect(self, start: bool = True) -> str:
        """Point Prefect at this home's local server (started on first use); its API URL."""
        from flows.cli.prefect_env import connect

        return connect(self.home, start=start)

    def run_flow(self, target: str, **params: Any) -> Any:
        """Run the flow `module:function` with this config (logging set up for the terminal)."""
        from flows.cli.prefect_env import configure_logging

        self.connect()
        module, _, name = target.partition(":")
        flow_fn = getattr(import_module(module), name)
        configure_logging(self.debug)
        return flow_fn(**params, config_path=self.config_path, overrides=self.overrides)


def run_command(
    work: Callable[[Invocation], dict[str, Any]],
    printer: Callable[[dict[str, Any]], None] | None,
    *,
    config: Path | str | None,
    sets: list[str] | None,
    as_json: bool,
    debug: bool,
    names: dict[str, str | None] | None = None,
    prefect: bool = True,
) -> None:
    """The body of every command: validate the dataset/model names in `names` (kind -> value)
    before anything slow starts, load the config (the dataset's recorded settings unless
    `--config` is given, with the `--set` overrides on top), run `work`, then print its result
    as one JSON object (`--json`) or through `printer`.

    `prefect=False` for commands that run no flow (`score`, `calibrate`): they stay fast."""
    with cli_errors(as_json, debug):
        from flows.config import parse_overrides, resolve_settings
        from warehouse import validate_name

        for kind, value in (names or {}).items():
            if value is not None:
                validate_name(value, kind)
        overrides = parse_overrides(sets or [])
        dataset = (names or {}).get("dataset name")
        settings, home = resolve_settings(dataset, config, overrides)
        cfg = settings.load()
        if prefect:
            from flows.cli.prefect_env import prefect_env

            prefect_env(home)
        config_path = str(config) if config else None
        inv = Invocation(cfg, overrides, home, config_path, debug, settings)
        out = work(inv)
        if as_json:
            typer.echo(json.dumps({"ok": True, **out}, default=str))
        elif printer is not None:
            printer(out)


OUR_LOGGERS = ("warehouse", "data_quality", "tasks", "models", "flows")
# Third parties that warn about their own installation on every import, which no llm4all user
# can act on: torchao's CUDA kernels that a CPU machine cannot load, and torch's deprecation
# note on the Enums torchao registers. They print as soon as transformers loads a model.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")


def set_log_levels(debug: bool) -> None:
    """Our packages at INFO (DEBUG with --debug); QUIET_LOGGERS only on errors (everything
    with --debug). Both ways of logging (plain and through Prefect) call this."""
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.ERROR)


def plain_logging(debug: bool) -> None:
    """Logs on stderr without Prefect (commands that run no flow: `score`, `calibrate`): our
    packages at INFO (DEBUG with --debug), third parties only when they warn."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    set_log_levels(debug)


def _gate_failed(e: Exception) -> Any:
    """`e` as a GateFailed, or None. A gate failure can only come from a loaded gate module, so
    a command that never gated anything does not import it."""
    gate = sys.modules.get("data_quality.gate")
    return e if gate is not None and isinstance(e, gate.GateFailed) else None


@contextmanager
def cli_errors(as_json: bool, debug: bool) -> Iterator[None]:
    """Map exceptions to the exit-code contract."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as e:
        failed = _gate_failed(e)
        if failed is not None:
            err(f"gate failed: {failed}")
            if as_json:
                payload = {"ok": False, "error": "gate_failed", "message": str(failed)}
                payload.update(getattr(failed, "stage_result", None) or {})
                payload["gate"] = failed.result.to_dict()
                typer.echo(json.dumps(payload, default=str))
            raise typer.Exit(EXIT_GATE) from None
        if debug:
            raise
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not is_expected(e):
            line = f"{type(e).__name__}: {line} (rerun with --debug for the traceback)"
        err(f"error: {line}")
        if as_json:
            payload = {"ok": False, "error": type(e).__name__, "message": str(e)}
            payload |= getattr(e, "payload", None) or {}  # what a command reports beside it
            typer.echo(json.dumps(payload, default=str))
        raise typer.Exit(getattr(e, "exit_code", EXIT_ERROR)) from None


def is_expected(e: Exception) -> bool:
    """Errors whose message is the whole story (bad input, busy warehouse, ...)."""
    from flows.cli.prefect_env import ServerError
    from flows.config import ConfigError
    from models.loading import ModelLoadError
    from models.logit_cache import LogitCacheError
    from models.quant_config import QuantError
    from tasks.curate.config import CurateError, DedupError
    from tasks.distill.config import DistillError
    from tasks.factcheck.config import FactcheckError
    from tasks.ingest.readers import IngestError
    from tasks.quantize.config import QuantizeError
    from tasks.tokens.tokenize import TokenizeError
    from warehouse import CatalogError, InvalidName, WarehouseBusy

    expected = (ConfigError, IngestError, CatalogError, InvalidName, WarehouseBusy, ServerError)
    if type(e).__name__ in ("RunFailed", "NotServed"):  # flows.deployments (imports prefect)
        return True
    expected += (ModelLoadError, LogitCacheError, TokenizeError, CurateError, DedupError)
    expected += (DistillError, QuantError, QuantizeError, FactcheckError)
    return isinstance(e, expected)
