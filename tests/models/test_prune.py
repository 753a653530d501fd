"""Students by measured importance (models/prune.py) on tiny Llamas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.prune import (
    WidthPlan,
    depth_layers,
    intermediate_for,
    measure_importance,
    prune_width,
    span_to_drop,
    student_params,
)


def _llama(layers: int = 4, hidden: int = 32) -> torch.nn.Module:
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    torch.manual_seed(0)
    cfg = llama_config(50, hidden=hidden, ffn=48, layers=layers, heads=4, kv_heads=2,
                       positions=64, tie_word_embeddings=True)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def _ids(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 50, (n, 12), generator=torch.Generator().manual_seed(1))


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def test_importance_has_one_score_per_layer_head_channel() -> None:
    teacher = _llama()
    imp = measure_importance(teacher, _ids().split(2))
    assert imp.tokens == 48
    assert imp.block_influence.shape == (4,) and imp.angular.shape == (5, 5)
    assert imp.heads.shape == (4, 4) and imp.mlp.shape == (4, 48) and imp.hidden.shape == (32,)
    np.testing.assert_allclose(np.diag(imp.angular), 0, atol=1e-3)  # a depth vs itself
    np.testing.assert_allclose(imp.angular, imp.angular.T, atol=1e-6)
    assert (imp.heads > 0).all() and (imp.mlp > 0).all() and (imp.hidden > 0).all()
    assert set(imp.norm_sq) == {f"model.layers.{i}.{n}" for i in range(4)
                                for n in ("input_layernorm", "post_attention_layernorm")} | {"model.norm"}  # fmt: skip


def test_depth_drops_the_span_that_moves_the_stream_least() -> None:
    teacher = _llama(6)
    imp = measure_importance(teacher, _ids().split(2))
    imp.angular[:] = 0.5
    imp.angular[2, 5] = imp.angular[5, 2] = 0.01  # depth 2 and depth 5 are nearly the same
    assert span_to_drop(imp, 3) == [2, 3, 4]
    assert depth_layers(imp, 3, "span") == [0, 1, 5]
    imp.block_influence[:] = [0.9, 0.1, 0.5, 0.2, 0.8, 0.05]
    assert depth_layers(imp, 3, "influence") == [0, 2, 4]


def test_width_pruning_with_nothing_removed_is_the_teacher() -> None:
    teacher = _llama()
    imp = measure_importance(teacher, _ids().split(2))
    same = prune_width(teacher, imp, WidthPlan())
    with torch.no_grad():
        torch.testing.assert_close(same(input_ids=_ids()).logits, teacher(input_ids=_ids()).logits)


def test_width_pruning_keeps_the_most_active_channels_and_counts_right() -> None:
    teacher = _llama()
    imp = measure_importance(teacher, _ids().split(2))
    plan = WidthPlan(hidden_size=24, kv_heads=2, heads_per_kv=1, layers=[0, 1, 3])
    plan.intermediate_size = intermediate_for(teacher.config, plan, int(0.6 * _params(teacher)))
    student = prune_width(teacher, imp, plan)
    assert _params(student) == student_params(teacher.config, plan) <= 0.6 * _params(teacher)
    assert student_params(teacher.config, WidthPlan()) == _params(teacher)
    cfg = student.config
    assert (cfg.hidden_size, cfg.num_key_value_heads, cfg.num_attention_heads) == (24, 2, 2)
    assert cfg.num_hidden_layers == 3 and cfg.head_dim == teacher.config.head_dim
    kept = student.hidden_channels
    assert kept == sorted(np.argsort(-imp.hidden)[:24].tolist())
    torch.testing.assert_close(
        student.model.embed_tokens.weight, teacher.model.embed_tokens.weight[:, kept]
    )
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        out = student(input_ids=_ids()).logits
    assert out.shape == (4, 12, 50) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="smaller"):
        prune_width(teacher, imp, WidthPlan(hidden_size=64))
