"""Inline (document, summary) pairs with names, numbers, dates and pronouns for every
generator rule, and a tiny random 2-layer BERT with the embedded MiniLM's tokenizer (built
from a config: nothing downloads, training takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import factuality_pair as pair


@pytest.fixture
def corpus() -> list[dict[str, str]]:
    return [pair(i) for i in range(40)]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT with all-MiniLM-L6-v2's tokenizer, saved to a folder."""
    from tests.tiny import make_tiny_cross_encoder_base

    return make_tiny_cross_encoder_base(Path(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def tiny_config(tiny_base: str):
    """Training settings that take seconds on the tiny encoder."""
    from tasks.factcheck.config import FactcheckConfig

    return FactcheckConfig(
        base_model=tiny_base, train_examples=60, dev_examples=16, dev_pairs=20, gate_pairs=20,
        dev_share=0.2, gate_share=0.2, epochs=1.0, eval_every=4, max_length=64,
        freeze_layers=1, time_budget_s=120,
    )  # fmt: skip


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_config) -> tuple[Path, dict]:
    """(folder, metrics) of a factuality model trained on 40 inline pairs (seconds)."""
    from tasks.factcheck.train import train_factuality

    folder = tmp_path_factory.mktemp("factuality") / "model"
    metrics = train_factuality([pair(i) for i in range(40)], folder, tiny_config)
    return folder, metrics
