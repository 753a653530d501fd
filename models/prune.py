"""Students by measured importance: which layers, heads, MLP channels and hidden channels of a
teacher to keep, decided by one calibration pass over a few blocks of real data.

One forward pass of the teacher (`measure_importance`) records, with hooks:

depth   the residual stream before and after every layer, as
        - block influence (ShortGPT, Men et al. 2024): 1 - cos(h_in, h_out) of each layer;
        - the angular distance arccos(cos(h_i, h_j)) / π between any two depths (Gromov et
          al. 2024): dropping the n layers between i and i + n costs little when h_i is
          already close to h_{i+n}.
width   (Minitron, Muralidharan et al. 2024) activation magnitudes on the calibration data:
        - an attention head: the L2 norm of its output (the input of o_proj), mean over tokens;
        - an MLP channel: the RMS of act(gate) * up (the input of down_proj);
        - a hidden (embedding) channel: the mean |output| of every RMSNorm in the model.
        The inputs of every RMSNorm are kept as mean squares per channel too: a norm over fewer
        channels divides by a different RMS, and `prune_width` rescales its gain so that the
        kept channels come out at the scale the teacher's did.

`span_to_drop` picks the contiguous layers to remove; `prune_width` builds a narrower copy of a
Llama-family model (same class, smaller config, the kept rows and columns of each weight).
Both return students that start where the teacher is, minus what was cut; `student_params`
counts a plan's parameters without building it, so plans can be compared at equal size.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from models.student import decoder_layers

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch
    from transformers import PreTrainedModel


@dataclass
class Importance:
    """What one calibration pass measured (numpy, so it can be saved as JSON)."""

    block_influence: np.ndarray  # (layers,)
    angular: np.ndarray  # (layers + 1, layers + 1): depth i vs depth j, mean over tokens
    heads: np.ndarray  # (layers, q heads)
    mlp: np.ndarray  # (layers, intermediate)
    hidden: np.ndarray  # (hidden,)
    norm_sq: dict[str, np.ndarray] = field(default_factory=dict)  # RMSNorm input mean squares
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_influence": [round(float(x), 5) for x in self.block_influence],
            "tokens": self.tokens,
        }


def _norms(model: PreTrainedModel) -> dict[str, torch.nn.Module]:
    """Every RMSNorm of a Llama-family model by its module name."""
    return {
        name: m
        for name, m in model.named_modules()
        if type(m).__name__.endswith("RMSNorm") and hasattr(m, "weight")
    }


def _check_llama(model: PreTrainedModel) -> None:
    layer = decoder_layers(model)[0]
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    needed = [(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    needed += [(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")]
    if attn is None or mlp is None or not all(hasattr(o, n) for o, n in needed):
        raise ValueError(
            f"width pruning knows Llama-family layers (q/k/v/o_proj, gate/up/down_proj), "
            f"not {type(layer).__name__}"
        )


def measure_importance(model: PreTrainedModel, batches: Iterable[torch.Tensor]) -> Importance:
    """One forward pass over `batches` ((B, L) token ids) with hooks; see the module doc."""
    import torch

    _check_llama(model)
    cfg = model.config
    n = int(cfg.num_hidden_layers)
    n_heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads)
    heads = torch.zeros(n, n_heads, dtype=torch.float64)
    mlp = torch.zeros(n, int(cfg.intermediate_size), dtype=torch.float64)
    hidden = torch.zeros(int(cfg.hidden_size), dtype=torch.float64)
    norm_sq: dict[str, torch.Tensor] = {}
    bi = torch.zeros(n, dtype=torch.float64)
    angular = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    handles = []

    def on_o_proj(i: int):
        def hook(_m, inputs, _out) -> None:
            x = inputs[0].detach().float()
            heads[i] += x.view(*x.shape[:-1], n_heads, head_dim).norm(dim=-1).sum((0, 1)).double()

        return hook

    def on_down(i: int):
        def hook(_m, inputs, _out) -> None:
            mlp[i] += inputs[0].detach().float().square().sum((0, 1)).double()

        return hook

    def on_norm(name: str):
        def hook(_m, inputs, out) -> None:
            hidden.add_(out.detach().float().abs().sum((0, 1)).double())
            sq = inputs[0].detach().float().square().sum((0, 1)).double()
            norm_sq[name] = norm_sq.get(name, 0) + sq

        return hook

    for i, layer in enumerate(decoder_layers(model)):
        handles.append(layer.self_attn.o_proj.register_forward_hook(on_o_proj(i)))
        handles.append(layer.mlp.down_proj.register_forward_hook(on_down(i)))
    for name, m in _norms(model).items():
        handles.append(m.register_forward_hook(on_norm(name)))
    stream: dict[int, torch.Tensor] = {}  # depth -> residual stream of the current batch

    def on_layer_in(_m, args, kwargs) -> None:
        x = args[0] if args else kwargs["hidden_states"]
        stream[0] = x.detach().float()

    def on_layer_out(i: int):
        def hook(_m, _inputs, out) -> None:
            stream[i + 1] = (out[0] if isinstance(out, tuple) else out).detach().float()

        return hook

    stack = decoder_layers(model)
    handles.append(stack[0].register_forward_pre_hook(on_layer_in, with_kwargs=True))
    for i, layer in enumerate(stack):
        handles.append(layer.register_forward_hook(on_layer_out(i)))
    tokens = 0
    try:
        with torch.no_grad():
            for ids in batches:
                model(input_ids=ids.to(next(model.parameters()).device))
                flat = torch.stack(
                    [stream[k].reshape(-1, stream[k].shape[-1]) for k in range(n + 1)]
                )
                unit = torch.nn.functional.normalize(flat, dim=-1)  # (n+1, T, D)
                for a in range(n + 1):
                    cos = (unit[a : a + 1] * unit).sum(-1).clamp(-1, 1)  # (n+1, T)
                    angular[a] += (torch.arccos(cos) / math.pi).sum(-1).double()
                for i in range(n):
                    bi[i] += (1 - (unit[i] * unit[i + 1]).sum(-1)).sum().double()
                tokens += int(ids.numel())
                stream.clear()
    finally:
        for h in handles:
            h.remove()
    if tokens == 0:
        raise ValueError("no calibration tokens")
    rms = {k: (v / tokens).numpy() for k, v in norm_sq.items()}
    return Importance(
        block_influence=(bi / tokens).numpy(),
        angular=(angular / tokens).numpy(),
        heads=(heads / tokens).numpy(),
        mlp=(mlp / tokens).sqrt().numpy(),
        hidden=(hidden / tokens).numpy(),
        norm_sq=rms,
        tokens=tokens,
    )


# --------------------------------------------------------------------------- depth
def span_to_drop(imp: Importance, drop: int, keep_first: int = 1) -> list[int]:
    """The `drop` contiguous layers whose removal changes the residual stream least: the
    start l (at or after `keep_first`, so the embedding's first layer stays) minimising the
    angular distance between depth l and depth l + drop (Gromov et al. 2024)."""
    n = imp.angular.shape[0] - 1
    if not 0 <= drop < n:
        raise ValueError(f"cannot drop {drop} of {n} layers")
    if drop == 0:
        return []
    starts = range(min(keep_first, n - drop), n - drop + 1)
    best = min(starts, key=lambda s: float(imp.angular[s, s + drop]))
    return list(range(best, best + drop))


def depth_layers(imp: Importance, keep: int, method: str = "span") -> list[int]:
    """The teacher layers a depth-pruned student keeps: `span` drops the cheapest contiguous
    run (Gromov et al.), `influence` keeps the `keep` layers of highest block influence
    (ShortGPT)."""
    n = len(imp.block_influence)
    if method == "influence":
        return sorted(np.argsort(-imp.block_influence)[:keep].tolist())
    dropped = set(span_to_drop(imp, n - keep))
    return [i for i in range(n) if i not in dropped]


# --------------------------------------------------------------------------- width
@dataclass
class WidthPlan:
    """Sizes of a width-pruned student (None: as the teacher)."""

    hidden_size: int | None = None
    intermediate_size: int | None = None
    kv_heads: int | None = None
    heads_per_kv: int | None = None
    layers: list[int] | None = None  # depth as well: these teacher layers (None: all)


def student_params(config: Any, plan: WidthPlan) -> int:
    """Parameters of the student `plan` makes from a model of `config` (tied embeddings once)."""
    d = plan.hidden_size or int(config.hidden_size)
    m = plan.intermediate_size or int(config.intermediate_size)
    kv = plan.kv_heads or int(config.num_key_value_heads)
    q = kv * (
        plan.heads_per_kv or int(config.num_attention_heads) // int(config.num_key_value_heads)
    )
    hd = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    n = len(plan.layers) if plan.layers is not None else int(config.num_hidden_layers)
    per_layer = d * hd * (2 * q + 2 * kv) + 3 * d * m + 2 * d
    if getattr(config, "attention_bias", False):
        per_layer += hd * (q + 2 * kv) + d
    embed = int(config.vocab_size) * d
    head = 0 if getattr(config, "tie_word_embeddings", False) else embed
    return embed + head + n * per_layer + d


def intermediate_for(config: Any, plan: WidthPlan, params: int, multiple: int = 32) -> int:
    """The largest MLP width (a multiple of `multiple`) that keeps `plan` within `params`.
    32: GGUF's quantized types pack a row in blocks of 32 values, so an MLP of another width
    could not be exported as q8_0/q5_0/q4_0 (its down projection's rows would not divide)."""
    lo, hi = 0, int(config.intermediate_size) // multiple
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = copy.copy(plan)
        trial.intermediate_size = max(mid * multiple, 1)
        if student_params(config, trial) <= params:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        raise ValueError(f"no MLP width fits {params:,} parameters with {plan}")
    return lo * multiple


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, in their original order."""
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def prune_width(model: PreTrainedModel, imp: Importance, plan: WidthPlan) -> PreTrainedModel:
    """A narrower copy of `model` (Llama family) keeping the most important hidden channels,
    KV groups (and query heads within them), MLP channels and, if `plan.layers`, only those
    layers. fp32, on the model's device; the norms' gains rescaled for the channels they lost."""
    import torch

    _check_llama(model)
    cfg = model.config
    n_q, n_kv = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
    group = n_q // n_kv
    hd = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // n_q)
    layers = list(plan.layers) if plan.layers is not None else list(range(cfg.num_hidden_layers))
    d = plan.hidden_size or int(cfg.hidden_size)
    m = plan.intermediate_size or int(cfg.intermediate_size)
    kv = plan.kv_heads or n_kv
    per = plan.heads_per_kv or group
    if d > cfg.hidden_size or m > cfg.intermediate_size or kv > n_kv or per > group:
        raise ValueError(f"{plan} is not smaller than the teacher")
    if d % (kv * per):
        # transformers refuses to save (or load) such a config, whatever head_dim says
        raise ValueError(f"hidden size {d} is not a multiple of the {kv * per} attention heads")
    keep_d = torch.from_numpy(_top(imp.hidden, d))

    new_cfg = copy.deepcopy(cfg)
    if hasattr(new_cfg, "quantization_config"):
        del new_cfg.quantization_config
    new_cfg.hidden_size, new_cfg.intermediate_size = d, m
    new_cfg.num_attention_heads, new_cfg.num_key_value_heads = kv * per, kv
    new_cfg.head_dim = hd
    new_cfg.num_hidden_layers = len(layers)
    if getattr(new_cfg, "layer_types", None):
        new_cfg.layer_types = [new_cfg.layer_types[i] for i in layers]
    device = next(model.parameters()).device
    with torch.device(device):
        student = type(model)(new_cfg).to(torch.float32)

    def gain(name: str, weight: torch.Tensor) -> torch.Tensor:
        sq = imp.norm_sq.get(name)
        w = weight.detach().float()[keep_d]
        if sq is None or d == cfg.hidden_size:
            return w
        # x / rms(x) over fewer channels: scale back to the RMS over all of them
        return w * math.sqrt(float(sq[keep_d.numpy()].mean()) / float(sq.mean()))

    src, dst = model.model, student.model
    with torch.no_grad():
        dst.embed_tokens.weight.copy_(src.embed_tokens.weight.detach().float()[:, keep_d])
        dst.norm.weight.copy_(gain("model.norm", src.norm.weight))
        if not getattr(cfg, "tie_word_embeddings", False):
            student.lm_head.weight.copy_(model.lm_head.weight.detach().float()[:, keep_d])
        for j, i in enumerate(layers):
            s, t = decoder_layers(model)[i], decoder_layers(student)[j]
            # KV groups by the summed importance of their query heads, then the best heads
            # within each kept group (the same count in every group, as GQA needs)
            h = imp.heads[i].reshape(n_kv, group)
            groups = _top(h.sum(1), kv)
            q_heads = np.concatenate([g * group + _top(h[g], per) for g in groups])
            q_rows = torch.from_numpy(np.concatenate([np.arange(hd) + q * hd for q in q_heads]))
            kv_rows = torch.from_numpy(np.concatenate([np.arange(hd) + g * hd for g in groups]))
            keep_m = torch.from_numpy(_top(imp.mlp[i], m))
            a, b = s.self_attn, t.self_attn
            for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
                _copy_linear(getattr(a, name), getattr(b, name), rows, keep_d)
            _copy_linear(a.o_proj, b.o_proj, keep_d, q_rows)
            _copy_linear(s.mlp.gate_proj, t.mlp.gate_proj, keep_m, keep_d)
            _copy_linear(s.mlp.up_proj, t.mlp.up_proj, keep_m, keep_d)
            _copy_linear(s.mlp.down_proj, t.mlp.down_proj, keep_d, keep_m)
            prefix = f"model.layers.{i}."
            for norm in ("input_layernorm", "post_attention_layernorm"):
                getattr(t, norm).weight.copy_(gain(prefix + norm, getattr(s, norm).weight))
    if getattr(cfg, "tie_word_embeddings", False):
        student.tie_weights()
    student.hidden_channels = keep_d.tolist()  # for a feature loss's projection
    return student.train(model.training)


def _copy_linear(
    src: torch.nn.Linear, dst: torch.nn.Linear, rows: torch.Tensor, cols: torch.Tensor
) -> None:
    dst.weight.copy_(src.weight.detach().float()[rows][:, cols])
    if src.bias is not None and dst.bias is not None:
        dst.bias.copy_(src.bias.detach().float()[rows])
