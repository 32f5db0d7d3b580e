"""Property tests: ``parse_judge_output`` never raises and always returns a well-formed result."""

from __future__ import annotations

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from interleaf.models.judge_format import DimensionScale, JudgeParse, parse_judge_output, render_line

_NAMES = st.sampled_from(["text_quality", "helpfulness", "context_coherence", "Image-Quality", "overall"])
_DIMS = st.lists(
    st.builds(lambda n, lo, span: DimensionScale(n, lo, lo + span), _NAMES, st.integers(-5, 5), st.integers(0, 10)),
    max_size=5, unique_by=lambda d: d.name.lower(),
)
_PIECES = st.sampled_from([
    "[[", "]]", ", ", "\\boxed{", "\\\\boxed{", "}", "text_quality", "helpfulness", "overall", "3", "-2", "7.5",
    "1e9", "nan", "\n", "reason, with comma", "{", "[", "]", "+4",
])
_TEXT = st.one_of(st.text(max_size=300), st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=40).map("".join))


def _check(result: JudgeParse, dims: list[DimensionScale]) -> None:
    assert isinstance(result, JudgeParse)
    names = [d.name for d in dims]
    by_name = {d.name: d for d in dims}
    assert set(result.scores) <= set(names)
    for name, (value, reason) in result.scores.items():
        assert isinstance(value, float) and math.isfinite(value)
        assert by_name[name].low <= value <= by_name[name].high
        assert isinstance(reason, str)
    assert set(result.missing) <= set(names)
    assert set(result.out_of_range) <= set(names)
    # Every dimension is accounted for exactly once: scored, missing or out of range.
    for name in names:
        places = (name in result.scores) + result.missing.count(name) + result.out_of_range.count(name)
        assert places == 1, (name, result)
    assert result.complete == (len(result.scores) == len(names))


@settings(max_examples=300, deadline=None)
@given(_TEXT, _DIMS)
def test_parse_judge_output_is_total_and_well_formed(text: str, dims: list[DimensionScale]) -> None:
    _check(parse_judge_output(text, dims), dims)


@settings(max_examples=150, deadline=None)
@given(_DIMS, st.data())
def test_rendered_lines_parse_back(dims: list[DimensionScale], data: st.DataObject) -> None:
    scores = {d.name: data.draw(st.integers(d.low, d.high)) for d in dims}
    reasons = {d.name: data.draw(st.text(max_size=40)) for d in dims}
    text = "\n".join(render_line(d.name, reasons[d.name], scores[d.name]) for d in dims)
    result = parse_judge_output(text, dims)
    _check(result, dims)
    assert {k: v for k, (v, _) in result.scores.items()} == {k: float(v) for k, v in scores.items()}


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.binary(max_size=10)), _DIMS)
def test_non_text_reports_every_dimension_missing(value: object, dims: list[DimensionScale]) -> None:
    result = parse_judge_output(value, dims)  # type: ignore[arg-type]
    _check(result, dims)
    assert result.missing == [d.name for d in dims]


def test_long_adversarial_input_parses_quickly() -> None:
    dims = [DimensionScale("text_quality", 1, 10)]
    text = "[[text_quality, " + "x, " * 20_000 + "\\boxed{" * 2000
    started = time.perf_counter()
    _check(parse_judge_output(text, dims), dims)
    assert time.perf_counter() - started < 2.0
