"""make_student: the student `distill.student` asks for, cut after a calibration pass that reads
training blocks only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.prune import WidthPlan, student_params
from tasks.distill.config import DistillConfig, DistillError, StudentConfig
from tasks.distill.data import SPLIT_CODES, TokenBlocks
from tasks.distill.students import make_student


def _teacher(layers: int = 6) -> torch.nn.Module:
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    torch.manual_seed(0)
    cfg = llama_config(40, hidden=32, ffn=64, layers=layers, heads=4, kv_heads=2, positions=64,
                       tie_word_embeddings=True)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def _blocks(train: int = 6, held: int = 4, size: int = 12) -> TokenBlocks:
    rng = np.random.default_rng(0)
    n = train + held
    split = np.array([SPLIT_CODES["train"]] * train + [SPLIT_CODES["test"]] * held, np.int8)
    return TokenBlocks(
        rng.integers(0, 40, (n, size)).astype(np.int64), np.ones((n, size), np.uint8), split,
        np.zeros(n, np.int64), np.arange(n), ["tokens/x@1"],
    )  # fmt: skip


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def test_layers_kind_keeps_the_named_or_evenly_spread_layers() -> None:
    teacher = _teacher()
    student, layers, info = make_student(teacher, DistillConfig(layers=[0, 2, 5]), _blocks())
    assert layers == [0, 2, 5] and student.config.num_hidden_layers == 3
    assert info == {"kind": "layers", "layers": [0, 2, 5]}
    assert all(p.requires_grad and p.dtype == torch.float32 for p in student.parameters())
    _, layers, _ = make_student(teacher, DistillConfig(keep_layers=3), _blocks())
    assert len(layers) == 3 and layers[0] == 0 and layers[-1] == 5


def test_depth_kind_fits_the_share_and_calibrates_on_training_blocks_only() -> None:
    teacher = _teacher()
    blocks = _blocks()
    seen: list[torch.Tensor] = []
    hook = teacher.model.embed_tokens.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    cfg = DistillConfig(student=StudentConfig(kind="depth", share=0.6, calibration_blocks=4),
                        batch_blocks=2)  # fmt: skip
    student, layers, info = make_student(teacher, cfg, blocks)
    hook.remove()
    # the calibration pass read the first 4 training blocks, never a test block
    torch.testing.assert_close(torch.cat(seen), torch.from_numpy(blocks.input_ids[:4]))
    assert info["calibration_tokens"] == 4 * 12 and info["method"] == "span"
    budget = int(0.6 * _params(teacher))
    assert info["budget_params"] == budget
    assert _params(student) <= budget
    # the most layers that fit: one more would not
    more = student_params(teacher.config, WidthPlan(layers=list(range(len(layers) + 1))))
    assert more > budget
    assert layers == sorted(layers) and len(set(layers)) == len(layers)
    assert student.config.num_hidden_layers == len(layers)
    with pytest.raises(DistillError, match="not even one layer"):
        make_student(
            teacher, DistillConfig(student=StudentConfig(kind="depth", share=0.01)), blocks
        )


def test_width_kind_fills_the_share_with_mlp_channels() -> None:
    teacher = _teacher()
    cfg = DistillConfig(student=StudentConfig(kind="width", share=0.5, hidden_size=24, kv_heads=1))
    student, layers, info = make_student(teacher, cfg, _blocks())
    assert layers == list(range(6)) and info["kind"] == "width"
    assert info["hidden_size"] == 24 and info["kv_heads"] == 1
    c = student.config
    assert (c.hidden_size, c.num_key_value_heads, c.num_attention_heads) == (24, 1, 2)
    assert c.intermediate_size == info["intermediate_size"]
    assert _params(student) <= info["budget_params"]
    # the widest MLP (in steps of 32 channels, GGUF's block) that fits: 32 more would not
    assert c.intermediate_size % 32 == 0 and c.intermediate_size < 64
    plan = WidthPlan(hidden_size=24, kv_heads=1, intermediate_size=c.intermediate_size + 32)
    assert student_params(teacher.config, plan) > info["budget_params"]
    with torch.no_grad():
        out = student(input_ids=torch.from_numpy(_blocks().input_ids[:2])).logits
    assert out.shape == (2, 12, 40) and torch.isfinite(out).all()
    # with fewer layers too: the span that moves the stream least goes
    cfg = DistillConfig(student=StudentConfig(kind="width", share=0.5, keep_layers=4))
    student, layers, info = make_student(teacher, cfg, _blocks())
    assert len(layers) == 4 and student.config.num_hidden_layers == 4
    # a plan bigger than the share is refused, not silently trained
    big = StudentConfig(kind="width", share=0.3, intermediate_size=64)
    with pytest.raises(DistillError, match="more than 30%"):
        make_student(teacher, DistillConfig(student=big), _blocks())
    # transformers cannot save a hidden size that the heads do not divide: refused up front
    odd = StudentConfig(kind="width", share=0.5, hidden_size=21)
    with pytest.raises(DistillError, match="not a multiple of the 4 attention heads"):
        make_student(teacher, DistillConfig(student=odd), _blocks())


def test_no_training_block_no_calibration() -> None:
    blocks = _blocks(train=0)
    cfg = DistillConfig(student=StudentConfig(kind="depth"))
    with pytest.raises(DistillError, match="no training blocks"):
        make_student(_teacher(), cfg, blocks)
