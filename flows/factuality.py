"""Train-factuality flow: a dataset's (document, summary) pairs -> factuality model -> registry
(lineage to the snapshots it read) -> gate (held-out synthetic pairs) -> promoted."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.runtime import dataset_run
from tasks.factcheck.stage import train_factuality_model


@flow(name="train-factuality")
def train_factuality_flow(
    dataset: str, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train a factual-consistency model on DATASET's pairs, register it and gate it."""
    with dataset_run("train-factuality", dataset, config_path, overrides) as run:
        cfg = run.cfg
        return train_factuality_model(dataset, run.home, cfg.factcheck, cfg.gates).to_dict()
