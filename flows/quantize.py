"""Quantize flow: a registered model (or the teacher) -> quantized variant, evaluated against
its fp32 parent -> registry (lineage to the parent) -> gate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow

from flows.config import Config, run_config
from flows.runtime import dataset_run
from models.quant_config import QuantError
from tasks.quantize.pending import trained_on
from tasks.quantize.quantize import quantize_registered
from warehouse import Catalog, resolve_home

log = logging.getLogger(__name__)


@flow(name="quantize")
def quantize_flow(
    model: str,
    dataset: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """Quantize MODEL (NAME[:VERSION] or `teacher`) with `method` (default `quantize.method`;
    `llm4all export` passes gguf-*), evaluate it on DATASET's test blocks (default: the data
    MODEL was trained on), register and gate."""
    cfg, home = run_config(config_path, overrides)
    on = dataset or trained_on(Catalog(Path(home)), model)
    if on is None:  # the teacher without --dataset: quantize_registered says what is missing
        return quantize_registered(
            model, home, cfg.teacher, cfg.quantize, cfg.gates, method=method
        ).to_dict()
    with dataset_run("quantize", on, config_path, overrides) as run:
        cfg = run.cfg
        q = cfg.quantize
        return quantize_registered(
            model, run.home, cfg.teacher, q, cfg.gates, dataset, method
        ).to_dict()


def quantize_variants(model: str, dataset: str, cfg: Config) -> list[dict[str, Any]]:
    """Each of `quantize.methods` applied to MODEL (its promoted version), as the pipeline and
    a refresh do after training. A variant that fails its gate is registered unpromoted and
    reported (`gate_failed`), a backend that cannot run here is reported (`error`): neither
    undoes the student they were made from."""
    from data_quality import GateFailed

    home = str(resolve_home(cfg.home))
    out: list[dict[str, Any]] = []
    for method in cfg.quantize.methods:
        try:
            result = quantize_registered(
                model, home, cfg.teacher, cfg.quantize, cfg.gates, dataset, method
            )
            out.append(result.to_dict())
        except GateFailed as e:
            log.warning("%s: %s", method, str(e).splitlines()[0])
            out.append({**(e.stage_result or {}), "skipped": False, "gate_failed": str(e)})
        except QuantError as e:
            log.warning("%s: %s", method, e)
            out.append({"method": method, "error": str(e)})
    return out
