"""What a task may ask of the Prefect run it executes in."""

from __future__ import annotations


def current_flow_run_id() -> str | None:
    """The id of the flow run we are in, for lineage; None outside a flow run."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
