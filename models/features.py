"""Feature- and relation-based distillation: what the student computes inside, not only what
it predicts. Online only — a logit cache holds no hidden states.

hidden-state MSE (feature-based; FitNets, TinyBERT)
    Each student layer was copied from a teacher layer (`models/student.py`), so student layer
    i is matched with teacher layer layers[i]. Their outputs (the residual stream) are compared
    through one learned projection W (student width -> teacher width; identity at the start,
    since a layer-subset student has the teacher's width):

        L_hid = mean_i  || W h_s^i - h_t^{layers[i]} ||² / mean(h_t^{layers[i]} ²)

    The division by the teacher's mean square makes the term scale-free: Llama residual
    streams grow to norms in the hundreds in late layers, which would swamp the KD term.

attention relations (relation-based; MiniLMv2, Wang et al. 2021)
    In the last layer, the queries, keys and values of both models are split into R relation
    heads; each gives a (L × L) relation softmax(X Xᵀ / sqrt(d_r)) under the causal mask, and
    the student's relations are pulled to the teacher's:

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


class FeatureDistiller(torch.nn.Module):
    """The trainable part of the feature losses (the projection) and the hooks that feed them.

    Not part of the student: it is saved in training checkpoints (to resume) but not with the
    model. `layers[i]` is the teacher layer that student layer i was copied from.
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
    ) -> None:
        super().__init__()
        if len(layers) != len(decoder_layers(student)):
            raise ValueError(
                f"the student has {len(decoder_layers(student))} layers, the map names {len(layers)}"
            )
        self.layers = list(layers)
        self.use_hidden, self.use_relations = hidden, relations
        d_s, d_t = int(student.config.hidden_size), int(teacher.config.hidden_size)
        self.proj = torch.nn.Linear(d_s, d_t, bias=False)
        with torch.no_grad():
            if d_s == d_t:
                self.proj.weight.copy_(torch.eye(d_t))
        self.proj.to(next(student.parameters()).device)
        cfg = teacher.config
        self.heads = relation_heads or int(
            getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        )
        last_s = len(self.layers) - 1
        self.student_taps = FeatureTaps(
            student, list(range(len(layers))) if hidden else [], last_s if relations else None
        )
        self.teacher_taps = FeatureTaps(
            teacher, self.layers if hidden else [], self.layers[-1] if relations else None
        )

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
                hidden_mse(self.student_taps.hidden[i], self.teacher_taps.hidden[t], self.proj)
                for i, t in enumerate(self.layers)
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
