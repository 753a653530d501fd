from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch

from models import logit_cache as lc


def _logits(positions: int = 64, vocab: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(positions, vocab, generator=g) * 3


def test_id_width_follows_the_vocabulary() -> None:
    assert lc.id_dtype(49_152) == np.uint16 and lc.id_dtype(65_536) == np.uint16
    assert lc.id_dtype(65_537) == np.uint32 and lc.id_dtype(128_256) == np.uint32


def test_topk_keeps_the_head_and_accounts_for_the_tail() -> None:
    logits = _logits()
    t = lc.topk_targets(logits, k=8, vocab_size=300)
    probs = torch.softmax(logits, -1)
    assert t.ids.dtype == np.uint16 and t.values.dtype == np.float16 and t.ids.shape == (64, 8)
    assert np.array_equal(np.sort(t.ids, 1), np.sort(probs.topk(8).indices.numpy(), 1))
    np.testing.assert_allclose(t.mass(), 1.0, atol=2e-3)  # head + tail = everything
    dense = t.to_dense(300)
    np.testing.assert_allclose(dense.sum(1), 1.0, atol=2e-3)
    rows = np.arange(64)[:, None]
    np.testing.assert_allclose(
        dense[rows, t.ids.astype(int)], probs.numpy()[rows, t.ids.astype(int)], atol=1e-3
    )


def test_sampled_counts_are_an_unbiased_estimate() -> None:
    logits = _logits(positions=4, vocab=50)
    probs = torch.softmax(logits, -1).numpy()
    g = torch.Generator().manual_seed(1)
    runs = [lc.sampled_targets(logits, 50, 50, g).to_dense(50) for _ in range(400)]
    estimate = np.mean(runs, axis=0)  # 20,000 draws per position
    assert np.abs(estimate - probs).max() < 0.02
    t = lc.sampled_targets(logits, 50, 50, g)
    assert t.values.dtype == np.uint8 and t.lengths.sum() == len(t.ids)
    np.testing.assert_array_equal(t.mass(), 1.0)  # counts sum to S exactly
    for start, end in zip(t.offsets()[:-1], t.offsets()[1:], strict=True):
        row = t.ids[start:end]
        assert np.all(np.diff(row.astype(int)) > 0)  # distinct, sorted
    with pytest.raises(ValueError, match="255"):
        lc.sampled_targets(logits, 256, 50, g)


def test_sampling_is_reproducible_from_the_seed() -> None:
    logits = _logits()
    a = lc.sampled_targets(logits, 20, 300, torch.Generator().manual_seed(7))
    b = lc.sampled_targets(logits, 20, 300, torch.Generator().manual_seed(7))
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.values, b.values)


@pytest.mark.parametrize("mode", ["topk", "sampled"])
def test_shards_round_trip_and_checksums_catch_tampering(tmp_path: Path, mode: str) -> None:
    logits = _logits()
    t = (
        lc.topk_targets(logits, 8, 300)
        if mode == "topk"
        else lc.sampled_targets(logits, 30, 300, torch.Generator().manual_seed(0))
    )
    done = lc.write_shard(tmp_path, 0, t)
    assert done["positions"] == 64 and lc.shard_complete(tmp_path, 0)
    back = lc.read_shard(tmp_path, 0, {"mode": mode, "params": {"samples": 30}})
    np.testing.assert_array_equal(back.to_dense(300), t.to_dense(300))
    assert lc.verify_shard(tmp_path, 0)
    ids = lc.shard_dir(tmp_path, 0) / "ids.npy"
    raw = bytearray(ids.read_bytes())
    raw[-1] ^= 0xFF
    ids.write_bytes(bytes(raw))
    assert not lc.verify_shard(tmp_path, 0)


def test_a_full_disk_leaves_no_shard_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = lc.topk_targets(_logits(), 8, 300)
    real_save = np.save
    calls = {"n": 0}

    def save_then_fill_the_disk(f, arr):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(f, arr)

    monkeypatch.setattr(np, "save", save_then_fill_the_disk)
    with pytest.raises(lc.LogitCacheError, match="No space left"):
        lc.write_shard(tmp_path, 3, t)
    assert not lc.shard_complete(tmp_path, 3)
    assert list(tmp_path.iterdir()) == []  # no partial folder either
