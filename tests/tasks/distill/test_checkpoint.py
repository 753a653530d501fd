"""Checkpoints: a half-built one is never resumed from, an old one survives a kill."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tasks.distill.checkpoint import COMPLETE, latest_checkpoint, load_checkpoint, save_checkpoint


def _trainer() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def test_a_partial_checkpoint_with_its_marker_is_not_resumed_from(tmp_path: Path) -> None:
    model, opt, sched = _trainer()
    save_checkpoint(tmp_path, 2, model, opt, sched, {"step": 2}, keep=2)
    # A kill after the marker was written into the partial folder, before its rename:
    partial = tmp_path / "checkpoints" / "step-0000004.partial"
    partial.mkdir()
    (partial / COMPLETE).write_text(json.dumps({"step": 4}))
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-0000002"
    state = load_checkpoint(latest_checkpoint(tmp_path), *_trainer())  # type: ignore[arg-type]
    assert state["step"] == 2
    # The next save replaces the litter; rotation counts complete checkpoints only.
    for step in (4, 6):
        save_checkpoint(tmp_path, step, model, opt, sched, {"step": step}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-0000004", "step-0000006"]
