from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.loading import load_causal_lm, model_vocab_size
from models.loading_config import ModelSpec
from models.student import student_from_teacher
from tasks.distill.data import TokenBlocks
from tasks.distill.evaluate import compare_on_blocks, count_params, evaluate_student, model_bytes
from tests.tiny import make_tiny_llama


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("eval") / "teacher")


@pytest.fixture(scope="module")
def teacher(teacher_dir: Path) -> torch.nn.Module:
    return load_causal_lm(ModelSpec(path=str(teacher_dir)), "cpu")


def _blocks(vocab: int) -> TokenBlocks:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, vocab, size=(6, 12))
    mask = np.ones((6, 12), np.uint8)
    mask[:, :5] = 0  # a prompt: no loss on predicting tokens 0..4
    return TokenBlocks(
        ids, mask, np.array([0, 0, 2, 2, 2, 0], np.int8), np.zeros(6, int),
        np.arange(6), ["tokens/x@1"],
    )  # fmt: skip


def test_teacher_against_itself_agrees_everywhere(teacher: torch.nn.Module) -> None:
    vocab = model_vocab_size(teacher)
    blocks = _blocks(vocab)
    r = evaluate_student(teacher, teacher, blocks, vocab, speed_tokens=4)
    assert r.ppl_ratio == 1.0 and r.top1_agreement == 1.0 and r.param_share == 1.0
    assert r.blocks == 3 and r.positions == 3 * 7  # targets 5..11 of each validation block
    assert r.student_tokens_per_s > 0


def test_perplexity_respects_the_loss_mask(teacher: torch.nn.Module) -> None:
    vocab = model_vocab_size(teacher)
    blocks = _blocks(vocab)
    student = student_from_teacher(teacher, [1])
    val = blocks.test()
    got = compare_on_blocks(student, teacher, blocks, val, vocab, batch_blocks=2)
    nll = []
    with torch.no_grad():
        for b in val:
            logp = torch.log_softmax(
                student(input_ids=torch.tensor(blocks.input_ids[[b]])).logits[0], -1
            )
            nll += [-logp[t, blocks.input_ids[b, t + 1]].item() for t in range(4, 11)]
    assert got["student_ppl"] == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)
    assert 0.0 <= got["top1_agreement"] <= 1.0


def test_size_counts_tied_weights_once(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
               num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    untied = LlamaForCausalLM(LlamaConfig(**cfg, tie_word_embeddings=False))
    tied = LlamaForCausalLM(LlamaConfig(**cfg, tie_word_embeddings=True))
    assert count_params(untied) - count_params(tied) == 50 * 16
    assert model_bytes(tied) == 4 * count_params(tied)


def test_no_validation_blocks_is_an_error(teacher: torch.nn.Module) -> None:
    vocab = model_vocab_size(teacher)
    blocks = _blocks(vocab)
    with pytest.raises(ValueError, match="validation"):
        compare_on_blocks(teacher, teacher, blocks, np.array([], int), vocab)


def test_rouge_l_matches_the_worked_examples_of_lin_2004() -> None:
    from tasks.distill.evaluate import rouge_l, rouge_tokens

    ref = "police killed the gunman"
    assert rouge_l("police kill the gunman", ref) == pytest.approx(0.75)  # LCS 3 of 4 and 4
    assert rouge_l("the gunman kill police", ref) == pytest.approx(0.5)  # LCS "the gunman"
    assert rouge_l(ref, ref) == 1.0 and rouge_l("", ref) == 0.0 and rouge_l("x", "") == 0.0
    assert rouge_tokens("U.S. troops, 2,000 of them!") == ["u", "s", "troops", "2", "000", "of", "them"]  # fmt: skip


def test_summary_prompt_fits_the_block_and_keeps_the_template(
    teacher: torch.nn.Module, teacher_dir: Path
) -> None:
    from transformers import AutoTokenizer

    from tasks.distill.evaluate import summary_prompt, summary_rouge

    tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    doc = " ".join(["the market rose today"] * 40)
    prompt = summary_prompt(doc, "{document}\n\nSummary: {summary}", tok, max_tokens=24)
    tail = tok("\n\nSummary: ", add_special_tokens=False)["input_ids"]
    assert len(prompt) == 24 and prompt[-len(tail) :] == tail
    scores, examples = summary_rouge(
        {"a": teacher}, tok, [(doc, "the market rose")] * 2, "{document}\n\nSummary: {summary}",
        max_prompt_tokens=24, max_new_tokens=3,
    )  # fmt: skip
    assert 0.0 <= scores["a"]["rouge_l"] <= 1.0 and 0 <= scores["a"]["empty"] <= 2
    assert set(examples[0]) == {"article", "reference", "a"}
    from tasks.curate.quality import repetition_reason

    looping = sum(repetition_reason(ex["a"]) is not None for ex in examples)
    assert scores["a"]["looping"] == looping  # both pairs are among the examples


def test_summary_rouge_counts_looping_and_empty_summaries(
    teacher: torch.nn.Module, teacher_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    import tasks.distill.evaluate as evaluate

    texts = ["The court ruled on Monday.", "", "the court said the court said " * 3]
    monkeypatch.setattr(evaluate, "generate_summaries", lambda *a, **k: texts)
    tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    pairs = [("the court met today", "The court ruled.")] * 3
    scores, _ = evaluate.summary_rouge(
        {"a": teacher}, tok, pairs, "{document}\n\nSummary: {summary}", max_prompt_tokens=24
    )
    assert scores["a"]["empty"] == 1 and scores["a"]["looping"] == 1


def test_batched_generation_continues_each_prompt_as_it_would_alone(
    teacher: torch.nn.Module,
) -> None:
    from models.generate import greedy

    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    together = greedy(teacher, prompts, max_new_tokens=5, eos_id=1, pad_id=0, batch_size=3,
                      keep_logits=True)  # fmt: skip
    for prompt, got in zip(prompts, together, strict=True):
        alone = greedy(teacher, [prompt], max_new_tokens=5, eos_id=1, pad_id=0, keep_logits=True)[0]
        assert got.tokens == alone.tokens and got.ended == alone.ended
        assert got.logits is not None and got.logits.shape[0] == len(got.tokens)
        assert torch.allclose(got.logits, alone.logits, atol=1e-4)
        # the logits of each step are the model's own next-token distribution
        with torch.no_grad():
            full = teacher(input_ids=torch.tensor([prompt + got.tokens])).logits[0]
        first = full[len(prompt) - 1 : len(prompt) - 1 + len(got.tokens)]
        assert torch.allclose(got.logits, first[:, : got.logits.shape[1]], atol=1e-4)


def _repeated_ngrams(tokens: list[int], n: int) -> int:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) - len(set(grams))


def test_no_repeat_bans_only_what_the_continuation_would_repeat() -> None:
    from models.generate import NoRepeatInContinuation

    # prompt [7, 8], continuation [8, 9, 8]: the bigram (8, 9) was generated, so 9 is banned
    # after the last 8; the prompt's (7, 8) does not count
    ids = torch.tensor([[7, 8, 8, 9, 8], [7, 8, 1, 2, 7]])
    scores = NoRepeatInContinuation(2, start=2)(ids, torch.zeros(2, 12))
    assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [9]
    assert not torch.isinf(scores[1]).any()  # 7 -> 8 is in the prompt only: copying is allowed


def test_greedy_with_no_repeat_never_repeats_an_ngram_of_its_own(teacher: torch.nn.Module) -> None:
    from models.generate import greedy

    prompts = [[5, 6, 7, 8, 9, 10], [11, 12]]
    plain = greedy(teacher, prompts, max_new_tokens=40, eos_id=1, pad_id=0)
    blocked = greedy(teacher, prompts, max_new_tokens=40, eos_id=1, pad_id=0,
                     no_repeat_ngram_size=3)  # fmt: skip
    assert sum(_repeated_ngrams(g.tokens, 3) for g in plain) > 0  # a random tiny model loops
    for g in blocked:
        assert len(g.tokens) > 3 and _repeated_ngrams(g.tokens, 3) == 0
