"""Feature- and relation-based distillation: what the student computes inside, not only what
it predicts. The teacher runs for them (a logit cache holds no hidden states), but only as far
as they need: `FeatureDistiller.run_teacher` stops after the deepest teacher layer they read
and never computes the teacher's logits.

Student layer i was copied from teacher layer layers[i] (`models/student.py`, or
`models/prune.py`, narrower). Where teacher layers were dropped after it (a cut point:
layers[i+1] > layers[i] + 1, or the end of the stack), the next kept layer receives student
layer i's output instead of the teacher's residual stream at depth layers[i+1]; the terms pull
the student back to what those layers expect (Minitron: intermediate-state losses when depth
is cut a lot). Without any cut, every layer is matched with its own teacher layer.

hidden-state MSE (feature-based; FitNets, TinyBERT)
    The student's output at each matched layer vs the teacher's residual stream at the depth it
    stands for, through one learned projection W (student width -> teacher width; at the start
    the identity, or for a width-pruned student the map back to the channels it kept):

        L_hid = mean_i  || W h_s^i - h_t^{depth(i)} ||² / mean(h_t^{depth(i)} ²)

    The division by the teacher's mean square makes the term scale-free: Llama residual
    streams grow to norms in the hundreds in late layers, which would swamp the KD term.

attention relations (relation-based; MiniLMv2, Wang et al. 2021)
    In the first student layer after the largest cut (the last layer without a cut), the
    queries, keys and values of both models are split into R relation heads; each gives a
    (L × L) relation softmax(X Xᵀ / sqrt(d_r)) under the causal mask, and the student's
    relations are pulled to the teacher's:

        L_rel = mean_{X in q,k,v} mean_{heads, positions} KL(R_t^X || R_s^X)

    Relations need no equal head counts or widths, and no attention weights from the model
    (so they work with SDPA/flash attention): the q/k/v projections are read with hooks.

Both are taken with forward hooks on the decoder layers (`FeatureTaps`), so the models run
their ordinary forward pass.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from models.student import decoder_layers

if TYPE_CHECKING:
    from collections.abc import Iterator


def qkv_modules(layer: torch.nn.Module) -> tuple[list[torch.nn.Module], bool]:
    """The projections whose outputs are the layer's queries, keys and values, and whether
    they are one fused module (GPT-2's `c_attn`) whose output splits into three."""
    attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
    if attn is not None and all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj")):
        return [attn.q_proj, attn.k_proj, attn.v_proj], False
    if attn is not None and hasattr(attn, "c_attn"):
        return [attn.c_attn], True
    raise ValueError(f"do not know where the q/k/v projections of {type(layer).__name__} are")


class FeatureTaps:
    """Forward hooks that keep the outputs of chosen decoder layers (and the q/k/v of one)
    from the last forward pass of a model."""

    def __init__(self, model: torch.nn.Module, layers: list[int], qkv_layer: int | None) -> None:
        self.hidden: dict[int, torch.Tensor] = {}
        self.qkv: list[torch.Tensor] = []
        self._handles = []
        stack = decoder_layers(model)
        for i in layers:
            self._handles.append(stack[i].register_forward_hook(self._keep_hidden(i)))
        if qkv_layer is not None:
            mods, fused = qkv_modules(stack[qkv_layer])
            for m in mods:
                self._handles.append(m.register_forward_hook(self._keep_qkv(fused)))

    def _keep_hidden(self, i: int):
        def hook(_module, _inputs, output) -> None:
            self.hidden[i] = output[0] if isinstance(output, tuple) else output

        return hook

    def _keep_qkv(self, fused: bool):
        def hook(_module, _inputs, output) -> None:
            self.qkv.extend(output.chunk(3, dim=-1) if fused else [output])

        return hook

    def clear(self) -> None:
        self.hidden.clear()
        self.qkv.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def relation_log_probs(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, heads, L, L) log softmax(X Xᵀ / sqrt(D / heads)) under a causal mask."""
    b, length, d = x.shape
    if d % heads:
        raise ValueError(f"{heads} relation heads do not divide width {d}")
    xh = x.float().view(b, length, heads, d // heads).transpose(1, 2)
    scores = xh @ xh.transpose(-1, -2) / math.sqrt(d // heads)
    future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
    return F.log_softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def relation_kl(student_x: torch.Tensor, teacher_x: torch.Tensor, heads: int) -> torch.Tensor:
    """KL(teacher relation || student relation) per (batch, position), averaged over heads."""
    ls, lt = relation_log_probs(student_x, heads), relation_log_probs(teacher_x, heads)
    # Masked (future) entries are -inf in both: p = 0 there, and 0·(-inf - -inf) must count 0.
    per = torch.where(lt.isfinite(), lt.exp() * (lt - ls), torch.zeros_like(lt)).sum(-1)
    return per.mean(1)  # (B, L)


def hidden_mse(
    student_h: torch.Tensor, teacher_h: torch.Tensor, proj: torch.nn.Module
) -> torch.Tensor:
    """||W h_s - h_t||² / mean(h_t²) per (batch, position)."""
    t = teacher_h.float()
    return (proj(student_h.float()) - t).square().mean(-1) / t.square().mean().clamp_min(1e-12)


def matched_layers(layers: list[int], n_teacher: int) -> list[tuple[int, int]]:
    """(student layer i, teacher depth d) pairs: the output of student layer i stands for the
    teacher's residual stream at depth d (the output of teacher layer d - 1). At the cut points
    when any teacher layer between or after the kept ones is gone, else at every layer."""
    nxt = [*layers[1:], n_teacher]
    cuts = [(i, d) for i, (t, d) in enumerate(zip(layers, nxt, strict=True)) if d > t + 1]
    return cuts or [(i, t + 1) for i, t in enumerate(layers)]


def relation_layer(layers: list[int]) -> int:
    """The student layer whose attention relations are matched: the first after the largest
    gap between kept teacher layers; the last layer when nothing between them was dropped."""
    gaps = [layers[i] - layers[i - 1] for i in range(1, len(layers))]
    if not gaps or max(gaps) == 1:
        return len(layers) - 1
    return gaps.index(max(gaps)) + 1


class _Stop(Exception):
    """Raised by a hook to end the teacher's forward pass after the last layer needed."""


class FeatureDistiller(torch.nn.Module):
    """The trainable part of the feature losses (the projection) and the hooks that feed them.

    Not part of the student: it is saved in training checkpoints (to resume) but not with the
    model. `layers[i]` is the teacher layer that student layer i was copied from; `channels`,
    for a width-pruned student, the teacher's hidden channel each of its channels came from.
    """

    def __init__(
        self,
        student: torch.nn.Module,
        teacher: torch.nn.Module,
        layers: list[int],
        *,
        hidden: bool,
        relations: bool,
        relation_heads: int | None = None,
        channels: list[int] | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != len(decoder_layers(student)):
            raise ValueError(
                f"the student has {len(decoder_layers(student))} layers, the map names {len(layers)}"
            )
        self.layers = list(layers)
        self.use_hidden, self.use_relations = hidden, relations
        n_teacher = len(decoder_layers(teacher))
        self.matched = matched_layers(self.layers, n_teacher) if hidden else []
        self.rel_layer = relation_layer(self.layers) if relations else None
        d_s, d_t = int(student.config.hidden_size), int(teacher.config.hidden_size)
        self.proj = torch.nn.Linear(d_s, d_t, bias=False)
        with torch.no_grad():
            self.proj.weight.zero_()
            kept = channels if channels is not None else (range(d_t) if d_s == d_t else None)
            if kept is not None:
                self.proj.weight[torch.as_tensor(list(kept)), torch.arange(d_s)] = 1.0
            else:
                torch.nn.init.normal_(self.proj.weight, std=d_s**-0.5)
        self.proj.to(next(student.parameters()).device)
        self.heads = relation_heads or _relation_heads(student, teacher)
        t_rel = self.layers[self.rel_layer] if self.rel_layer is not None else None
        self.student_taps = FeatureTaps(student, [i for i, _ in self.matched], self.rel_layer)
        self.teacher_taps = FeatureTaps(teacher, [d - 1 for _, d in self.matched], t_rel)
        needed = [d - 1 for _, d in self.matched] + ([t_rel] if t_rel is not None else [])
        self.deepest = max(needed) if needed else None
        self._early = False
        if self.deepest is not None:
            self.teacher_taps._handles.append(
                decoder_layers(teacher)[self.deepest].register_forward_hook(self._stop)
            )

    def _stop(self, _module, _inputs, _output) -> None:
        if self._early:
            raise _Stop

    @torch.no_grad()
    def run_teacher(self, teacher: torch.nn.Module, input_ids: torch.Tensor) -> None:
        """The teacher's forward pass up to the deepest layer the terms read (no logits)."""
        self._early = True
        try:
            teacher(input_ids=input_ids, use_cache=False)
        except _Stop:
            pass
        finally:
            self._early = False

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """Around the forward passes of one batch: start empty, free the tensors after."""
        self.student_taps.clear()
        self.teacher_taps.clear()
        try:
            yield
        finally:
            self.student_taps.clear()
            self.teacher_taps.clear()

    def losses(self) -> dict[str, torch.Tensor]:
        """Per-(batch, position) losses of the last captured student and teacher passes."""
        out: dict[str, torch.Tensor] = {}
        if self.use_hidden:
            per = [
                hidden_mse(self.student_taps.hidden[i], self.teacher_taps.hidden[d - 1], self.proj)
                for i, d in self.matched
            ]
            out["hidden"] = torch.stack(per).mean(0)
        if self.use_relations:
            s, t = self.student_taps.qkv, self.teacher_taps.qkv
            if len(s) != 3 or len(t) != 3:
                raise RuntimeError(f"captured {len(s)} student / {len(t)} teacher q/k/v tensors")
            out["relation"] = torch.stack(
                [relation_kl(a, b.detach(), self.heads) for a, b in zip(s, t, strict=True)]
            ).mean(0)
        return out

    def remove(self) -> None:
        self.student_taps.remove()
        self.teacher_taps.remove()


def _relation_heads(student: torch.nn.Module, teacher: torch.nn.Module) -> int:
    """Relation heads that divide every q/k/v width of both models: their greatest common
    divisor in units of the teacher's head size (the teacher's KV head count for a student of
    its own width)."""
    widths = []
    for model in (student, teacher):
        cfg = model.config
        heads = int(getattr(cfg, "num_attention_heads", 0) or cfg.n_head)
        hd = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
        kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
        widths += [heads * hd, kv * hd]
    cfg = teacher.config
    heads = int(getattr(cfg, "num_attention_heads", 0) or cfg.n_head)
    hd = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return max(math.gcd(*widths) // hd, 1)
