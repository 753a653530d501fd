"""`llm4all`: the command line.

`app.py` holds the Typer app and `run_command`, the one body every command shares (config,
name checks, the work, JSON or text out, exit codes); the commands live in `data.py` (ingest,
curate, score, calibrate, quarantine, status), `models.py` (cache-logits, distill, quantize) and
`runs.py` (pipeline, refresh, demo, ui, serve, run), `factuality.py` (train-factuality); `printers.py` renders results for a person
and `prefect_env.py` points Prefect at the warehouse home.

Heavy modules (prefect, GX, torch, ...) are imported inside the commands, so `llm4all --help`
and `llm4all status` start fast.
"""

from __future__ import annotations

from flows.cli import data, factuality, models, runs  # noqa: F401  (each registers its commands)
from flows.cli.app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
