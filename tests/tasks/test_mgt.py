from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.loading import load_causal_lm, load_tokenizer
from models.loading_config import ModelSpec
from tasks.mgt import sampling_discrepancy, score_texts
from tests.helpers import NEWS_WORDS
from tests.tiny import make_tiny_llama


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
