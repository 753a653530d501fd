from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import torch

from models.student import student_from_teacher, trainable
from tests.tiny import make_tiny_llama


def test_trainable_copy_is_fp32_independent_and_saveable(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    path = make_tiny_llama(tmp_path / "teacher")
    teacher = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16).eval()
    student = student_from_teacher(teacher, [1])
    plain = trainable(student)
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
    assert type(plain) is type(student) and plain.config.num_hidden_layers == 1
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        reference = deepcopy(student).float()(input_ids=ids).logits  # same weights, fp32
        torch.testing.assert_close(plain(input_ids=ids).logits, reference, atol=0, rtol=0)
        plain.lm_head.weight.add_(1.0)
    assert not torch.equal(plain.lm_head.weight.bfloat16(), student.lm_head.weight)
    plain.save_pretrained(str(tmp_path / "saved"))
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved"))
    torch.testing.assert_close(again.lm_head.weight, plain.lm_head.weight)
