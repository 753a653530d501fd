from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.loading import load_causal_lm, load_tokenizer
from models.loading_config import ModelSpec
from tasks.curate.mgt import (
    MgtError,
    binoculars,
    load_scorer,
    sampling_discrepancy,
    score_texts,
    threshold_for_fpr,
)
from tasks.curate.mgt_config import MgtConfig
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


def test_text_generated_by_the_scoring_model_scores_higher(tiny: tuple) -> None:
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
    m, h = score_texts(machine, model, tok), score_texts(human, model, tok)
    assert np.nanmean(m) > np.nanmean(h) + 1.0


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
    _, _, performer = load_scorer(MgtConfig(model=str(obs), performer=str(perf)), None)
    assert performer is not None
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
