from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.loading import load_causal_lm, load_tokenizer
from models.loading_config import ModelSpec
from tasks.curate.mgt import (
    MgtError,
    assistant_header,
    binoculars,
    features_of_texts,
    load_scorer,
    load_stacker,
    sampling_discrepancy,
    score_texts,
    text_features,
    threshold_for_fpr,
)
from tasks.curate.mgt_config import MgtConfig
from tasks.factcheck import stack
from tests.helpers import NEWS_WORDS
from tests.tiny import make_tiny_llama, make_tokenizer_dir


def test_the_models_own_samples_score_near_zero_and_other_text_lower() -> None:
    """The criterion is standardised: tokens drawn from p give d ~ N(0, 1); tokens drawn from a
    flatter distribution (as human text is, to the model) give clearly negative d."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 64, 50, generator=g) * 3  # 200 texts of 64 tokens, vocab 50
    probs = torch.softmax(logits, -1)
    own = torch.multinomial(probs.view(-1, 50), 1, generator=g).view(200, 64)
    other = torch.randint(0, 50, (200, 64), generator=g)
    mask = torch.ones(200, 64)
    d_own = sampling_discrepancy(logits, own, mask)
    d_other = sampling_discrepancy(logits, other, mask)
    assert abs(d_own.mean().item()) < 0.3 and 0.7 < d_own.std().item() < 1.3
    assert d_other.mean().item() < -5


def test_masked_positions_do_not_count() -> None:
    logits = torch.randn(1, 6, 10)
    tokens = torch.randint(0, 10, (1, 6))
    full = sampling_discrepancy(logits[:, :4], tokens[:, :4], torch.ones(1, 4))
    masked = sampling_discrepancy(logits, tokens, torch.tensor([[1, 1, 1, 1, 0, 0]]))
    assert torch.allclose(full, masked)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path_factory.mktemp("m") / "lm")))
    return load_causal_lm(spec, "cpu"), load_tokenizer(spec)


def test_score_texts_batches_pads_and_handles_short_texts(tiny: tuple) -> None:
    model, tok = tiny
    texts = ["the news said the police", "court", "", "the city and the state said the minister"]
    scores = score_texts(texts, model, tok, batch_size=3)
    assert len(scores) == 4
    assert math.isnan(scores[1]) and math.isnan(scores[2])  # fewer than 2 tokens
    alone = score_texts([texts[3]], model, tok)
    np.testing.assert_allclose(scores[3], alone[0], rtol=1e-4)  # padding changes nothing


@pytest.mark.parametrize("method", ["fast_detectgpt", "binoculars", "log_rank"])
def test_text_generated_by_the_scoring_model_scores_higher(tiny: tuple, method: str) -> None:
    model, tok = tiny
    torch.manual_seed(0)
    prompt = torch.tensor([tok("the news said", add_special_tokens=False)["input_ids"]])
    generated = model.generate(
        prompt,
        do_sample=True,
        max_new_tokens=40,
        min_new_tokens=40,
        pad_token_id=tok.pad_token_id,
        num_return_sequences=16,
    )
    machine = tok.batch_decode(generated, skip_special_tokens=True)
    words = NEWS_WORDS
    rng = np.random.default_rng(0)
    human = [" ".join(rng.choice(words, 43)) for _ in range(16)]
    m = score_texts(machine, model, tok, method=method)
    h = score_texts(human, model, tok, method=method)
    # every machine text above every human one (AUROC 1), by a margin in the human scores' sd
    assert min(m) > max(h)
    assert np.mean(m) - np.mean(h) > 2 * np.std(h)


# --------------------------------------------------------------------------- Binoculars
def test_binoculars_with_one_model_is_minus_log_ppl_over_entropy() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 10, 20, generator=g)
    tokens = torch.randint(0, 20, (3, 10), generator=g)
    mask = torch.ones(3, 10)
    logp = torch.log_softmax(logits, -1)
    nll = -logp.gather(-1, tokens[..., None])[..., 0].mean(-1)
    entropy = -(logp.exp() * logp).sum(-1).mean(-1)
    torch.testing.assert_close(binoculars(logits, logits, tokens, mask), -nll / entropy)


def test_binoculars_ranks_the_models_own_samples_above_other_text() -> None:
    """Higher = more machine-like, the same sign as Fast-DetectGPT."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(100, 64, 50, generator=g) * 3
    own = torch.multinomial(torch.softmax(logits, -1).view(-1, 50), 1, generator=g).view(100, 64)
    other = torch.randint(0, 50, (100, 64), generator=g)
    mask = torch.ones(100, 64)
    perf = logits + 0.3 * torch.randn(100, 64, 50, generator=g)  # a close second model
    assert (binoculars(logits, perf, own, mask) > binoculars(logits, perf, other, mask)).all()


@pytest.fixture(scope="module")
def two_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Two tiny Llamas with one tokenizer (different weights), and one with another vocab."""
    root = tmp_path_factory.mktemp("bino")
    obs = make_tiny_llama(root / "observer", seed=0)
    perf = root / "performer"
    perf.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (obs / f).exists():
            (perf / f).write_bytes((obs / f).read_bytes())
    make_tiny_llama(perf, seed=1)
    other = root / "other"
    make_tokenizer_dir(other, extra_words=("zebra",))
    make_tiny_llama(other, seed=2)
    return obs, perf, other


def test_score_texts_with_a_performer_is_binoculars(two_tiny: tuple) -> None:
    obs, perf, _ = two_tiny
    o, p = (
        load_causal_lm(ModelSpec(path=str(obs)), "cpu"),
        load_causal_lm(ModelSpec(path=str(perf)), "cpu"),
    )
    tok = load_tokenizer(ModelSpec(path=str(obs)))
    texts = ["the news said the police in the city", "court", "the minister and the president said"]
    got = score_texts(texts, o, tok, performer=p, batch_size=2)
    assert math.isnan(got[1]) and all(math.isfinite(v) for v in (got[0], got[2]))
    alone = score_texts([texts[2]], o, tok, performer=p)
    np.testing.assert_allclose(got[2], alone[0], rtol=1e-4)  # padding changes nothing
    fast = score_texts([texts[2]], o, tok)
    assert fast[0] != pytest.approx(got[2])  # a different statistic


def test_load_scorer_refuses_models_with_different_tokenizers(two_tiny: tuple) -> None:
    obs, perf, other = two_tiny
    scorer = load_scorer(MgtConfig(model=str(obs), performer=str(perf)), None)
    assert scorer.performer is not None and scorer.method == "binoculars"
    with pytest.raises(MgtError, match="same tokenizer"):
        load_scorer(MgtConfig(model=str(obs), performer=str(other)), None)
    with pytest.raises(MgtError, match="needs an LM"):
        load_scorer(MgtConfig(), None)


def test_short_texts_get_no_score(tiny: tuple) -> None:
    model, tok = tiny
    got = score_texts(
        ["the news said", "the news said the police in the city said"], model, tok, min_tokens=5
    )
    assert math.isnan(got[0]) and math.isfinite(got[1])


def test_text_features_on_hand_made_distributions() -> None:
    """Two texts over a vocabulary of 4: one always picks the model's top token, one its
    least likely token. log_rank is 0 for the first and -log(4) for the second; log_prob is
    the mean chosen log-probability; with performer = observer, both Binoculars are -nll/H."""
    logits = torch.log(torch.tensor([0.7, 0.2, 0.06, 0.04])).expand(2, 3, 4).clone()
    tokens = torch.tensor([[0, 0, 0], [3, 3, 3]])
    mask = torch.ones(2, 3)
    f = text_features(logits, tokens, mask, performer_logits=logits)
    torch.testing.assert_close(f["log_rank"], torch.tensor([0.0, -math.log(4)]))
    torch.testing.assert_close(f["log_prob"], torch.log(torch.tensor([0.7, 0.04])))
    p = torch.tensor([0.7, 0.2, 0.06, 0.04])
    entropy = -(p * p.log()).sum()
    torch.testing.assert_close(f["entropy"], -entropy.expand(2))
    torch.testing.assert_close(f["binoculars"], f["log_prob"] / entropy)
    torch.testing.assert_close(f["binoculars_swapped"], f["binoculars"])
    torch.testing.assert_close(f["fast_detectgpt"], sampling_discrepancy(logits, tokens, mask))


def test_binoculars_swapped_exchanges_observer_and_performer() -> None:
    g = torch.Generator().manual_seed(1)
    obs, perf = torch.randn(3, 7, 11, generator=g), torch.randn(3, 7, 11, generator=g)
    tokens, mask = torch.randint(0, 11, (3, 7), generator=g), torch.ones(3, 7)
    f = text_features(obs, tokens, mask, performer_logits=perf)
    torch.testing.assert_close(f["binoculars_swapped"], binoculars(perf, obs, tokens, mask))
    torch.testing.assert_close(f["binoculars"], binoculars(obs, perf, tokens, mask))


def test_features_do_not_depend_on_batching(tiny: tuple) -> None:
    """Texts are batched by length: each text's features equal its features scored alone."""
    model, tok = tiny
    words = NEWS_WORDS * 3
    texts = [" ".join(words[i : i + n]) for i, n in enumerate((9, 3, 14, 5, 1, 11))]
    batched = features_of_texts(texts, model, tok, batch_size=4)
    assert batched[4] is None  # one word: too short
    for text, got in zip(texts, batched, strict=True):
        if got is not None:
            alone = features_of_texts([text], model, tok)[0]
            assert got.keys() == alone.keys() and "n_words" in got
            for k in got:
                assert got[k] == pytest.approx(alone[k], rel=1e-3, abs=1e-4), k


def test_stack_method_is_the_stackers_probability(tiny: tuple, tmp_path) -> None:
    model, tok = tiny
    words = NEWS_WORDS * 3
    texts = [" ".join(words[i : i + 6 + i % 5]) for i in range(12)]
    feats = features_of_texts(texts, model, tok)
    columns = ["fast_detectgpt", "log_rank", "n_words"]
    fitted = stack.fit(feats, [i % 2 for i in range(12)], columns, fitted_on="test")
    got = score_texts(texts, model, tok, method="stack", stacker=fitted)
    np.testing.assert_allclose(got, fitted.predict(feats), rtol=1e-6)
    assert all(0.0 < v < 1.0 for v in got)
    by_rank = score_texts(texts, model, tok, method="log_rank")
    assert by_rank == pytest.approx([f["log_rank"] for f in feats])
    with pytest.raises(MgtError, match="needs a stacker"):
        score_texts(texts, model, tok, method="stack")
    with pytest.raises(MgtError, match="needs a performer"):
        score_texts(texts, model, tok, method="binoculars_swapped")


def test_auto_prefix_is_the_chat_templates_assistant_header(tiny: tuple) -> None:
    import copy

    model, tok = tiny
    assert assistant_header(tok) == ""  # a base model's tokenizer: no chat template
    chat = copy.deepcopy(tok)
    chat.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}news said{% endif %}"
    )
    assert assistant_header(chat) == "news said"
    texts = ["the police in the city said the court", "the minister said the state and the city"]
    auto = features_of_texts(texts, model, chat, prefix="auto")
    assert auto == features_of_texts(texts, model, chat, prefix="news said")
    bare = features_of_texts(texts, model, chat, prefix="")
    assert auto[0]["log_prob"] != pytest.approx(bare[0]["log_prob"])  # scored after the header
    assert features_of_texts(texts, model, tok, prefix="auto") == bare  # no template: nothing


def test_load_stacker_checks_what_the_scorer_can_compute(tmp_path) -> None:
    two = stack.Stacker(["fast_detectgpt", "binoculars_swapped"], [0, 0], [1, 1], [1, -1], 0.0)
    path = tmp_path / "s.json"
    path.write_text(two.to_json())
    assert load_stacker(path, performer=True).features == two.features
    with pytest.raises(MgtError, match=r"binoculars_swapped: set dedup\.mgt\.performer"):
        load_stacker(path, performer=False)
    with pytest.raises(MgtError, match="no machine-text stacker"):
        load_stacker(tmp_path / "missing.json", performer=False)
    with pytest.raises(MgtError, match="needs a stacker file"):
        load_stacker(None, performer=False)
    with pytest.raises(MgtError, match="needs a second LM"):
        load_scorer(MgtConfig(model="unused", method="binoculars_swapped"), None)


# --------------------------------------------------------------------------- calibration
def test_threshold_for_fpr_on_synthetic_scores() -> None:
    rng = np.random.default_rng(0)
    human = rng.normal(size=1000).tolist()
    t = threshold_for_fpr(human, 0.01)
    assert sum(h > t for h in human) == 10  # exactly the target, no ties
    machine = rng.normal(3.0, 1.0, size=1000)
    assert 0.4 < float(np.mean(machine > t)) < 0.8  # Phi(3 - 2.33) = 0.75


def test_threshold_for_fpr_ties_nan_and_too_few() -> None:
    tied = [0.0] * 95 + [1.0] * 5 + [math.nan] * 7 + [None]
    t = threshold_for_fpr(tied, 0.02)  # 100 finite scores: at most 2 may lie above
    assert sum(v > t for v in tied if v is not None and v == v) <= 2 and t == 1.0
    assert threshold_for_fpr([0.5] * 100, 0.01) == 0.5  # all tied: nobody above
    with pytest.raises(MgtError, match="at least 100 scored human texts; got 99"):
        threshold_for_fpr([0.1] * 99 + [math.nan], 0.01)
    with pytest.raises(MgtError, match="in \\(0, 1\\)"):
        threshold_for_fpr([0.1] * 10, 0.0)
