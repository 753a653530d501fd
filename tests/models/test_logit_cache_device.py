"""The device path of the logit cache (what runs on a GPU, tested here on the CPU): top-k on
the logits + a log-normaliser instead of a full softmax, inverse-CDF sampling instead of
torch.multinomial, per-row counting instead of a global unique. Same format, same statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import logit_cache as lc


def _probs_row(vocab: int = 40) -> torch.Tensor:
    """One distribution with a dominant id, a long tail, tiny ids and one impossible id."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(vocab, generator=g) * 2.5
    logits[5] = 6.0  # dominant
    logits[7] = -12.0  # tiny (~1e-8)
    logits[11] = float("-inf")  # never
    return logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sampled_counts_are_unbiased_to_five_sigma(dtype: torch.dtype) -> None:
    row = _probs_row().to(dtype)
    # the distribution the draws must follow: softmax of the logits as given (bf16 included)
    p = torch.softmax(row.double(), -1).numpy()
    positions, samples = 5_000, 16
    t = lc.sampled_targets(
        row.expand(positions, -1).contiguous(), samples, 40, torch.Generator().manual_seed(0)
    )
    counts = np.bincount(t.ids.astype(int), weights=t.values, minlength=40)
    n = positions * samples  # 80,000 independent draws
    assert counts.sum() == n and counts[11] == 0
    sd = np.sqrt(p * (1 - p) / n)
    z = np.abs(counts / n - p) / np.maximum(sd, 1e-12)
    assert z[p > 1e-6].max() < 5, z
    assert counts[7] <= 3  # an id of mass ~1e-8: almost never


def test_count_ids_matches_a_per_row_unique() -> None:
    g = torch.Generator().manual_seed(1)
    draws = torch.randint(0, 9, (200, 24), generator=g)
    ids, counts, lengths = lc.count_ids(draws)
    offsets = np.concatenate([[0], np.cumsum(lengths.numpy())])
    for r in range(200):
        u, c = np.unique(draws[r].numpy(), return_counts=True)
        a, b = offsets[r], offsets[r + 1]
        assert np.array_equal(ids[a:b].numpy(), u) and np.array_equal(counts[a:b].numpy(), c)


def test_draws_are_a_function_of_the_seed() -> None:
    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(0)) * 3
    a = lc.sample_ids(logits, 24, torch.Generator().manual_seed(7))
    b = lc.sample_ids(logits, 24, torch.Generator().manual_seed(7))
    c = lc.sample_ids(logits, 24, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.min()) >= 0 and int(a.max()) < 300


def test_all_the_mass_on_one_id_draws_only_it() -> None:
    logits = torch.full((3, 50), float("-inf"))
    logits[:, 49] = 0.0  # the last id: the edge of the cumulative search
    logits[1, 0], logits[1, 49] = 0.0, float("-inf")  # the first id
    t = lc.sampled_targets(logits, 30, 50, torch.Generator().manual_seed(0))
    assert t.ids.tolist() == [49, 0, 49] and t.values.tolist() == [30, 30, 30]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_topk_from_logits_matches_the_full_softmax(dtype: torch.dtype) -> None:
    logits = (torch.randn(128, 500, generator=torch.Generator().manual_seed(2)) * 4).to(dtype)
    ref = torch.softmax(logits.double(), -1)
    t = lc.topk_targets(logits, 16, 500)
    top = ref.topk(16, -1)
    assert np.array_equal(np.sort(t.ids, 1), np.sort(top.indices.numpy(), 1))
    rows = np.arange(128)[:, None]
    want = ref.numpy()[rows, t.ids.astype(int)]
    np.testing.assert_allclose(t.values.astype(np.float64), want, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(t.tail.astype(np.float64), 1 - top.values.sum(-1).numpy(), atol=2e-3)
    lse = lc.log_normaliser(logits).double()
    np.testing.assert_allclose(lse.numpy(), torch.logsumexp(logits.double(), -1), atol=1e-3)
