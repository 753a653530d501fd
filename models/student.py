"""Students made from a teacher by keeping a subset of its layers (DistilGPT2-style init)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def every_other_layer(n_layers: int, keep: int) -> list[int]:
    """`keep` layers spread evenly over n, first and last included (GPT-2 12 -> 6 gives
    0, 2, 4, 7, 9, 11 — DistilGPT2's choice)."""
    if not 1 <= keep <= n_layers:
        raise ValueError(f"cannot keep {keep} of {n_layers} layers")
    if keep == 1:
        return [0]
    return sorted({round(i * (n_layers - 1) / (keep - 1)) for i in range(keep)})


def student_from_teacher(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A copy of `teacher` with only `layers` (indices into its decoder stack).

    Works for Llama-style models (`model.layers`, re-numbering each attention's `layer_idx`
    and trimming `config.layer_types`, or the KV cache indexes out of range) and GPT-2 style
    (`transformer.h`).
    """
    import torch

    student = copy.deepcopy(teacher)
    stack_owner, attr = _decoder_stack(student)
    stack = getattr(stack_owner, attr)
    if not layers or sorted(set(layers)) != list(layers) or layers[-1] >= len(stack):
        raise ValueError(f"layers must be increasing indices below {len(stack)}, got {layers}")
    setattr(stack_owner, attr, torch.nn.ModuleList([stack[i] for i in layers]))
    for new_idx, layer in enumerate(getattr(stack_owner, attr)):
        attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
    cfg = student.config
    for name in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, name):
            setattr(cfg, name, len(layers))
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[i] for i in layers]
    return student


def _decoder_stack(model: PreTrainedModel) -> tuple[object, str]:
    base = getattr(model, "model", None) or getattr(model, "transformer", None)
    for owner, attr in ((base, "layers"), (base, "h")):
        if owner is not None and hasattr(owner, attr):
            return owner, attr
    raise ValueError(f"do not know where the layers of {type(model).__name__} are")


def decoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The model's stack of decoder layers (Llama `model.layers`, GPT-2 `transformer.h`)."""
    owner, attr = _decoder_stack(model)
    return getattr(owner, attr)


def trainable(model: PreTrainedModel) -> PreTrainedModel:
    """A plain fp32 copy of `model` (same class, config and weights) that can be trained and
    saved with `save_pretrained`: a model loaded from GGUF stays flagged as quantized, which
    forbids both `.float()` and serialisation, although its weights are ordinary tensors."""
    import torch

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    device = next(model.parameters()).device
    with torch.device(device):
        fresh = type(model)(config).to(torch.float32)
    fresh.load_state_dict({k: v.detach().float() for k, v in model.state_dict().items()})
    return fresh.train(model.training)
