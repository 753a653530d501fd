"""Inline (document, summary) pairs with names, numbers, dates and pronouns for every
generator rule, and a tiny random 2-layer BERT with the embedded MiniLM's tokenizer (built
from a config: nothing downloads, training takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

PEOPLE = [
    ("Maria Lopez", "she"), ("John Carter", "he"), ("Ahmed Khan", "he"), ("Emma Brown", "she"),
    ("Lucas Silva", "he"), ("Hannah Weber", "she"), ("Omar Haddad", "he"), ("Grace Okafor", "she"),
]  # fmt: skip
PLACES = ["Denver", "Lagos", "Glasgow", "Osaka", "Lyon", "Perth", "Quito", "Tallinn"]
MONTHS = ["March", "June", "October", "January"]


def pair(i: int) -> dict[str, str]:
    """Pair i: a short news article and a faithful two-sentence summary of it."""
    name, pron = PEOPLE[i % len(PEOPLE)]
    place, month = PLACES[(i * 3) % len(PLACES)], MONTHS[i % len(MONTHS)]
    homes, people = 20 + 7 * i, 150 + 11 * i
    other, _ = PEOPLE[(i + 3) % len(PEOPLE)]
    document = (
        f"{name} arrived in {place} on Monday to open the new library. "
        f"{pron.capitalize()} said the council had approved {homes} new homes near the river. "
        f"The plan was announced in {month} after {people} residents signed a petition. "
        f"{other}, who leads the residents' group, was not invited to the meeting. "
        f"Officials in {place} did not comment on the cost of the project."
    )
    summary = (
        f"{name} said the council approved {homes} new homes in {place}. "
        f"The plan followed a petition signed by {people} residents in {month}."
    )
    return {"document": document, "summary": summary}


@pytest.fixture
def corpus() -> list[dict[str, str]]:
    return [pair(i) for i in range(40)]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT with all-MiniLM-L6-v2's tokenizer, saved to a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tasks.factcheck.classifier import minilm_path

    folder = Path(tmp_path_factory.mktemp("tiny-bert"))
    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


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
