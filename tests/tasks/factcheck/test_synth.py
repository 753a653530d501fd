"""The training-side generator: each rule applies where it should, labels are right, and the
kinds that borrow from other articles never borrow from the same one."""

from __future__ import annotations

import random

import pytest

from tasks.factcheck import synth
from tasks.factcheck.train import usable_pairs

CLAIM = "Maria Lopez said the council approved 27 new homes in Denver on Monday."
DOC = "Maria Lopez arrived in Denver on Monday. She said the council approved 27 new homes."


@pytest.mark.parametrize(
    "kind", ["ent_doc", "ent_corpus", "number", "date", "negation", "other_sent", "add_clause"]
)
def test_each_negative_kind_changes_the_claim(kind: str) -> None:
    rng = random.Random(0)
    pool = {2: ["Hannah Weber", "Omar Haddad"], 1: ["Glasgow"]}
    doc_ents = ["Glasgow Council", "Hannah Weber"]
    other = "Officials in Quito confirmed, after a long inquiry, that the bridge had closed."
    got = synth.corrupt_sentence(CLAIM, DOC, doc_ents, pool, other, kind, rng)
    assert got and got != CLAIM
    if kind.startswith("ent_"):  # one of the claim's entities replaced
        assert not {"Maria Lopez", "Denver"} <= set(synth.cap_runs(got))
    expected = {
        "number": lambda g: "27" not in g,
        "date": lambda g: "Monday" not in g,
        "negation": lambda g: " not " in g or "never" in g,
        "other_sent": lambda g: g == other,
        "add_clause": lambda g: g.startswith(CLAIM[:-1]) and len(g) > len(CLAIM),
    }
    assert expected.get(kind, lambda g: True)(got), got


def test_pronoun_swap_and_paraphrase() -> None:
    rng = random.Random(0)
    assert synth.swap_pronoun("He said his son won.", rng) in {
        "She said his son won.", "He said her son won.", "He said his daughter won.",
    }  # fmt: skip
    para = synth.paraphrase("Maria Lopez said 5 people began the march.", DOC, rng)
    assert para is not None and para != "Maria Lopez said 5 people began the march."
    assert synth.change_number("No figures here.", rng) is None
    assert synth.change_date("No dates here.", rng) is None


def test_sentence_and_pair_examples_have_both_labels_and_named_kinds(corpus) -> None:
    rows = usable_pairs(corpus)
    pool = synth.corpus_entities([r["document"] for r in rows])
    sent = synth.sentence_examples(rows, rows, pool, random.Random(0), per_article=2)
    pairs = synth.pair_examples(rows, rows, pool, random.Random(1))
    for examples, text in ((sent, "claim"), (pairs, "summary")):
        assert {e["label"] for e in examples} == {0, 1}
        assert all(e[text].strip() for e in examples)
    neg_kinds = {e["kind"] for e in sent if e["label"] == 0}
    assert neg_kinds <= set(synth.NEG_KINDS) and len(neg_kinds) >= 5, neg_kinds
    assert {e["kind"] for e in sent if e["label"] == 1} <= {"orig", "paraphrase", "doc_sent"}
    assert {e["kind"] for e in pairs if e["label"] == 1} <= {
        "orig",
        "reorder",
        "drop",
        "paraphrase",
    }
    # A negative differs from its source summary; a positive 'orig' is the summary itself.
    by_idx = {r["idx"]: r for r in rows}
    for e in pairs:
        if e["label"] == 0:
            assert e["summary"] != by_idx[e["idx"]]["summary"]
        elif e["kind"] == "orig":
            assert e["summary"] == by_idx[e["idx"]]["summary"]


def test_a_corpus_of_one_pair_borrows_nothing_from_itself(corpus) -> None:
    rows = usable_pairs(corpus[:1])
    pool = synth.corpus_entities([rows[0]["document"]])
    sent = synth.sentence_examples(rows, rows, pool, random.Random(0), per_article=4)
    assert sent and all(e["kind"] not in {"other_sent", "add_clause"} for e in sent)


def test_unsupported_negatives_change_several_sentences_with_other_articles_content(
    corpus,
) -> None:
    rows = usable_pairs(corpus)
    pool = synth.corpus_entities([r["document"] for r in rows])
    by_idx = {r["idx"]: r for r in rows}
    pairs = synth.pair_examples(rows, rows, pool, random.Random(2), unsupported_share=1.0)
    unsupported = [e for e in pairs if e["kind"] == "unsupported"]
    assert len(unsupported) == len(rows)  # every summary here has two sentences
    for e in unsupported:
        assert e["label"] == 0
        source = synth.sentences(by_idx[e["idx"]]["summary"])
        assert sum(s not in e["summary"] for s in source) >= 2, e["summary"]
    pairs = synth.pair_examples(rows, rows, pool, random.Random(2), unsupported_share=0.0)
    assert all(e["kind"] != "unsupported" for e in pairs)
    # One-sentence summaries, or no other article to borrow from: a one-sentence edit instead.
    assert synth.unsupported_summary(["A single sentence here."], 0, rows, "summary", random.Random(0)) is None  # fmt: skip
    for seed in range(20):  # some seeds draw `add_sent`, which then has nothing to add
        alone = synth.pair_examples(rows[:1], rows[:1], pool, random.Random(seed), unsupported_share=1.0)  # fmt: skip
        assert {e["kind"] for e in alone if e["label"] == 0} <= set(synth.NEG_KINDS)
