"""Rubrics as data: the dimensions a judge scores, their scales, criteria and answer format.

A rubric is a YAML file. Built-in rubrics (``intermt-local``, ``intermt-global``) are
package data in ``graphs/rubrics/``; a node names one (``rubric: intermt-local``) or gives a
path to a user file, resolved against the graph file's folder. Every problem in a rubric
file is a :class:`~interleaf.errors.SpecError` naming the file and line.

Rubrics make no assumption about media: criteria are free text, and a dimension may list
the modalities it looks at (text, image, video, audio).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from interleaf.errors import Location, SpecError
from interleaf.graphs.yamlsource import YamlDocument, load_yaml_file
from interleaf.models.judge_format import DimensionScale, format_instructions

BUILTIN_RUBRIC_DIR = Path(__file__).parent / "rubrics"

Level = Literal["turn", "dialogue"]
Modality = Literal["text", "image", "video", "audio"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _RubricModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scale(_RubricModel):
    """Integer scores ``low..high`` plus ``special`` values outside it (value -> when it applies)."""

    low: int = 0
    high: int = 3
    special: dict[int, str] = Field(default_factory=dict)

    def accepts(self, value: float) -> bool:
        if self.low <= value <= self.high:
            return True
        return float(value).is_integer() and int(value) in self.special

    @property
    def bounds(self) -> tuple[int, int]:
        """The widest range the parser should read (special values included)."""
        values = [self.low, self.high, *self.special]
        return min(values), max(values)


class Dimension(_RubricModel):
    """One scored dimension."""

    name: str
    level: Level
    description: str
    group: str | None = None
    weight: float = Field(default=1.0, ge=0)
    scale: Scale = Field(default_factory=Scale)
    criteria: dict[int, str] = Field(default_factory=dict, description="Score value -> what earns it.")
    modalities: list[Modality] = Field(default_factory=lambda: list[Modality](["text"]))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"dimension name {value!r} must be lower_snake_case (a-z, 0-9, _)")
        return value


class Rubric(_RubricModel):
    """A judging rubric loaded from YAML."""

    name: str
    description: str = ""
    version: int = 1
    instructions: str = Field(description="The judge's task, before the criteria.")
    output_format: Literal["boxed"] = Field(
        default="boxed", description="boxed: one [[dimension, reason, \\boxed{score}]] line per dimension."
    )
    groups: dict[str, str] = Field(default_factory=dict, description="Group name -> description.")
    dimensions: list[Dimension]
    source: str = Field(default="<memory>", exclude=True)

    def dims(self, level: Level | None = None, names: Sequence[str] | None = None) -> list[Dimension]:
        """Dimensions of ``level`` (all when None), restricted to ``names`` when given."""
        out = [d for d in self.dimensions if level is None or d.level == level]
        if names is not None:
            wanted = set(names)
            out = [d for d in out if d.name in wanted]
        return out

    def dimension(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        raise KeyError(name)

    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def weights(self, dims: Sequence[Dimension] | None = None) -> dict[str, float]:
        return {d.name: d.weight for d in (self.dimensions if dims is None else dims)}

    def group_members(self) -> dict[str, list[str]]:
        """Group -> dimension names, in rubric order (groups with no dimension are left out)."""
        out: dict[str, list[str]] = {}
        for d in self.dimensions:
            if d.group is not None:
                out.setdefault(d.group, []).append(d.name)
        return out

    def accepts(self, name: str, value: float) -> bool:
        return self.dimension(name).scale.accepts(value)

    def parse_scales(self, dims: Sequence[Dimension]) -> list[DimensionScale]:
        """What the judge-output parser reads for ``dims``."""
        return [DimensionScale(d.name, *d.scale.bounds) for d in dims]

    def criteria_text(self, dims: Sequence[Dimension]) -> str:
        """The judge's instructions and per-level criteria for ``dims``."""
        blocks = [self.instructions.strip()]
        for d in dims:
            lines = [f"## {d.name} ({d.scale.low}-{d.scale.high})", d.description.strip()]
            for value in sorted(d.criteria, reverse=True):
                lines.append(f"- {value}: {d.criteria[value].strip()}")
            for value, when in sorted(d.scale.special.items()):
                if value not in d.criteria:
                    lines.append(f"- {value}: {when.strip()}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def format_text(self, dims: Sequence[Dimension]) -> str:
        """The answer-format block (ends with the machine-readable ``DIMENSIONS:`` header)."""
        return format_instructions(self.parse_scales(dims))


def dimension_location(rubric: Rubric, name: str) -> Location | None:
    """Where ``name`` is declared in the rubric's file (None for rubrics not loaded from a file)."""
    names = rubric.names()
    if name not in names or not Path(rubric.source).is_file():
        return None
    try:
        doc = load_yaml_file(rubric.source)
    except SpecError:
        return None
    return doc.location(("dimensions", names.index(name), "name"))


def dimension_hint(rubric: Rubric, name: str, candidates: Sequence[str] | None = None) -> str:
    """``" (did you mean 'x', declared at file:line?)"`` for a close dimension name, else ``""``.

    A misspelt name can sit on either side - in the graph or in the rubric file - so the hint
    points at the rubric line of the closest declared name.
    """
    pool = list(candidates) if candidates is not None else rubric.names()
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.75)
    if not close:
        return ""
    where = dimension_location(rubric, close[0])
    at = f", declared at {where}" if where is not None else ""
    return f" (did you mean {close[0]!r}{at}?)"


def builtin_rubrics() -> dict[str, Path]:
    """Built-in rubric name -> YAML path (package data)."""
    return {p.stem: p for p in sorted(BUILTIN_RUBRIC_DIR.glob("*.yaml"))}


class RubricNotFound(LookupError):
    """A rubric reference names neither a built-in rubric nor an existing file."""


def resolve_rubric_path(ref: str | Path, base_dir: Path | None = None) -> Path:
    """A rubric reference is a built-in name or a YAML path (relative to ``base_dir``)."""
    text = str(ref)
    builtins = builtin_rubrics()
    if text in builtins:
        return builtins[text]
    p = Path(text).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.is_file():
        return p
    known = ", ".join(builtins) or "none"
    if p.suffix in (".yaml", ".yml") or "/" in text:
        raise RubricNotFound(f"rubric file {str(p)!r} does not exist")
    raise RubricNotFound(f"no built-in rubric or rubric file named {text!r} (built-ins: {known})")


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """Field names allowed at the mapping that holds ``loc``'s last key."""
    model: type[BaseModel] = Rubric
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is Rubric and part == "dimensions":
            model = Dimension
        elif model is Dimension and part == "scale":
            model = Scale
    return [n for n in model.model_fields if n != "source"]


def _located(doc: YamlDocument, exc: ValidationError) -> SpecError:
    errors = exc.errors()
    # A misspelt key also shows up as the real key "missing"; the misspelling is the useful report.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc: list[str | int] = [str(p) if not isinstance(p, int) else p for p in first["loc"]]
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown field {str(loc[-1])!r}"
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1, cutoff=0.6)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    elif first["type"] == "missing":
        msg = f"missing required field {str(loc[-1])!r}"
    # Validation of a dict key (criteria/special) reports "[key]" as an extra segment.
    loc = [p for p in loc if p != "[key]"]
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return doc.error(f"rubric: {msg}", loc)


def _cross_check(doc: YamlDocument, rubric: Rubric) -> None:
    if not rubric.dimensions:
        raise doc.error("rubric: a rubric needs at least one dimension", ("dimensions",))
    seen: set[str] = set()
    for i, d in enumerate(rubric.dimensions):
        if d.name in seen:
            raise doc.error(f"rubric: dimension {d.name!r} is listed twice", ("dimensions", i, "name"))
        seen.add(d.name)
        if d.group is not None and d.group not in rubric.groups:
            known = ", ".join(rubric.groups) or "none declared under 'groups'"
            raise doc.error(f"rubric: unknown group {d.group!r} (groups: {known})", ("dimensions", i, "group"))
        if d.scale.low > d.scale.high:
            raise doc.error(f"rubric: scale low {d.scale.low} is above high {d.scale.high}",
                            ("dimensions", i, "scale"))
        for value in d.scale.special:
            if d.scale.low <= value <= d.scale.high:
                raise doc.error(f"rubric: special value {value} is inside the scale {d.scale.low}..{d.scale.high}",
                                ("dimensions", i, "scale", "special", str(value)))
        for value in d.criteria:
            if not d.scale.accepts(value):
                raise doc.error(
                    f"rubric: criteria for score {value} lie outside the scale {d.scale.low}..{d.scale.high}",
                    ("dimensions", i, "criteria", str(value)),
                )


def parse_rubric(doc: YamlDocument) -> Rubric:
    """Validate a loaded rubric document; raises :class:`SpecError` at the offending line."""
    if not isinstance(doc.data, dict):
        raise doc.error("rubric: a rubric file must be a YAML mapping with 'name' and 'dimensions'")
    data: dict[str, Any] = {**doc.data, "source": doc.path}
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as exc:
        raise _located(doc, exc) from None
    _cross_check(doc, rubric)
    return rubric


_cache: dict[tuple[str, int], Rubric] = {}


def load_rubric(ref: str | Path, base_dir: Path | None = None) -> Rubric:
    """Load a rubric by built-in name or path. Raises :class:`RubricNotFound` or :class:`SpecError`."""
    path = resolve_rubric_path(ref, base_dir).resolve()
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError as exc:
        raise SpecError(f"cannot read rubric file: {exc.strerror or exc}", Location(str(path))) from None
    cached = _cache.get(key)
    if cached is None:
        cached = parse_rubric(load_yaml_file(path))
        _cache[key] = cached
    return cached
