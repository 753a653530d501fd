"""The classifier's encoder can be cut to its first layers, and stays cut when saved."""

from __future__ import annotations

from pathlib import Path

from tasks.factcheck.classifier import load_base


def test_a_cut_encoder_stays_cut_when_saved(tiny_base: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, _ = load_base(tiny_base, layers=1)
    assert len(model.bert.encoder.layer) == 1 and model.config.num_hidden_layers == 1
    model.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert len(again.bert.encoder.layer) == 1
    whole, _ = load_base(tiny_base, layers=5)  # more than it has: all of them
    assert len(whole.bert.encoder.layer) == 2
