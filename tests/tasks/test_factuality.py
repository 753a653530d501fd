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
