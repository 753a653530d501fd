"""Checkpoints of a training run under `<out_dir>/checkpoints/step-<n>/`: the student's weights
(safetensors), the optimizer, schedule and counters (a torch file, loaded with
`weights_only=True`), and a COMPLETE marker written last. A checkpoint is built in
`step-<n>.partial/`, fsynced and renamed into place, so a kill (or a power cut) leaves the
previous one intact and never a half-written one that looks complete; only the newest `keep`
are kept. `best.safetensors` holds the weights with the lowest held-out loss (written atomically).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from warehouse.files import atomic_path, fsync_path, fsync_tree

COMPLETE = "COMPLETE.json"
BEST = "best.safetensors"  # the weights with the lowest held-out loss so far


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint (a `step-<n>.partial` folder is never one)."""
    done = sorted(
        p.parent
        for p in (out_dir / "checkpoints").glob(f"step-*/{COMPLETE}")
        if not p.parent.name.endswith(".partial")
    )
    return done[-1] if done else None


def save_checkpoint(
    out_dir: Path,
    step: int,
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep: int,
    features: torch.nn.Module | None = None,
) -> Path:
    from safetensors.torch import save_model

    final = out_dir / "checkpoints" / f"step-{step:07d}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_model(student, str(partial / "model.safetensors"))
    if features is not None:  # the projection of the feature loss trains too
        save_model(features, str(partial / "features.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state},
        partial / "trainer.pt",
    )
    (partial / COMPLETE).write_text(json.dumps({"step": step}))
    fsync_tree(partial)  # on disk before the rename makes it the checkpoint to resume from
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    fsync_path(final.parent)
    done = sorted(p for p in (out_dir / "checkpoints").glob("step-*") if p.suffix != ".partial")
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """safetensors of `model`, replacing `path` atomically."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp))


def load_checkpoint(
    path: Path,
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    features: torch.nn.Module | None = None,
) -> dict[str, Any]:
    from safetensors.torch import load_model

    device = str(next(student.parameters()).device)
    load_model(student, str(path / "model.safetensors"), device=device)
    if features is not None and (path / "features.safetensors").exists():
        load_model(features, str(path / "features.safetensors"), device=device)
    state = torch.load(path / "trainer.pt", weights_only=True)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    return state
