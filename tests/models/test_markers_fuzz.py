"""Property tests: ``parse_markers`` never raises and always returns well-formed markers."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from interleaf.models.markers import Marker, parse_markers, split_text

_PIECES = st.sampled_from([
    "<Image, ", "<Image: ", "<[Image] ", "<image ", "<IMAGE-", "< image ,", ">", "<", "edit of image 1: ",
    "Edited version of image 12 ", "modify image #3,", "a red bicycle", "\n", " ", "：", "[", "]", "image 9999",
])
_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=40).map("".join),
)
_SOURCE = re.compile(r"image \d+")


def _check(text: str, markers: list[Marker]) -> None:
    assert isinstance(markers, list)
    previous_end = 0
    for mk in markers:
        assert isinstance(mk, Marker)
        assert 0 <= previous_end <= mk.start < mk.end <= len(text)
        assert text[mk.start:mk.end] == mk.raw
        assert mk.raw.startswith("<") and mk.raw.endswith(">")
        assert mk.caption == " ".join(mk.caption.split())
        assert "<" not in mk.caption and ">" not in mk.caption
        assert mk.action in ("generate", "edit")
        if mk.action == "generate":
            assert mk.source is None
        elif mk.source is not None:
            assert _SOURCE.fullmatch(mk.source)
        previous_end = mk.end
    pieces = split_text(text, markers)
    assert "".join(p.raw if isinstance(p, Marker) else p for p in pieces) == text
    assert all(p for p in pieces if isinstance(p, str))


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_parse_markers_is_total_and_well_formed(text: str) -> None:
    _check(text, parse_markers(text))


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.binary(max_size=20), st.lists(st.text(max_size=5), max_size=3)))
def test_non_text_gives_no_markers(value: object) -> None:
    assert parse_markers(value) == []  # type: ignore[arg-type]


def test_long_adversarial_input_parses_quickly() -> None:
    import time

    text = "<Image, " + "a" * 200_000 + ("<image " * 20_000) + ">" * 1000
    started = time.perf_counter()
    _check(text, parse_markers(text))
    assert time.perf_counter() - started < 2.0
