r"""The judge answer format and its parsers.

Judges are asked to answer one line per dimension, as InterMT-Bench does::

    [[text_quality, clear and correct, \boxed{3}]]

and, to compare two answers, the same line with the preferred side boxed::

    [[text_quality, A explains every step, \boxed{ResponseA}]]

The prompt carries a machine-readable header (``DIMENSIONS: name[lo..hi], ...``) so any
judge, including the local simulator, can see what to score. The parsers never raise:
they return what they could read, and which dimensions are missing.

Real models bend the format; these variants are read too, and nothing else is guessed:

- ``\boxed{{3}}`` (double braces), ``\\boxed{3}`` (an escaped backslash), ``\boxed{\text{3}}``;
- a missing comma: ``[[text_quality clear \boxed{3}]]`` or ``[[text_quality, clear \boxed{3}]]``;
- single brackets on one line: ``[text_quality, clear, \boxed{3}]``;
- a dimension name in Markdown bold or code (``[[**text_quality**, ...]]``), in any case, with
  spaces or hyphens for underscores;
- for a comparison: ``ResponseA``, ``Response A``, ``A`` or ``1`` (and ``B``/``2``; ``Tie`` or ``0``
  for a tie).

A boxed value that is not a number (or not a side) leaves that dimension unread: it never
borrows a value from another line.

>>> dims = [DimensionScale("text_quality", 0, 3), DimensionScale("helpfulness", 0, 3)]
>>> parsed = parse_judge_output("[[Text-Quality clear \\boxed{{2}}]]\n[helpfulness, ok, \\boxed{3}]", dims)
>>> parsed.scores["text_quality"][0], parsed.scores["helpfulness"][0], parsed.missing
(2.0, 3.0, [])
>>> parse_choice_output("[[text_quality, A is clearer, \\boxed{Response A}]]", dims).choices
{'text_quality': (1, 'A is clearer')}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A boxed value with one level of nested braces allowed (``\boxed{{3}}``, ``\boxed{\text{A}}``).
# The inner classes exclude both braces, so the match stays linear on adversarial input.
_BOXED = r"\\+boxed\s*\{(?P<value>[^{}]*(?:\{[^{}]*\}[^{}]*)*)\}"
_MARK = r"[*`]*"
#: ``[[dim, reason, \boxed{v}]]`` (the comma before the box may be missing).
_LINE = re.compile(
    r"\[\[\s*" + _MARK + r"(?P<dim>[A-Za-z_][\w\- ]*?)" + _MARK + r"\s*,\s*(?P<reason>.*?)\s*,?\s*"
    + _BOXED + r"\s*\]\]",
    re.DOTALL,
)
#: ``[[dim reason \boxed{v}]]``: no comma after a one-word dimension name. The looser forms bound
#: their reason, so text with thousands of brackets cannot make them quadratic.
_LINE_NO_COMMA = re.compile(
    r"\[\[\s*" + _MARK + r"(?P<dim>[A-Za-z_][\w\-]*)" + _MARK + r"\s+(?P<reason>.{0,4000}?)\s*,?\s*"
    + _BOXED + r"\s*\]\]",
    re.DOTALL,
)
#: ``[dim, reason, \boxed{v}]`` on one line (single brackets, no bracket inside the reason).
_LINE_SINGLE = re.compile(
    r"(?<!\[)\[\s*" + _MARK + r"(?P<dim>[A-Za-z_][\w\- ]*?)" + _MARK + r"\s*,\s*(?P<reason>[^\[\]\n]{0,1000}?)\s*,?\s*"
    + _BOXED + r"\s*\](?!\])",
)
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf|texttt|textit)\s*\{([^{}]*)\}")
_CHOICES = {
    "responsea": 1, "response1": 1, "a": 1, "1": 1,
    "responseb": 2, "response2": 2, "b": 2, "2": 2,
    "tie": 0, "equal": 0, "same": 0, "draw": 0, "0": 0,
}
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


@dataclass
class ChoiceParse:
    """Sides read from a comparison answer: ``choices[dim] = (1 | 2 | 0, reason)`` (0 is a tie)."""

    choices: dict[str, tuple[int, str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


def header_line(dims: list[DimensionScale]) -> str:
    return "DIMENSIONS: " + ", ".join(f"{d.name}[{d.low}..{d.high}]" for d in dims)


def format_instructions(dims: list[DimensionScale]) -> str:
    """The output-format block appended to judge prompts."""
    example = "\n".join(f"[[{d.name}, <one-sentence reason>, \\boxed{{<{d.low}..{d.high}>}}]]" for d in dims)
    return (
        "Answer with exactly one line per dimension, in this format and nothing else:\n"
        f"{example}\n{header_line(dims)}"
    )


def choice_instructions(names: list[str]) -> str:
    """The output-format block of a comparison prompt (A or B per dimension).

    The ``DIMENSIONS:`` header gives each dimension the range 1..2 (1 = ResponseA,
    2 = ResponseB), so a judge that only reads the header still answers in range.

    >>> print(choice_instructions(["text_quality"]).splitlines()[-1])
    DIMENSIONS: text_quality[1..2]
    """
    example = "\n".join(f"[[{n}, <one-sentence reason>, \\boxed{{ResponseA or ResponseB}}]]" for n in names)
    return (
        "For each dimension, say which response is better. Answer with exactly one line per dimension, "
        f"in this format and nothing else:\n{example}\n"
        + header_line([DimensionScale(n, 1, 2) for n in names])
    )


def dimensions_in_prompt(text: str) -> list[DimensionScale]:
    """Read the ``DIMENSIONS:`` header back out of a prompt (last one wins)."""
    found = _HEADER.findall(text)
    if not found:
        return []
    return [DimensionScale(m["name"], int(m["lo"]), int(m["hi"])) for m in _DIM.finditer(found[-1])]


def render_line(dim: str, reason: str, score: float | str) -> str:
    """One answer line; ``score`` is a number or a boxed word such as ``ResponseA``."""
    value = score if isinstance(score, str) else (int(score) if float(score).is_integer() else score)
    clean = reason.replace("]]", "] ]").replace("\n", " ")
    return f"[[{dim}, {clean}, \\boxed{{{value}}}]]"


def _dim_key(name: str) -> str:
    """Dimension names compare case-, space- and hyphen-insensitively (``Image-Quality`` = ``image_quality``)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _lines(text: str) -> list[tuple[str, str, str]]:
    """``(dimension, reason, boxed value)`` of every answer line, in the canonical form first.

    A looser form only counts where no stricter form matched the same text, so a canonical
    line is never split into a bogus one.
    """
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, str, str, str]] = []
    for pattern in (_LINE, _LINE_NO_COMMA, _LINE_SINGLE):
        for m in pattern.finditer(text):
            start, end = m.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            found.append((start, m["dim"], m["reason"].strip(), m["value"]))
    found.sort(key=lambda f: f[0])
    return [(dim, reason, value) for _, dim, reason, value in found]


def _unwrap(value: str) -> str:
    """A boxed value without LaTeX wrappers, braces, Markdown marks or quotes."""
    previous = None
    while previous != value:
        previous = value
        value = _WRAPPER.sub(r"\1", value)
    return value.replace("{", "").replace("}", "").strip().strip("*`'\" ").strip()


def boxed_number(value: str) -> float | None:
    """The number a boxed value holds (``"{3}"`` -> 3.0), or None.

    >>> boxed_number("{2}"), boxed_number(r"\\text{1.5}"), boxed_number("3/3")
    (2.0, 1.5, None)
    """
    clean = _unwrap(value)
    return float(clean) if _NUMBER.fullmatch(clean) else None


def boxed_choice(value: str) -> int | None:
    """The side a boxed value names: 1 (ResponseA), 2 (ResponseB), 0 (a tie), or None.

    >>> [boxed_choice(v) for v in ("ResponseA", "{Response B}", r"\\text{A}", "2", "Tie", "maybe")]
    [1, 2, 1, 2, 0, None]
    """
    key = re.sub(r"[\s_\-]+", "", _unwrap(value).lower())
    return _CHOICES.get(key)


def parse_judge_output(text: str, dims: list[DimensionScale]) -> JudgeParse:
    """Parse judge text for ``dims``. Never raises; unknown dimensions are ignored."""
    result = JudgeParse()
    if not isinstance(text, str):
        result.missing = [d.name for d in dims]
        return result
    wanted = {_dim_key(d.name): d for d in dims}
    for name, reason, boxed in _lines(text):
        dim = wanted.get(_dim_key(name))
        if dim is None or dim.name in result.scores:
            continue
        value = boxed_number(boxed)
        if value is None:
            continue
        if not (dim.low <= value <= dim.high):
            if dim.name not in result.out_of_range:
                result.out_of_range.append(dim.name)
            continue
        # A later in-range line for the same dimension wins over an earlier out-of-range one.
        if dim.name in result.out_of_range:
            result.out_of_range.remove(dim.name)
        result.scores[dim.name] = (value, reason)
    result.missing = [d.name for d in dims if d.name not in result.scores and d.name not in result.out_of_range]
    return result


def parse_choice_output(text: str, dims: list[DimensionScale] | list[str]) -> ChoiceParse:
    """Parse a comparison answer for ``dims`` (scales or names). Never raises; the first line
    naming a dimension with a readable side wins, unknown dimensions are ignored."""
    names = [d if isinstance(d, str) else d.name for d in dims]
    result = ChoiceParse()
    if not isinstance(text, str):
        result.missing = list(names)
        return result
    wanted = {_dim_key(n): n for n in names}
    for name, reason, boxed in _lines(text):
        dim = wanted.get(_dim_key(name))
        if dim is None or dim in result.choices:
            continue
        choice = boxed_choice(boxed)
        if choice is not None:
            result.choices[dim] = (choice, reason)
    result.missing = [n for n in names if n not in result.choices]
    return result
