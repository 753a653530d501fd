"""Feature- and relation-based distillation terms on tiny Llama and GPT-2 models."""

from __future__ import annotations

import pytest
import torch

from models.features import FeatureDistiller, hidden_mse, relation_kl, relation_log_probs
from models.student import student_from_teacher


def _llama(layers: int = 4) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def _gpt2(layers: int = 4) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, n_embd=32, n_layer=layers, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def test_relations_are_causal_distributions() -> None:
    x = torch.randn(2, 5, 8)
    lp = relation_log_probs(x, heads=2)
    assert lp.shape == (2, 2, 5, 5)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 2, 5))
    assert torch.all(lp.exp().triu(1) == 0)  # nothing attends to the future
    with pytest.raises(ValueError, match="divide"):
        relation_log_probs(x, heads=3)


def test_relation_kl_is_zero_for_equal_inputs_and_positive_otherwise() -> None:
    x = torch.randn(2, 6, 8)
    assert relation_kl(x, x, heads=2).abs().max() < 1e-5
    other = relation_kl(torch.randn(2, 6, 8), x, heads=2)
    assert other.shape == (2, 6) and float(other[:, 1:].min()) > 0
    assert float(other[:, 0].abs().max()) < 1e-6  # position 0 only sees itself in both


def test_hidden_mse_is_scale_free() -> None:
    t, s = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    eye = torch.nn.Identity()
    assert float(hidden_mse(t, t, eye).max()) == 0.0
    torch.testing.assert_close(hidden_mse(s * 100, t * 100, eye), hidden_mse(s, t, eye))


def _losses(fd: FeatureDistiller, student, teacher) -> dict:
    """The feature terms of one batch of random ids (student with grad, teacher without)."""
    ids = torch.randint(0, 50, (2, 10))
    with fd.capturing():
        student(input_ids=ids)
        with torch.no_grad():
            teacher(input_ids=ids)
        return fd.losses()


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_a_full_copy_of_the_teacher_has_zero_feature_loss(make) -> None:
    teacher = make()
    student = student_from_teacher(teacher, [0, 1, 2, 3])
    fd = FeatureDistiller(student, teacher, [0, 1, 2, 3], hidden=True, relations=True)
    losses = _losses(fd, student, teacher)
    assert set(losses) == {"hidden", "relation"}
    for name, per in losses.items():
        assert per.shape == (2, 10), name
        assert float(per.detach().abs().max()) < 1e-4, name
    assert not fd.student_taps.hidden  # freed after the batch
    fd.remove()


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_a_layer_subset_student_gets_gradients_from_both_terms(make) -> None:
    teacher = make()
    student = student_from_teacher(teacher, [0, 3])
    fd = FeatureDistiller(student, teacher, [0, 3], hidden=True, relations=True)
    losses = _losses(fd, student, teacher)
    assert all(float(v.mean()) > 0 for v in losses.values())
    sum(v.mean() for v in losses.values()).backward()
    last = list(student.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in last)
    assert fd.proj.weight.grad is not None  # the projection learns too
    fd.remove()
    assert not fd.student_taps._handles


def test_the_layer_map_must_match_the_student() -> None:
    teacher = _llama()
    student = student_from_teacher(teacher, [0, 3])
    with pytest.raises(ValueError, match="layers"):
        FeatureDistiller(student, teacher, [0, 1, 3], hidden=True, relations=False)
