"""What a task may ask of the Prefect run it executes in."""

from __future__ import annotations


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
