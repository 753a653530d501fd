"""FactualityScorer: batched scores equal one-by-one scores; every pair with a summary gets a
score; empty summaries, empty and over-long documents get a stated note, never a crash."""

from __future__ import annotations

import pytest

from tasks.factcheck.scorer import FactualityScorer
from tests.helpers import factuality_pair as pair


@pytest.mark.parametrize("with_model", [False, True])
def test_batched_equals_one_by_one(with_model: bool, trained) -> None:
    scorer = FactualityScorer(trained[0] if with_model else None)
    pairs = [(p["document"], p["summary"]) for p in map(pair, range(6))]
    pairs += [(pairs[0][0], pairs[3][1])]  # another article's summary: unsupported
    together = scorer.score(pairs, progress=False)
    alone = [scorer.score([p], progress=False)[0] for p in pairs]
    for a, b in zip(together, alone, strict=True):
        assert a.note == b.note and a.score == pytest.approx(b.score, abs=1e-5)
    assert all(s.score is not None and 0.0 < s.score < 1.0 for s in together)


def test_source_says_which_scorer(trained) -> None:
    assert FactualityScorer(None).source.startswith("no factuality model registered")
    assert "train-factuality" in FactualityScorer(None).source
    assert FactualityScorer(trained[0], label="models/factuality@1").source == (
        "factuality model models/factuality@1"
    )


@pytest.mark.parametrize("with_model", [False, True])
def test_bad_input_gets_a_score_or_a_stated_note(with_model: bool, trained) -> None:
    scorer = FactualityScorer(trained[0] if with_model else None, max_sentences=50)
    p = pair(1)
    huge = " ".join(f"Sentence number {i} of a very long filing." for i in range(400))
    got = scorer.score(
        [(p["document"], ""), (p["document"], "   "), ("", p["summary"]),
         (huge, p["summary"]), (p["document"], p["summary"] * 30)],
        progress=False,
    )  # fmt: skip
    assert [g.note for g in got] == [
        "empty_summary", "empty_summary", "empty_document", "document_truncated", None,
    ]  # fmt: skip
    assert got[0].score is None and got[1].score is None
    assert all(0.0 <= g.score <= 1.0 for g in got[2:])


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path) -> None:
    from tasks.factcheck.config import FactcheckError

    with pytest.raises(FactcheckError, match="not a factuality model folder"):
        FactualityScorer(tmp_path)
