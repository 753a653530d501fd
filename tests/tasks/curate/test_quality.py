from __future__ import annotations

import pytest

from tasks.curate.quality import RULES, QualityFilter
from tasks.curate.quality_config import QualityConfig

CLEAN = (
    "The city council voted on Tuesday to expand the bus network, a plan that officials say "
    "will cut commuting times for thousands of residents. The proposal, which has been debated "
    "for more than two years, adds twelve routes and extends service hours into the night.\n\n"
    "Supporters argued that the change was overdue and that the new lines would connect "
    "neighbourhoods that have long been poorly served. Critics questioned the cost, estimated "
    "at forty million dollars over five years, and asked how it would be paid for. The mayor "
    "said the money would come from a mix of state grants and existing transport funds."
)


def _reason(text: str, **cfg: object) -> str | None:
    return QualityFilter(QualityConfig(**cfg)).keep(text)[1]


def test_an_ordinary_article_passes_every_rule() -> None:
    f = QualityFilter()
    assert f.keep(CLEAN) == (True, None)
    assert not f.fired


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Too short to be a document. It has words.", "gopher_short_document"),
        (" ".join(["extraordinarilylongwords"] * 60) + ". The end of it.", "gopher_word_length"),
        (CLEAN + " #tag" * 40, "gopher_symbols"),
        (
            "\n".join(f"• item number {i} of the list of the things to do" for i in range(60)),
            "gopher_bullets",
        ),
        (
            "\n".join(f"and then the story went on and on like this {i}..." for i in range(60)),
            "gopher_ellipsis_lines",
        ),
        (" ".join(["1234 5678 %%%% ----"] * 30) + " " + CLEAN[:200], "gopher_alpha_words"),
        (" ".join(["apples bananas oranges grapes melons"] * 20) + ".", "gopher_stop_words"),
        (
            CLEAN
            + "\n"
            + "\n".join(["Subscribe to our newsletter for the latest news today."] * 30),
            "gopher_dup_lines",
        ),
        (CLEAN + "\n\n" + CLEAN, "gopher_dup_paragraphs"),
        (CLEAN + " lorem ipsum dolor sit amet.", "c4_lorem_ipsum"),
        (CLEAN + " function f() { return 1 }", "c4_curly_bracket"),
        (
            " ".join(["the word and the other word with that"] * 10) + " no ending",
            "c4_few_sentences",
        ),
        ("\n".join(f"Menu item {i} of the site" for i in range(60)), "fineweb_short_lines"),
    ],
)
def test_each_rule_fires_on_its_case(text: str, rule: str) -> None:
    f = QualityFilter()
    keep, reason = f.keep(text)
    assert not keep
    assert rule in f.fired, (reason, dict(f.fired))


def test_reasons_name_the_rule_and_the_measured_value() -> None:
    reason = _reason("Too short to be a document. It has words.")
    assert reason == "gopher_short_document: 9 words < 50"
    repeated = " ".join(["we will win this match tonight"] * 30) + "."
    assert _reason(repeated, min_words=1).startswith("gopher_")  # repetition rules catch it


def test_thresholds_come_from_the_config_and_rules_can_be_disabled() -> None:
    short = "The note is short and to the point. We keep it. That is fine."
    assert _reason(short) is not None
    assert _reason(short, min_words=5, c4_min_sentences=1) is None
    assert _reason(CLEAN + " {x}", disabled=["c4_curly_bracket"]) is None
    with pytest.raises(ValueError, match="unknown quality rule"):
        QualityFilter(QualityConfig(disabled=["no_such_rule"]))


def test_counts_are_kept_per_rule() -> None:
    f = QualityFilter()
    reasons = f.reasons([CLEAN, "Short.", None, CLEAN + " {"])
    assert [r is None for r in reasons] == [True, False, False, False]
    assert f.seen == 4 and sum(f.first_reason.values()) == 3
    assert f.first_reason["c4_curly_bracket"] == 1
    assert set(RULES) >= set(f.fired)


def test_repetition_reason_flags_a_generation_that_loops_and_not_a_summary() -> None:
    from tasks.curate.quality import repetition_reason

    loop = "The incident was taken into the investigation of the incident, and " * 4
    assert repetition_reason(loop).startswith("repeated 5-grams cover 0.")
    assert repetition_reason("") is None and repetition_reason("word") is None
    summary = (
        "Drought-stricken California for the first time imposes water restrictions. Executive "
        "order demands that cities and towns reduce water usage by 25%."
    )
    assert repetition_reason(summary) is None
