"""Distillation losses, dense (teacher in the loop) and sparse (from the logit cache).

Every loss returns one value per position (shape (N,)); `masked_mean` reduces them over the
positions that carry loss. Logits are (N, V); everything is computed in float32.

Dense losses take the teacher's logits and a temperature T (both distributions are softened by
T, and forward KL is scaled by T² so its gradient keeps its size, Hinton et al. 2015):

    forward_kl   KL(p || q)                      mode covering; the classic KD loss
    reverse_kl   KL(q || p)                      mode seeking (MiniLLM)
    jsd          β KL(p || m) + (1-β) KL(q || m), m = β p + (1-β) q   (generalized JSD, TRL GKD)
    tvd          ½ Σ |p - q|
    cross_entropy  -log q(label) on the data

p is the teacher, q the student.

Sparse losses take a `SparseBatch` (a cache's targets for the same positions) and work on the
student's log-probabilities over the full vocabulary. The stored ids are kept as they are and
everything else is ONE bucket: the teacher's mass there is the stored tail (top-k) or 0
(sampled), the student's is 1 - Σ q(stored ids), computed as a logsumexp over the other ids.
Nothing is renormalised, so the student is not pushed to put all its mass on the head.

  top-k    the losses are the exact divergences between the (k+1)-bucket coarsenings of p and
           q. They equal the dense ones when the teacher's tail is 0, or more generally when it
           is spread over the other ids as the student's is; gradients then match too.
  sampled  counts/S is an unbiased estimate of p, and forward KL is linear in p up to the
           teacher's entropy (a constant for the student), so its gradient is an unbiased
           estimate of the dense gradient (Anshumann et al., ACL 2025). JSD and TVD are
           computed on the estimate as it is (plug-in, biased); reverse KL is refused: the
           estimate puts no mass off its samples, where KL(q || p̂) is infinite.

A cache holds the teacher at T = 1, which cannot be re-tempered without the full
distribution, so the sparse losses take no temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from models.logit_cache import SparseTargets

KDLoss = Literal["forward_kl", "reverse_kl", "jsd", "tvd"]
KD_LOSSES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "tvd")

_MASKED = -1e9  # stands in for -inf where a logsumexp must stay differentiable
_LOG_EPS = float(np.log(1e-12))  # floor of log p in reverse KL (a top-k tail rounded to 0)
_REST_EXACT = 1e-2  # below this, q_rest is recomputed exactly instead of as 1 - Σ q(stored)


# --------------------------------------------------------------------------- reduction
def masked_mean(per_position: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions where mask is nonzero (all positions when mask is None)."""
    if mask is None:
        return per_position.mean()
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- dense
def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log q(label) per position; labels (N,) long."""
    return F.cross_entropy(student_logits.float(), labels.long(), reduction="none")


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.log_softmax(logits.float() / temperature, dim=-1)


def forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """T² · KL(p_T || q_T) per position."""
    lq, lp = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    return (lp.exp() * (lp - lq)).sum(-1) * temperature**2


def reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(q_T || p_T) per position."""
    lq, lp = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    return (lq.exp() * (lq - lp)).sum(-1)


def jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Generalized JSD: β KL(p || m) + (1-β) KL(q || m), m = β p + (1-β) q, 0 < β < 1."""
    lq, lp = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    return _jsd_from_log_probs(lq, lp, beta, valid=None)


def tvd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """½ Σ |p_T - q_T| per position."""
    lq, lp = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    return 0.5 * (lp.exp() - lq.exp()).abs().sum(-1)


def kd_loss(
    name: KDLoss,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """The dense loss called `name`, per position."""
    if name == "forward_kl":
        return forward_kl(student_logits, teacher_logits, temperature)
    if name == "reverse_kl":
        return reverse_kl(student_logits, teacher_logits, temperature)
    if name == "jsd":
        return jsd(student_logits, teacher_logits, beta, temperature)
    if name == "tvd":
        return tvd(student_logits, teacher_logits, temperature)
    raise ValueError(f"unknown KD loss {name!r}; one of {', '.join(KD_LOSSES)}")


def _jsd_from_log_probs(
    lq: torch.Tensor, lp: torch.Tensor, beta: float, valid: torch.Tensor | None
) -> torch.Tensor:
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd needs 0 < beta < 1, got {beta} (use forward_kl or reverse_kl)")
    lm = torch.logsumexp(
        torch.stack([lp + float(np.log(beta)), lq + float(np.log(1 - beta))]), dim=0
    )
    # xlogy-style: a zero-probability entry contributes 0 (and no NaN gradient).
    p, q = lp.exp(), lq.exp()
    kl_p = torch.where(p > 0, p * (lp - lm), torch.zeros_like(p))
    kl_q = q * (lq - lm)
    terms = beta * kl_p + (1 - beta) * kl_q
    if valid is not None:
        terms = terms * valid
    return terms.sum(-1)


# --------------------------------------------------------------------------- sparse
@dataclass
class SparseBatch:
    """Sparse teacher targets for N positions, as tensors, padded to K ids per position.

    ids (N, K) long, probs (N, K) float32 (0 on padding), valid (N, K) bool, rest (N,) float32
    (the teacher's mass off the stored ids: the top-k tail, or 0 for sampled targets).
    """

    mode: str
    ids: torch.Tensor
    probs: torch.Tensor
    valid: torch.Tensor
    rest: torch.Tensor

    def to(self, device: torch.device | str) -> SparseBatch:
        """On `device`; to a GPU through pinned host memory, so the copies run asynchronously."""
        return SparseBatch(
            self.mode,
            to_device(self.ids, device),
            to_device(self.probs, device),
            to_device(self.valid, device),
            to_device(self.rest, device),
        )


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on `device`: pinned + non-blocking to CUDA, a plain move elsewhere."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def sparse_batch(targets: SparseTargets) -> SparseBatch:
    """Tensors of a cache's targets (top-k as stored; sampled as counts/S, padded)."""
    if targets.mode == "topk":
        ids = torch.from_numpy(np.asarray(targets.ids, dtype=np.int64))
        probs = torch.from_numpy(np.asarray(targets.values, dtype=np.float32))
        rest = torch.from_numpy(np.asarray(targets.tail, dtype=np.float32))
        return SparseBatch("topk", ids, probs, torch.ones_like(ids, dtype=torch.bool), rest)
    lengths = np.asarray(targets.lengths, dtype=np.int64)
    n, k = len(lengths), max(int(lengths.max(initial=0)), 1)
    row = np.repeat(np.arange(n), lengths)
    col = np.arange(len(row)) - np.repeat(targets.offsets()[:-1], lengths)
    ids = np.zeros((n, k), np.int64)
    probs = np.zeros((n, k), np.float32)
    valid = np.zeros((n, k), bool)
    ids[row, col] = np.asarray(targets.ids, dtype=np.int64)
    probs[row, col] = np.asarray(targets.values, dtype=np.float32) / float(targets.samples)  # type: ignore[arg-type]
    valid[row, col] = True
    return SparseBatch(
        "sampled",
        torch.from_numpy(ids),
        torch.from_numpy(probs),
        torch.from_numpy(valid),
        torch.zeros(n, dtype=torch.float32),
    )


def _buckets(
    student_logits: torch.Tensor, target: SparseBatch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log q at the stored ids (N, K), log q of the rest (N,), p (N, K), p of the rest (N,)).

    q_rest is 1 - Σ q(stored ids); where that subtraction would lose precision (q_rest below
    _REST_EXACT) it is recomputed as a logsumexp over the other ids' logits, row by row, so
    the cost stays O(N·K) plus O(V) only for the rows that need it.
    """
    z = student_logits.float()
    lse = torch.logsumexp(z, dim=-1)
    lq_ids = z.gather(-1, target.ids) - lse[:, None]
    rest = 1.0 - (lq_ids.exp() * target.valid).sum(-1)
    lq_rest = torch.log(rest.clamp_min(1e-30))
    rows = (rest < _REST_EXACT).nonzero().squeeze(1)
    if len(rows):
        zr = z[rows]
        # scatter_add, not scatter: a padding slot (id 0, not valid) must not unset a real id 0.
        stored = torch.zeros_like(zr).scatter_add_(-1, target.ids[rows], target.valid[rows].float())
        exact = torch.logsumexp(zr.masked_fill(stored > 0, _MASKED), dim=-1) - lse[rows]
        lq_rest = lq_rest.index_put((rows,), exact)
    # Every id stored (k = V): q_rest is 0 and the teacher's tail is fp16 rounding; a floor
    # keeps that rounding from turning into a loss of 1e9.
    lq_rest = lq_rest.clamp_min(_LOG_EPS)
    return lq_ids, lq_rest, target.probs * target.valid, target.rest


def _xlogy(x: torch.Tensor, log_y: torch.Tensor) -> torch.Tensor:
    """x · log_y, 0 where x is 0 (whatever log_y is)."""
    return torch.where(x > 0, x * log_y, torch.zeros_like(x))


def sparse_forward_kl(student_logits: torch.Tensor, target: SparseBatch) -> torch.Tensor:
    """KL(p || q) over the stored ids and the rest bucket, per position."""
    lq, lq_rest, p, p_rest = _buckets(student_logits, target)
    lp = torch.log(p.clamp_min(1e-30))
    lp_rest = torch.log(p_rest.clamp_min(1e-30))
    return (_xlogy(p, lp - lq)).sum(-1) + _xlogy(p_rest, lp_rest - lq_rest)


def sparse_reverse_kl(student_logits: torch.Tensor, target: SparseBatch) -> torch.Tensor:
    """KL(q || p) over the stored ids and the rest bucket (top-k only), per position.

    log p is floored at log(1e-12), so a tail that rounded to 0 in fp16 gives a large, finite
    loss instead of an infinite one.
    """
    if target.mode == "sampled":
        raise ValueError(
            "reverse KL needs the teacher's probability of every id the student puts mass on; "
            "a sampled cache has 0 off its samples (infinite KL): use forward_kl, jsd or tvd, "
            "or a top-k cache"
        )
    lq, lq_rest, p, p_rest = _buckets(student_logits, target)
    lp = torch.log(p.clamp_min(1e-30)).clamp_min(_LOG_EPS)
    lp_rest = torch.log(p_rest.clamp_min(1e-30)).clamp_min(_LOG_EPS)
    ids_term = (lq.exp() * (lq - lp) * target.valid).sum(-1)
    return ids_term + lq_rest.exp() * (lq_rest - lp_rest)


def sparse_jsd(
    student_logits: torch.Tensor, target: SparseBatch, beta: float = 0.5
) -> torch.Tensor:
    """Generalized JSD(β) over the stored ids and the rest bucket, per position."""
    lq, lq_rest, p, p_rest = _buckets(student_logits, target)
    lq_all = torch.cat([lq, lq_rest[:, None]], dim=-1)
    lp_all = torch.log(torch.cat([p, p_rest[:, None]], dim=-1).clamp_min(0.0))  # -inf at 0
    valid = torch.cat([target.valid, torch.ones_like(target.valid[:, :1])], dim=-1)
    lp_all = lp_all.masked_fill(~valid, float("-inf"))
    return _jsd_from_log_probs(lq_all, lp_all, beta, valid=valid.float())


def sparse_tvd(student_logits: torch.Tensor, target: SparseBatch) -> torch.Tensor:
    """½ Σ |p - q| over the stored ids and the rest bucket, per position."""
    lq, lq_rest, p, p_rest = _buckets(student_logits, target)
    ids_term = ((p - lq.exp()).abs() * target.valid).sum(-1)
    return 0.5 * (ids_term + (p_rest - lq_rest.exp()).abs())


def sparse_kd_loss(
    name: KDLoss, student_logits: torch.Tensor, target: SparseBatch, *, beta: float = 0.5
) -> torch.Tensor:
    """The sparse loss called `name`, per position."""
    if name == "forward_kl":
        return sparse_forward_kl(student_logits, target)
    if name == "reverse_kl":
        return sparse_reverse_kl(student_logits, target)
    if name == "jsd":
        return sparse_jsd(student_logits, target, beta)
    if name == "tvd":
        return sparse_tvd(student_logits, target)
    raise ValueError(f"unknown KD loss {name!r}; one of {', '.join(KD_LOSSES)}")
