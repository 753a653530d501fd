"""KD losses: dense ones against hand-written references, sparse ones against the dense ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import losses as L
from models.logit_cache import SparseTargets, sampled_targets, topk_targets

V = 12  # a small vocabulary: the references loop over it in float64


def _logits(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, V, generator=g) * 2, torch.randn(n, V, generator=g) * 2


def _ref_probs(z: torch.Tensor, t: float = 1.0) -> np.ndarray:
    x = z.double().numpy() / t
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ref_kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([sum(ai * np.log(ai / bi) for ai, bi in zip(r, s, strict=True) if ai > 0)
                     for r, s in zip(a, b, strict=True)])  # fmt: skip


def _grad(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.clone().requires_grad_(True)
    out = fn(z)
    out.sum().backward()
    return out.detach(), z.grad


# --------------------------------------------------------------------------- dense
@pytest.mark.parametrize("t", [1.0, 2.0])
def test_dense_losses_match_references(t: float) -> None:
    zs, zt = _logits()
    q, p = _ref_probs(zs, t), _ref_probs(zt, t)
    np.testing.assert_allclose(L.forward_kl(zs, zt, t).numpy(), t**2 * _ref_kl(p, q), rtol=1e-5)
    np.testing.assert_allclose(L.reverse_kl(zs, zt, t).numpy(), _ref_kl(q, p), rtol=1e-5)
    np.testing.assert_allclose(L.tvd(zs, zt, t).numpy(), 0.5 * np.abs(p - q).sum(-1), rtol=1e-5)
    beta = 0.3
    m = beta * p + (1 - beta) * q
    ref_jsd = beta * _ref_kl(p, m) + (1 - beta) * _ref_kl(q, m)
    np.testing.assert_allclose(L.jsd(zs, zt, beta, t).numpy(), ref_jsd, rtol=1e-5)


def test_dense_losses_vanish_when_student_equals_teacher() -> None:
    z, _ = _logits()
    for name in L.KD_LOSSES:
        assert L.kd_loss(name, z, z).abs().max() < 1e-6, name  # type: ignore[arg-type]


def test_forward_kl_gradient_is_q_minus_p_scaled_by_t() -> None:
    zs, zt = _logits()
    t = 2.0
    _, g = _grad(lambda z: L.forward_kl(z, zt, t), zs)
    # d/dz [T² KL(p_T || q_T)] = T (q_T - p_T)
    expected = t * (_ref_probs(zs, t) - _ref_probs(zt, t))
    np.testing.assert_allclose(g.numpy(), expected, atol=1e-6)


def test_cross_entropy_and_masked_mean() -> None:
    zs, _ = _logits(n=3)
    labels = torch.tensor([1, 4, 7])
    ce = L.cross_entropy(zs, labels)
    q = _ref_probs(zs)
    np.testing.assert_allclose(ce.numpy(), -np.log(q[[0, 1, 2], [1, 4, 7]]), rtol=1e-5)
    mask = torch.tensor([1, 0, 1])
    assert L.masked_mean(ce, mask).item() == pytest.approx((ce[0] + ce[2]).item() / 2)
    assert L.masked_mean(ce, torch.zeros(3)).item() == 0.0  # no loss positions: 0, not NaN


def test_bad_arguments_are_refused() -> None:
    zs, zt = _logits()
    with pytest.raises(ValueError, match="beta"):
        L.jsd(zs, zt, beta=1.0)
    with pytest.raises(ValueError, match="temperature"):
        L.forward_kl(zs, zt, temperature=0.0)
    with pytest.raises(ValueError, match="unknown KD loss"):
        L.kd_loss("kl", zs, zt)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sparse: top-k
def _topk_target(p: np.ndarray, k: int, ids: np.ndarray | None = None) -> L.SparseBatch:
    """Exact (float32, not fp16) top-k targets of the distributions p (N, V) (or the given
    ids per row)."""
    ids = np.argsort(-p, axis=-1)[:, :k] if ids is None else ids
    vals = np.take_along_axis(p, ids, -1)
    return L.SparseBatch(
        "topk",
        torch.from_numpy(ids.astype(np.int64)),
        torch.from_numpy(vals.astype(np.float32)),
        torch.ones(ids.shape, dtype=torch.bool),
        torch.from_numpy((1 - vals.sum(-1)).astype(np.float32)),
    )


def _teacher_with_student_shaped_tail(
    zs: torch.Tensor, k: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A teacher with 0.7 of its mass on k random ids (returned too) and 0.3 spread over the
    others as the student's is: then the (k+1)-bucket divergences are the full ones."""
    rng = np.random.default_rng(seed)
    q = _ref_probs(zs)
    p = np.zeros_like(q)
    tops = np.zeros((len(q), k), np.int64)
    for i in range(len(q)):
        tops[i] = rng.choice(V, k, replace=False)
        others = np.setdiff1d(np.arange(V), tops[i])
        p[i, tops[i]] = rng.dirichlet(np.ones(k)) * 0.7
        p[i, others] = 0.3 * q[i, others] / q[i, others].sum()
    return p, tops


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd", "tvd"])
def test_sparse_topk_equals_dense_when_the_teacher_tail_is_zero(name: str) -> None:
    zs, zt = _logits()
    zt = zt.clone()
    zt[:, 4:] = -1e4  # the teacher has mass on 4 ids only
    p = _ref_probs(zt)
    target = _topk_target(p, k=4)
    dense, g_dense = _grad(lambda z: L.kd_loss(name, z, zt), zs)  # type: ignore[arg-type]
    sparse, g_sparse = _grad(lambda z: L.sparse_kd_loss(name, z, target), zs)  # type: ignore[arg-type]
    if name == "reverse_kl":
        # The student's mass off the 4 ids meets p = 0: dense is ~1e4-scale, sparse floors
        # log p at log(1e-12); both are huge, neither is the exact value. Check the head only.
        assert (sparse > 10).all() and (dense > 10).all()
        return
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_sparse, g_dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("confident", [False, True])
@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd", "tvd"])
def test_sparse_topk_keeps_the_tail_as_one_bucket_exactly(name: str, confident: bool) -> None:
    zs, _ = _logits()
    p, tops = _teacher_with_student_shaped_tail(zs, k=4)
    if confident:  # the student's rest below 1e-2: the exact (logsumexp) path computes it
        zs = zs.scatter_add(1, torch.from_numpy(tops), torch.full((5, 4), 12.0))
        assert (1 - torch.softmax(zs, -1).gather(1, torch.from_numpy(tops)).sum(1) < 1e-2).all()
    zt = torch.from_numpy(np.log(p)).float()
    target = _topk_target(p, k=4, ids=tops)
    assert (target.rest > 0.29).all()  # a real tail, not a rounding
    dense, g_dense = _grad(lambda z: L.kd_loss(name, z, zt), zs)  # type: ignore[arg-type]
    sparse, g_sparse = _grad(lambda z: L.sparse_kd_loss(name, z, target), zs)  # type: ignore[arg-type]
    torch.testing.assert_close(sparse, dense, atol=2e-5, rtol=1e-4)
    if name != "tvd":  # TVD's subgradient differs inside a bucket by construction
        torch.testing.assert_close(g_sparse, g_dense, atol=2e-5, rtol=1e-4)


def test_renormalising_the_head_would_be_biased_and_the_tail_bucket_is_not() -> None:
    zs, zt = _logits(n=8)
    p = _ref_probs(zt)
    target = _topk_target(p, k=3)
    dense = L.forward_kl(zs, zt)
    sparse = L.sparse_forward_kl(zs, target)
    # The bucketed KL is the KL of coarsenings: never above the full KL (data processing).
    assert (sparse <= dense + 1e-6).all()
    # Renormalised head only (what the tail bucket avoids): a different, biased target.
    renorm = L.SparseBatch(
        "topk", target.ids, target.probs / target.probs.sum(-1, keepdim=True), target.valid,
        torch.zeros(8),
    )  # fmt: skip
    assert not torch.allclose(L.sparse_forward_kl(zs, renorm), sparse, atol=1e-3)


def test_sparse_batch_from_cached_topk_targets() -> None:
    zs, zt = _logits()
    zt = zt.clone()
    zt[:, 6:] = -1e4  # mass on 6 ids; the cache keeps 8 in fp16 and a ~0 tail
    cached = topk_targets(zt, k=8, vocab_size=V)
    target = L.sparse_batch(cached)
    assert target.ids.shape == (5, 8) and target.valid.all()
    torch.testing.assert_close(
        L.sparse_forward_kl(zs, target), L.forward_kl(zs, zt), atol=2e-3, rtol=2e-3
    )


# --------------------------------------------------------------------------- sparse: sampled
def test_sparse_batch_pads_sampled_targets_row_by_row() -> None:
    t = SparseTargets(
        "sampled",
        ids=np.array([3, 5, 0, 7, 8, 9], np.uint16),
        values=np.array([2, 2, 4, 1, 1, 2], np.uint8),
        lengths=np.array([2, 1, 3], np.uint8),
        samples=4,
    )
    b = L.sparse_batch(t)
    assert b.ids.tolist() == [[3, 5, 0], [0, 0, 0], [7, 8, 9]]
    assert b.valid.tolist() == [[True, True, False], [True, False, False], [True, True, True]]
    np.testing.assert_allclose(b.probs.numpy(), [[0.5, 0.5, 0], [1, 0, 0], [0.25, 0.25, 0.5]])
    assert b.rest.tolist() == [0, 0, 0]


def test_sampled_padding_does_not_hide_a_real_id_zero() -> None:
    zs, _ = _logits(n=1)
    one_hot = SparseTargets(
        "sampled", ids=np.array([0], np.uint16), values=np.array([4], np.uint8),
        lengths=np.array([1], np.uint8), samples=4,
    )  # fmt: skip
    two = SparseTargets(
        "sampled", ids=np.array([5, 0], np.uint16), values=np.array([2, 2], np.uint8),
        lengths=np.array([2], np.uint8), samples=4,
    )  # fmt: skip
    both = L.sparse_batch(
        SparseTargets(
            "sampled",
            ids=np.array([0, 5, 0], np.uint16),
            values=np.array([4, 2, 2], np.uint8),
            lengths=np.array([1, 2], np.uint8),
            samples=4,
        )
    )  # fmt: skip  (row 0 is padded with id 0 after its own id 0)
    z2 = zs.repeat(2, 1)
    torch.testing.assert_close(
        L.sparse_tvd(z2, both),
        torch.cat([L.sparse_tvd(zs, L.sparse_batch(one_hot)), L.sparse_tvd(zs, L.sparse_batch(two))]),
    )  # fmt: skip


@pytest.mark.parametrize("name", ["forward_kl", "jsd", "tvd"])
def test_sampled_point_mass_equals_dense(name: str) -> None:
    zs, zt = _logits()
    zt = torch.full((5, V), -1e4)
    zt[torch.arange(5), torch.tensor([0, 3, 3, 7, 11])] = 0.0  # one certain next token each
    g = torch.Generator().manual_seed(0)
    target = L.sparse_batch(sampled_targets(zt, 20, V, g))
    assert target.ids.shape[1] == 1  # every draw hit the same id
    dense, g_dense = _grad(lambda z: L.kd_loss(name, z, zt), zs)  # type: ignore[arg-type]
    sparse, g_sparse = _grad(lambda z: L.sparse_kd_loss(name, z, target), zs)  # type: ignore[arg-type]
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_sparse, g_dense, atol=1e-5, rtol=1e-5)


def test_sampled_forward_kl_is_unbiased_in_expectation() -> None:
    """Over many caches, the mean gradient is the dense gradient, and the mean of the
    student-dependent part (cross-entropy) is the dense cross-entropy: no renormalisation bias."""
    zs, zt = _logits(n=4)
    draws, samples = 3000, 8
    reps = zt.repeat(draws, 1)  # one row per (draw, position)
    g = torch.Generator().manual_seed(1)
    target = L.sparse_batch(sampled_targets(reps, samples, V, g))
    z = zs.repeat(draws, 1).requires_grad_(True)
    L.sparse_forward_kl(z, target).sum().backward()
    mean_grad = z.grad.view(draws, 4, V).mean(0)  # type: ignore[union-attr]
    _, g_dense = _grad(lambda z: L.forward_kl(z, zt), zs)
    torch.testing.assert_close(mean_grad, g_dense, atol=0.01, rtol=0)
    # The estimate's cross-entropy -Σ p̂ log q, averaged over draws, is the dense one.
    lq = torch.log_softmax(zs, -1).repeat(draws, 1).gather(-1, target.ids)
    ce = -(target.probs * lq * target.valid).sum(-1).view(draws, 4).mean(0)
    dense_ce = -(torch.softmax(zt, -1) * torch.log_softmax(zs, -1)).sum(-1)
    torch.testing.assert_close(ce, dense_ce, atol=0.03, rtol=0.01)
    # A single cache is far from it: the check above is not vacuous.
    assert (z.grad.view(draws, 4, V)[0] - g_dense).abs().max() > 0.05  # type: ignore[union-attr]


def test_reverse_kl_is_refused_for_a_sampled_cache() -> None:
    zs, zt = _logits()
    target = L.sparse_batch(sampled_targets(zt, 8, V, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="sampled"):
        L.sparse_kd_loss("reverse_kl", zs, target)
