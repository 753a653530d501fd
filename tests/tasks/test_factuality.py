from __future__ import annotations

from tasks.factuality import entities, entity_precision, numbers

DOC = (
    "Marseille prosecutor Brice Robin told CNN that no videos were used in the crash "
    "investigation of Germanwings Flight 9525. All 150 people on board died. The plane "
    "crashed in the French Alps on Tuesday, about 1,200 metres above sea level, two hours "
    "after leaving Barcelona."
)


def test_numbers_are_normalised_and_number_words_count() -> None:
    assert numbers("It cost $1,200.50 for 3 people, two of them kids.") == {"1200.5", "3", "2"}
    assert numbers("Flight 9525 had 150.0 seats") == {"9525", "150"}


def test_entities_skip_common_sentence_openers() -> None:
    found = entities("The plane crashed. It was in the French Alps. Brice Robin spoke to CNN.")
    assert found == {"french alps", "brice robin", "cnn"}


def test_a_faithful_summary_is_fully_supported() -> None:
    p = entity_precision(DOC, "Prosecutor Brice Robin says no videos were used. All 150 died.")
    assert p.score == 1.0 and p.unsupported == ()


def test_a_swapped_entity_or_changed_number_is_caught() -> None:
    p = entity_precision(DOC, "Brice Robin says 180 people died near Lyon on the Lufthansa flight.")
    assert set(p.unsupported) == {"180", "lyon", "lufthansa"}
    assert p.score == 1 / 4  # only "brice robin" is supported


def test_nothing_checkable_gives_no_score() -> None:
    p = entity_precision(DOC, "the investigation continues.")
    assert p.entities == 0 and p.score is None


def test_lm_support_prefers_summaries_the_document_contains(tmp_path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tasks.factuality import lm_support
    from tests.helpers import NEWS_WORDS
    from tests.tiny import make_tokenizer_dir

    # A tiny LM trained for a few steps to copy: after the document, it predicts its words.
    path = make_tokenizer_dir(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=128,
        )
    )
    words = NEWS_WORDS
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):  # learn "x y z | x y z": copy the first half
        half = torch.randint(3, len(tok), (16, 8), generator=g)
        batch = torch.cat([half, half], 1)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    rng = torch.Generator().manual_seed(1)
    docs = [
        " ".join(words[i] for i in torch.randint(0, 12, (8,), generator=rng)) for _ in range(20)
    ]
    faithful = lm_support([(d, d) for d in docs], model, tok)
    shuffled = lm_support([(d, docs[(i + 1) % 20]) for i, d in enumerate(docs)], model, tok)
    assert sum(faithful) / 20 > sum(shuffled) / 20 + 0.5
    assert lm_support([("the news", "   ")], model, tok) == [None]


def test_combine_averages_what_is_there() -> None:
    from tasks.factuality import combine

    assert combine(None, None) is None
    assert combine(0.5, None) == 0.5
    assert combine(None, 0.0) == 0.5  # the document neither helps nor hurts
    assert combine(1.0, 0.0) == 0.75
