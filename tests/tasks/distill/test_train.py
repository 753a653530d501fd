"""The training loop on a tiny teacher, its real tokens snapshot and logit caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_quality import gate
from models.loading import load_causal_lm, model_vocab_size
from models.loading_config import ModelSpec
from models.losses import forward_kl, masked_mean, sparse_batch
from models.student import student_from_teacher
from tasks.distill.checkpoint import latest_checkpoint
from tasks.distill.config import DistillConfig
from tasks.distill.data import CacheReader, TokenBlocks, read_blocks
from tasks.distill.train import (
    batch_loss,
    held_out_loss,
    lr_at,
    make_batch,
    next_token_mask,
    train_student,
)
from tasks.ingest.ingest import ingest
from tasks.logits.cache import cache_logits
from tasks.logits.config import LogitCacheConfig
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny teacher, the tokens of 80 documents and a top-k and a sampled cache of them."""
    root = tmp_path_factory.mktemp("train")
    teacher_dir = make_tiny_llama(root / "teacher")
    _sharpen(teacher_dir)
    spec = ModelSpec(path=str(teacher_dir))
    catalog = Catalog(root / "home")
    r = ingest(str(write_jsonl(root / "in.jsonl", news_docs(80))), "news", catalog, progress=False)
    gate("raw", r.ref, catalog)
    tcfg = TokensConfig(block_size=16, validation_share=0.3)
    (tokens,) = tokenize("news", catalog, spec, tcfg, progress=False).refs
    gate("tokens", tokens, catalog)
    caches = {}
    for mode in ("topk", "sampled"):
        cfg = LogitCacheConfig(mode=mode, k=8, samples=32, shard_blocks=3, batch_blocks=2)
        # A second cache of the same tokens: the catalog keeps both as logits versions.
        (ref,) = cache_logits("news", catalog, spec, cfg, progress=False).refs
        caches[mode] = Path(ref.path)
    blocks = read_blocks([(tokens.key, tokens.files())])
    return {"spec": spec, "blocks": blocks, "caches": caches, "catalog": catalog}


def _sharpen(path: Path) -> None:
    """A random tiny LM is almost uniform; a scaled output layer gives it real preferences."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path))
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(str(path))


def _models(world: dict) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    teacher = load_causal_lm(world["spec"], "cpu")
    torch.manual_seed(0)
    return teacher, student_from_teacher(teacher, [0]), model_vocab_size(teacher)


def _cfg(**kw) -> DistillConfig:
    base = dict(max_steps=6, batch_blocks=4, warmup_steps=2, eval_every=3, checkpoint_every=3)
    return DistillConfig(**(base | kw))


def test_blocks_have_both_splits_and_the_cache_lines_up_with_them(world: dict) -> None:
    blocks: TokenBlocks = world["blocks"]
    assert len(blocks.train()) > 4 and len(blocks.selection()) > 0 and len(blocks.test()) > 0
    reader = CacheReader(world["caches"]["topk"])
    teacher = load_causal_lm(world["spec"], "cpu")
    train = blocks.train()
    b = int(train[train >= 3][0])  # a training block past the first shard (3 blocks per shard)
    with torch.no_grad():
        logits = teacher(input_ids=torch.from_numpy(blocks.input_ids[[b]])).logits[0]
    t = reader.block(b)
    assert t.positions == blocks.block_size
    np.testing.assert_array_equal(t.ids[:, 0], logits.argmax(-1).numpy())  # the teacher's top-1
    sampled = CacheReader(world["caches"]["sampled"]).blocks([b, int(train[0])])
    assert sampled.positions == 2 * blocks.block_size
    assert (sampled.mass() == 1.0).all()
    # held-out blocks: nothing trains on them, so the cache stores no target (mass 0)
    held = np.concatenate([blocks.selection(), blocks.test()])
    assert (CacheReader(world["caches"]["sampled"]).blocks(held).mass() == 0).all()
    assert (CacheReader(world["caches"]["topk"]).blocks(held).mass() == 0).all()


def test_next_token_mask_shifts_left_and_drops_the_last_position() -> None:
    m = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    assert next_token_mask(m).tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = DistillConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 100))


def test_offline_exact_cache_loss_equals_online_loss(world: dict) -> None:
    """With a top-k cache holding every id, the offline KD loss is the online one (fp16)."""
    blocks: TokenBlocks = world["blocks"]
    teacher, student, vocab = _models(world)
    idx = blocks.train()[:2]
    batch = make_batch(blocks, idx, None)
    with torch.no_grad():
        t_logits = teacher(input_ids=batch.input_ids).logits.reshape(-1, vocab)
    from models.logit_cache import topk_targets

    batch.targets = sparse_batch(topk_targets(t_logits, vocab, vocab))
    cfg = _cfg()
    offline, _ = batch_loss(student, batch, cfg, vocab)
    online, _ = batch_loss(student, batch, cfg, vocab, teacher=teacher)
    assert online.item() > 0.05  # a real divergence, not a rounding
    assert offline.item() == pytest.approx(online.item(), rel=2e-3)
    with torch.no_grad():
        s_logits = student(input_ids=batch.input_ids).logits.reshape(-1, vocab)
    w = next_token_mask(batch.loss_mask).reshape(-1)
    assert online.item() == pytest.approx(masked_mean(forward_kl(s_logits, t_logits), w).item())


@pytest.mark.parametrize("mode", ["topk", "sampled"])
def test_offline_training_moves_the_student_towards_the_teacher(
    world: dict, tmp_path: Path, mode: str
) -> None:
    blocks: TokenBlocks = world["blocks"]
    teacher, student, vocab = _models(world)
    val = blocks.test()
    cfg = _cfg(max_steps=30, lr=3e-3, eval_every=10, checkpoint_every=30)

    def kd_to_teacher() -> float:
        b = make_batch(blocks, val, None)
        with torch.no_grad():
            s = student(input_ids=b.input_ids).logits.reshape(-1, vocab)
            t = teacher(input_ids=b.input_ids).logits.reshape(-1, vocab)
        return masked_mean(forward_kl(s, t), next_token_mask(b.loss_mask).reshape(-1)).item()

    before = kd_to_teacher()
    caches = [CacheReader(world["caches"][mode])]
    result = train_student(
        student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, caches=caches, progress=False
    )
    after = kd_to_teacher()
    assert result.steps == 30 and result.tokens == 30 * 4 * blocks.block_size
    assert after < 0.8 * before, (before, after)  # held-out KL to the teacher fell
    assert [h["step"] for h in result.history if "val_loss" in h] == [10, 20, 30]
    assert result.best_val_loss is not None and np.isfinite(result.best_val_loss)
    assert latest_checkpoint(tmp_path).name == "step-0000030"  # type: ignore[union-attr]


def test_online_training_runs_the_teacher_in_the_loop(world: dict, tmp_path: Path) -> None:
    blocks: TokenBlocks = world["blocks"]
    teacher, student, vocab = _models(world)
    cfg = _cfg(mode="online", temperature=2.0, kd_loss="jsd", ce_weight=0.5, max_steps=4)
    result = train_student(
        student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, teacher=teacher, progress=False
    )
    assert result.steps == 4 and {"kd", "ce"} <= set(result.history[-1])
    with pytest.raises(ValueError, match="not both"):
        train_student(
            student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, teacher=teacher,
            caches=[CacheReader(world["caches"]["topk"])], progress=False,
        )  # fmt: skip


def test_ce_only_needs_neither_teacher_nor_cache(world: dict, tmp_path: Path) -> None:
    blocks: TokenBlocks = world["blocks"]
    _, student, vocab = _models(world)
    val = blocks.selection()  # what best_val_loss is measured on
    before = held_out_loss(student, blocks, val, vocab)
    cfg = _cfg(kd_weight=0.0, ce_weight=1.0, max_steps=20, lr=3e-3, eval_every=20)
    result = train_student(student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, progress=False)
    assert result.best_val_loss < before  # type: ignore[operator]


def test_a_killed_run_resumes_to_the_same_weights(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks: TokenBlocks = world["blocks"]
    caches = [CacheReader(world["caches"]["sampled"])]
    cfg = _cfg(max_steps=6, checkpoint_every=3, grad_accum=2)
    _, reference, vocab = _models(world)
    train_student(
        reference, blocks, cfg, vocab_size=vocab, out_dir=tmp_path / "a", caches=caches,
        progress=False,
    )  # fmt: skip

    import tasks.distill.train as train_mod

    real = train_mod.sample_indices  # called once per training micro-batch
    calls = {"n": 0}

    def dies_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4 * 2:  # micro-batches of steps 1..4 done; step 4 is not saved
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "sample_indices", dies_at_step_5)
    _, student, _ = _models(world)
    with pytest.raises(KeyboardInterrupt):
        train_student(
            student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path / "b", caches=caches,
            progress=False,
        )  # fmt: skip
    assert latest_checkpoint(tmp_path / "b").name == "step-0000003"  # type: ignore[union-attr]
    monkeypatch.setattr(train_mod, "sample_indices", real)
    _, fresh, _ = _models(world)
    result = train_student(
        fresh, blocks, cfg, vocab_size=vocab, out_dir=tmp_path / "b", caches=caches,
        progress=False,
    )  # fmt: skip
    assert result.resumed_from == 3 and result.steps == 6
    for (name, a), b in zip(
        reference.state_dict().items(), fresh.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_early_stop_when_the_held_out_loss_stops_improving(world: dict, tmp_path: Path) -> None:
    blocks: TokenBlocks = world["blocks"]
    _, student, vocab = _models(world)
    caches = [CacheReader(world["caches"]["topk"])]
    cfg = _cfg(lr=1e-12, max_steps=50, eval_every=1, early_stop_patience=2, warmup_steps=0)
    result = train_student(
        student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, caches=caches, progress=False
    )
    assert result.stopped_early and result.steps == 3  # best at 1, no better at 2 and 3
    again = train_student(
        student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, caches=caches, progress=False
    )
    assert again.resumed_from == 3 and again.steps == 3  # a finished run stays finished


def test_offline_temperature_is_refused() -> None:
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=2.0)
    with pytest.raises(ValueError, match="both be 0"):
        DistillConfig(kd_weight=0.0, ce_weight=0.0)


def test_feature_and_relation_terms_train_online(world: dict, tmp_path: Path) -> None:
    blocks: TokenBlocks = world["blocks"]
    teacher, student, vocab = _models(world)  # student = teacher layer 0, then perturbed
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = _cfg(
        mode="online", hidden_weight=1.0, relation_weight=1.0, max_steps=12, lr=3e-3,
        checkpoint_every=6,
    )  # fmt: skip
    result = train_student(
        student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, teacher=teacher, layers=[0],
        progress=False,
    )  # fmt: skip
    first, last = result.history[0], result.history[-1]
    assert {"kd", "hidden", "relation"} <= set(last)
    assert last["hidden"] < first["hidden"] and last["relation"] < first["relation"]
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and (ckpt / "features.safetensors").exists()
    with pytest.raises(ValueError, match="layer map"):
        train_student(
            student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path / "x", teacher=teacher,
            progress=False,
        )  # fmt: skip
    # offline: KD from the cache, the teacher runs for the feature terms only, and only as far
    # as they read (a 2-layer teacher, student = its layer 1: the cut is before layer 1)
    student = student_from_teacher(teacher, [1])
    calls: list[int] = []
    hook = teacher.lm_head.register_forward_hook(lambda *_: calls.append(1))
    cfg = _cfg(hidden_weight=None, relation_weight=1.0, max_steps=3)
    result = train_student(
        student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path / "offline", teacher=teacher,
        caches=[CacheReader(world["caches"]["topk"])], layers=[1], progress=False,
    )  # fmt: skip
    hook.remove()
    assert {"kd", "relation"} <= set(result.history[-1]) and "hidden" not in result.history[-1]
    assert not calls  # the teacher's logits were never computed


def test_keep_best_returns_the_weights_of_the_lowest_held_out_loss(
    world: dict, tmp_path: Path
) -> None:
    blocks: TokenBlocks = world["blocks"]
    _, student, vocab = _models(world)
    # A learning rate far too high: the held-out loss gets worse after some point.
    cfg = _cfg(
        kd_weight=0.0, ce_weight=1.0, max_steps=12, lr=2.0, min_lr_ratio=1.0, eval_every=1,
        warmup_steps=0,
    )  # fmt: skip
    result = train_student(student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, progress=False)
    vals = [r["val_loss"] for r in result.history]
    best_step = vals.index(min(vals)) + 1
    assert best_step < 12 and result.kept_step == best_step  # the last was not the best
    now = held_out_loss(student, blocks, blocks.selection()[: cfg.eval_blocks], vocab)
    assert now == pytest.approx(min(vals), rel=1e-5)


def test_adamw8bit_keeps_one_byte_per_state_value_on_cpu() -> None:
    from tasks.distill.train import make_optimizer

    # bitsandbytes keeps tensors under 4096 values in fp32: use one above that size.
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.Linear(64, 1))
    opt = make_optimizer(model, DistillConfig(optimizer="adamw8bit"))
    assert type(opt).__name__ == "AdamW8bit"
    model(torch.randn(4, 128)).sum().backward()
    opt.step()
    state = opt.state[model[0].weight]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8


def test_reported_figures_use_blocks_the_selection_never_saw(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep-best and early stopping look at selection blocks only; the evaluation that is
    reported (and registered) looks at test blocks only."""
    import tasks.distill.evaluate as eval_mod
    import tasks.distill.train as train_mod
    from tasks.distill.evaluate import evaluate_student

    blocks: TokenBlocks = world["blocks"]
    seen: dict[str, set[int]] = {"selection": set(), "reported": set()}
    real_loss, real_compare = train_mod.held_out_loss, eval_mod.compare_on_blocks

    def spy_loss(model, b, idx, *args, **kw):  # type: ignore[no-untyped-def]
        seen["selection"].update(int(i) for i in idx)
        return real_loss(model, b, idx, *args, **kw)

    def spy_compare(student, teacher, b, idx, *args, **kw):  # type: ignore[no-untyped-def]
        seen["reported"].update(int(i) for i in idx)
        return real_compare(student, teacher, b, idx, *args, **kw)

    monkeypatch.setattr(train_mod, "held_out_loss", spy_loss)
    monkeypatch.setattr(eval_mod, "compare_on_blocks", spy_compare)
    teacher, student, vocab = _models(world)
    caches = [CacheReader(world["caches"]["topk"])]
    cfg = _cfg(max_steps=6, eval_every=2)
    train_student(student, blocks, cfg, vocab_size=vocab, out_dir=tmp_path, caches=caches,
                  progress=False)  # fmt: skip
    evaluate_student(student, teacher, blocks, vocab, speed_tokens=2)
    assert seen["selection"] and seen["reported"]
    assert seen["selection"] <= set(blocks.selection().tolist())
    assert seen["reported"] == set(blocks.test().tolist())
    assert not seen["selection"] & seen["reported"]
