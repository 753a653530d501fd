"""train_factuality on a tiny encoder: a model folder FactualityScorer reads, metrics with the
gate's AUROC, and clear errors for corpora it cannot split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.factcheck.config import FactcheckError
from tasks.factcheck.train import (
    STACKER_SIGNS,
    refit_stacker,
    split_by_document,
    train_factuality,
)
from tests.helpers import factuality_pair as pair


def test_training_writes_a_model_folder_and_metrics(trained) -> None:
    folder, metrics = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "stacker.json"):
        assert (folder / name).exists(), name
    saved = json.loads((folder / "factcheck.json").read_text())
    assert saved["metrics"] == metrics and saved["scoring"]["max_length"] == 64
    assert metrics["steps"] >= 1 and metrics["pairs"] == 40
    assert 0.0 <= metrics["gate_auroc"] <= 1.0 and metrics["gate_pairs"] >= 4
    stacker = json.loads((folder / "stacker.json").read_text())
    assert "xc_min" in stacker["features"] and "cov_mean" in stacker["features"]
    for f, c in zip(stacker["features"], stacker["coef"], strict=True):
        assert c * STACKER_SIGNS[f] >= 0, f  # no feature pushes against its meaning


def test_refit_rebuilds_the_same_stacker_and_can_drop_the_bounds(
    trained, tmp_path: Path, tiny_config
) -> None:
    import shutil

    folder, metrics = trained
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    corpus = [pair(i) for i in range(40)]
    gate = refit_stacker(corpus, copy, tiny_config)  # same documents, examples, bounds
    assert gate["gate_auroc"] == metrics["gate_auroc"]
    assert (copy / "stacker.json").read_text() == (folder / "stacker.json").read_text()
    refit_stacker(corpus, copy, tiny_config, signs=None)  # free: what the bounds change
    free = json.loads((copy / "stacker.json").read_text())
    saved = json.loads((copy / "factcheck.json").read_text())["metrics"]
    assert saved["steps"] == metrics["steps"] and len(free["coef"]) == len(STACKER_SIGNS)


def test_split_is_by_document_and_stable(corpus) -> None:
    doubled = corpus + [{"document": p["document"], "summary": "Another summary."} for p in corpus]
    parts = split_by_document(doubled, 0.2, 0.2)
    docs = [{p["document"] for p in part} for part in parts]
    assert not (docs[0] & docs[1]) and not (docs[0] & docs[2]) and not (docs[1] & docs[2])
    assert parts == split_by_document(doubled, 0.2, 0.2)


def test_too_few_pairs_is_a_clear_error(tmp_path: Path, tiny_config) -> None:
    with pytest.raises(FactcheckError, match="train/dev/gate documents"):
        train_factuality([pair(0), {"document": "", "summary": "x"}], tmp_path, tiny_config)


def test_cached_bottom_layers_then_top_layers_equal_the_whole_encoder(tiny_base: str) -> None:
    """Training runs the frozen bottom layers once and the top layers per step. Padding must
    not change a row's result (the attention mask is built the way BertModel builds it), and
    the split must give the model's own output up to the fp16 cache."""
    import numpy as np
    import torch

    from tasks.factcheck.classifier import bottom_states, encode, load_base, predict_ids, top_logits

    model, tok = load_base(tiny_base)
    model.eval()
    # The pooled [CLS] vector's first unit as the "logit": a random head's tiny weights would
    # hide any difference.
    model.classifier, model.bert.pooler.activation = torch.nn.Identity(), torch.nn.Identity()
    ids, types = encode(
        tok, ["Ann Lee met Bob in Paris on 3 May. " * 6, "A short one."],
        ["Ann met Bob.", "Bob met Ann."], 64,
    )  # fmt: skip
    assert len(ids[0]) > 4 * len(ids[1])  # the short row is mostly padding in the batch
    states = bottom_states(model, ids, types, tok.pad_token_id, n_layers=1)
    with torch.inference_mode():
        batch = top_logits(model, states, n_layers=1).numpy()
        alone = np.concatenate([top_logits(model, [s], n_layers=1).numpy() for s in states])
    np.testing.assert_allclose(batch, alone, rtol=0, atol=1e-6)
    whole = predict_ids(model, ids, types, tok.pad_token_id)
    np.testing.assert_allclose(batch, whole, rtol=0, atol=1e-4)
