"""How a multi-process run shares the work: each rank draws its own micro-batches (and so
reads only their cached targets), and together they draw exactly the blocks one process
would draw for the same global batch."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.distill.distill import rank_device
from tasks.distill.train import batch_indices
from tasks.runtime import launch_rank


@pytest.mark.parametrize("world,accum", [(2, 1), (2, 3), (4, 2)])
def test_ranks_split_the_global_batch_of_one_process(world: int, accum: int) -> None:
    pool = np.arange(100, 160)
    for step in range(5):
        single = [batch_indices(pool, 4, 7, step, m) for m in range(world * accum)]
        ranks = {
            r: [batch_indices(pool, 4, 7, step, m * world + r) for m in range(accum)]
            for r in range(world)
        }  # as tasks/distill/train.py draws them: micro-batch index m * world + rank
        together = sorted(np.concatenate([b for bs in ranks.values() for b in bs]).tolist())
        assert together == sorted(np.concatenate(single).tolist())
        assert all(len(np.concatenate(bs)) == 4 * accum for bs in ranks.values())  # a share each


def test_launch_rank_reads_the_launcher_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert launch_rank() == 0
    assert rank_device("cpu") == "cpu" and rank_device(None) is None
    monkeypatch.setenv("PMI_RANK", "3")
    assert launch_rank() == 3
    monkeypatch.setenv("RANK", "1")  # torchrun / accelerate launch
    assert launch_rank() == 1
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device("cpu") == "cpu"  # a CPU run stays on the CPU
