"""Judge answers as real models write them: the variants are read, anything else is counted, never guessed."""

from __future__ import annotations

import pytest

from interleaf.models.judge_format import (
    DimensionScale,
    boxed_choice,
    choice_instructions,
    dimensions_in_prompt,
    parse_choice_output,
    parse_judge_output,
)

DIMS = [DimensionScale("text_quality", 0, 3), DimensionScale("context_coherence", 0, 3)]


@pytest.mark.parametrize("answer", [
    "[[text_quality, clear, \\boxed{2}]]",                  # canonical
    "[[text_quality, clear, \\boxed{{2}}]]",                # double braces
    "[[text_quality, clear, \\\\boxed{2}]]",                # an escaped backslash
    "[[text_quality clear \\boxed{2}]]",                    # no comma after the dimension
    "[[text_quality, clear \\boxed{2}]]",                   # no comma before the box
    "[text_quality, clear, \\boxed{2}]",                    # single brackets
    "[[**Text Quality**, clear, \\boxed{ 2 }]]",            # bold, spaces, another case
    "[[text-quality, clear, \\boxed{\\text{2}}]]",          # hyphen, \text{}
    "Here is my verdict.\n[[text_quality, clear, \\boxed{2}]]\nThanks.",
])
def test_score_variants_are_read(answer: str) -> None:
    parsed = parse_judge_output(answer, DIMS)
    assert parsed.scores["text_quality"][0] == 2.0
    assert parsed.scores["text_quality"][1] == "clear"
    assert parsed.missing == ["context_coherence"]


@pytest.mark.parametrize("answer", [
    "[[text_quality, clear, \\boxed{two}]]",                # a word
    "[[text_quality, clear, \\boxed{2/3}]]",                # a fraction
    "text_quality: 2",                                      # no box
    "[[text_quality, clear, 2]]",                           # no box either
    "\\boxed{2}",                                           # a box naming no dimension
])
def test_unreadable_answers_are_missing_not_guessed(answer: str) -> None:
    parsed = parse_judge_output(answer, DIMS)
    assert "text_quality" not in parsed.scores and "text_quality" in parsed.missing


def test_an_unreadable_line_never_borrows_the_next_value() -> None:
    # The old parser let the first line's reason run on to the next line's box (a silent guess).
    text = "[[text_quality, fine, \\boxed{good}]]\n[[context_coherence, fits, \\boxed{3}]]"
    parsed = parse_judge_output(text, DIMS)
    assert parsed.missing == ["text_quality"] and parsed.scores["context_coherence"] == (3.0, "fits")


def test_out_of_range_is_reported_and_a_later_good_line_wins() -> None:
    parsed = parse_judge_output("[[text_quality, x, \\boxed{7}]]\n[[text_quality, y, \\boxed{1}]]", DIMS)
    assert parsed.scores["text_quality"] == (1.0, "y") and parsed.out_of_range == []
    parsed = parse_judge_output("[[text_quality, x, \\boxed{7}]]", DIMS)
    assert parsed.out_of_range == ["text_quality"] and "text_quality" not in parsed.missing


@pytest.mark.parametrize(("boxed", "side"), [
    ("ResponseA", 1), ("Response A", 1), ("response_a", 1), ("A", 1), ("1", 1), ("{ResponseA}", 1),
    ("\\text{ResponseB}", 2), ("Response B", 2), ("b", 2), ("2", 2), ("Tie", 0), ("equal", 0), ("0", 0),
    ("ResponseC", None), ("both", None), ("A or B", None), ("", None),
])
def test_boxed_sides(boxed: str, side: int | None) -> None:
    assert boxed_choice(boxed) == side


def test_choice_answers() -> None:
    text = ("[[text_quality, A answers it, \\boxed{{ResponseA}}]]\n"
            "[context_coherence, B remembers the map, \\boxed{Response B}]\n"
            "[[helpfulness, unsure, \\boxed{maybe}]]")
    parsed = parse_choice_output(text, ["text_quality", "context_coherence", "helpfulness"])
    assert parsed.choices == {"text_quality": (1, "A answers it"), "context_coherence": (2, "B remembers the map")}
    assert parsed.missing == ["helpfulness"] and not parsed.complete


def test_choice_prompt_header_fits_a_header_reading_judge() -> None:
    # The simulator (and any judge reading only the header) answers within 1..2: A or B.
    text = choice_instructions(["text_quality", "helpfulness"])
    assert [(d.name, d.low, d.high) for d in dimensions_in_prompt(text)] == [("text_quality", 1, 2),
                                                                               ("helpfulness", 1, 2)]
    assert "\\boxed{ResponseA or ResponseB}" in text
