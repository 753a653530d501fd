"""Shards travel by path: a worker that cannot see one says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.curate.config import DedupError, NearConfig
from tasks.curate.curate import compute_minhash_signatures
from tasks.curate.minhash import SketchParams
from tasks.curate.shards import Shard, ShardNotReadable, require_readable


def test_a_shard_missing_on_a_worker_names_the_shared_filesystem(tmp_path: Path) -> None:
    shard = Shard(0, str(tmp_path / "elsewhere" / "work-00000.parquet"), str(tmp_path / "out"))
    with pytest.raises(ShardNotReadable, match="shared filesystem") as e:
        require_readable(shard)
    assert isinstance(e.value, DedupError)  # the CLI prints it as one line
    with pytest.raises(ShardNotReadable, match=r"work-00000\.parquet"):
        compute_minhash_signatures.fn(shard, SketchParams.from_config(NearConfig()))
    assert not (tmp_path / "out").exists()
