"""The judge answer format and its parser.

Judges are asked to answer one line per dimension, as InterMT-Bench does::

    [[text_quality, clear and correct, \\boxed{3}]]

The prompt carries a machine-readable header (``DIMENSIONS: name[lo..hi], ...``) so any
judge, including the local simulator, can see what to score. The parser never raises:
it returns what it could read, and which dimensions are missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE = re.compile(
    r"\[\[\s*(?P<dim>[A-Za-z_][\w\- ]*?)\s*,\s*(?P<reason>.*?)\s*,?\s*"
    r"\\+boxed\{\s*(?P<score>[+-]?\d+(?:\.\d+)?)\s*\}\s*\]\]",
    re.DOTALL,
)
_HEADER = re.compile(r"^DIMENSIONS:\s*(?P<body>.+)$", re.MULTILINE)
_DIM = re.compile(r"(?P<name>[A-Za-z_][\w\-]*)\s*\[\s*(?P<lo>[+-]?\d+)\s*\.\.\s*(?P<hi>[+-]?\d+)\s*\]")


@dataclass(frozen=True)
class DimensionScale:
    name: str
    low: int
    high: int


@dataclass
class JudgeParse:
    """Scores read from a judge answer: ``scores[dim] = (value, reason)``."""

    scores: dict[str, tuple[float, str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    out_of_range: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.out_of_range


def header_line(dims: list[DimensionScale]) -> str:
    return "DIMENSIONS: " + ", ".join(f"{d.name}[{d.low}..{d.high}]" for d in dims)


def format_instructions(dims: list[DimensionScale]) -> str:
    """The output-format block appended to judge prompts."""
    example = "\n".join(f"[[{d.name}, <one-sentence reason>, \\boxed{{<{d.low}..{d.high}>}}]]" for d in dims)
    return (
        "Answer with exactly one line per dimension, in this format and nothing else:\n"
        f"{example}\n{header_line(dims)}"
    )


def dimensions_in_prompt(text: str) -> list[DimensionScale]:
    """Read the ``DIMENSIONS:`` header back out of a prompt (last one wins)."""
    found = _HEADER.findall(text)
    if not found:
        return []
    return [DimensionScale(m["name"], int(m["lo"]), int(m["hi"])) for m in _DIM.finditer(found[-1])]


def render_line(dim: str, reason: str, score: float) -> str:
    value = int(score) if float(score).is_integer() else score
    clean = reason.replace("]]", "] ]").replace("\n", " ")
    return f"[[{dim}, {clean}, \\boxed{{{value}}}]]"


def _dim_key(name: str) -> str:
    """Dimension names compare case-, space- and hyphen-insensitively (``Image-Quality`` = ``image_quality``)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def parse_judge_output(text: str, dims: list[DimensionScale]) -> JudgeParse:
    """Parse judge text for ``dims``. Never raises; unknown dimensions are ignored."""
    result = JudgeParse()
    if not isinstance(text, str):
        result.missing = [d.name for d in dims]
        return result
    wanted = {_dim_key(d.name): d for d in dims}
    for m in _LINE.finditer(text):
        dim = wanted.get(_dim_key(m["dim"]))
        if dim is None or dim.name in result.scores:
            continue
        try:
            value = float(m["score"])
        except ValueError:
            continue
        if not (dim.low <= value <= dim.high):
            if dim.name not in result.out_of_range:
                result.out_of_range.append(dim.name)
            continue
        # A later in-range line for the same dimension wins over an earlier out-of-range one.
        if dim.name in result.out_of_range:
            result.out_of_range.remove(dim.name)
        result.scores[dim.name] = (value, m["reason"].strip())
    result.missing = [d.name for d in dims if d.name not in result.scores and d.name not in result.out_of_range]
    return result
