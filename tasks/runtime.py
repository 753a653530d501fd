"""What a task may ask of the Prefect run it executes in."""

from __future__ import annotations


def run_name(template: str) -> object:
    """A Prefect `task_run_name` that formats `template` with the task's parameters, after
    turning each into its short name (a snapshot's key, a file's name, a config's method):
    task runs a person can tell apart in the UI ("quantize nf4 news-student")."""

    def name() -> str:
        from prefect.runtime import task_run

        params = {k: _short(k, v) for k, v in task_run.parameters.items()}
        return template.format(**params)

    return name


def _short(key: str, value: object) -> object:
    from pathlib import Path

    if value is None:
        return ""
    if hasattr(value, "key"):  # a DatasetRef
        return value.key
    if key == "source" and isinstance(value, str) and not value.startswith("hf:"):
        return Path(value).name
    return value


def current_flow_run_id() -> str | None:
    """The id of the flow run we are in, for lineage; None outside a flow run."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def launch_rank() -> int:
    """This process's rank in a multi-process launch (`accelerate launch`, torchrun, mpirun),
    read from the launcher's environment before any process group exists; 0 when alone."""
    import os

    for var in ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0
