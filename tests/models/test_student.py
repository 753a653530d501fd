from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.loading import load_causal_lm
from models.loading_config import ModelSpec
from models.student import every_other_layer, student_from_teacher
from models.tiny import llama_config
from tests.tiny import make_tiny_llama


def test_layer_choice_matches_distilgpt2() -> None:
    assert every_other_layer(12, 6) == [0, 2, 4, 7, 9, 11]
    assert every_other_layer(30, 15)[0] == 0 and every_other_layer(30, 15)[-1] == 29
    with pytest.raises(ValueError):
        every_other_layer(4, 5)


def test_llama_student_runs_with_a_kv_cache(tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    cfg = llama_config(50, hidden=16, ffn=32, layers=4, heads=2, kv_heads=1, positions=64)
    teacher = LlamaForCausalLM(cfg).eval()
    student = student_from_teacher(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and len(teacher.model.layers) == 4
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    assert torch.equal(
        student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[3].mlp.up_proj.weight
    )
    ids = torch.tensor([[1, 2, 3, 4]])
    out = student.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 9)  # decoding with the cache works after re-numbering


def test_gpt2_student(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    teacher = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=6, n_head=2)).eval()
    student = student_from_teacher(teacher, every_other_layer(6, 3))
    assert len(student.transformer.h) == 3 and student.config.n_layer == 3
    assert student(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50)


def test_student_from_a_loaded_teacher(tmp_path: Path) -> None:
    teacher = load_causal_lm(ModelSpec(path=str(make_tiny_llama(tmp_path / "t"))), "cpu")
    student = student_from_teacher(teacher, [1])
    n = sum(p.numel() for p in student.parameters())
    assert n < sum(p.numel() for p in teacher.parameters())
