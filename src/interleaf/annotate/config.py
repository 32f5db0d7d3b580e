"""Label Studio labeling interfaces generated from rubrics, and reading annotation results back.

One interface per kind of review item:

- ``turns``: one tree node - the conversation so far and the candidate answer - scored on the
  turn-level dimensions;
- ``dialogues``: one complete dialogue, scored on the dialogue-level dimensions;
- ``local-pairs`` / ``global-pairs``: two sibling answers (two whole dialogues) side by side,
  each side scored on the turn-level (dialogue-level) dimensions.

Every dimension becomes a single-choice group whose choices are its scale, high to low (special
values after), each labelled with its criteria text (``alias`` keeps the stored value the bare
number) and with the criteria as its hover hint; a free-text reason follows each dimension.

Control names are the dimension names (``text_quality``), ``<dim>-1``/``<dim>-2`` for the two
sides of a pair, and ``<dim>-reason``: rubric dimension names are lower_snake_case, so ``-``
can never clash with them.

Example:
    >>> from interleaf.graphs.rubric import load_rubric
    >>> rubric = load_rubric("intermt-local")
    >>> xml = label_config("turns", rubric.dims("turn", ["text_quality"]))
    >>> '<Choice value="3 - Accurate, complete' in xml, 'alias="3"' in xml
    (True, True)
    >>> read_control("text_quality-reason", "turns", ["text_quality"])
    ControlRef(dimension='text_quality', side=0, part='reason')
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from interleaf.graphs.rubric import Dimension

ItemKind = Literal["turns", "dialogues", "local-pairs", "global-pairs"]
ITEM_KINDS: tuple[ItemKind, ...] = ("turns", "dialogues", "local-pairs", "global-pairs")

#: The rubric level each kind of item is scored on.
LEVEL_OF: dict[ItemKind, Literal["turn", "dialogue"]] = {
    "turns": "turn", "dialogues": "dialogue", "local-pairs": "turn", "global-pairs": "dialogue",
}

_INTRO: dict[ItemKind, str] = {
    "turns": "Score the candidate answer (highlighted) in the context of the conversation above it.",
    "dialogues": "Score the whole dialogue.",
    "local-pairs": "Two candidate answers to the same conversation: score each side on every dimension.",
    "global-pairs": "Two complete dialogues from the same seed: score each side on every dimension.",
}


def is_pair(kind: ItemKind) -> bool:
    return kind in ("local-pairs", "global-pairs")


def _choices(parent: ET.Element, name: str, to_name: str, dim: Dimension) -> None:
    group = ET.SubElement(parent, "Choices", {
        "name": name, "toName": to_name, "choice": "single-radio", "required": "true",
        "requiredMessage": f"Score {dim.name}",
    })
    values = sorted(range(dim.scale.low, dim.scale.high + 1), reverse=True) + sorted(dim.scale.special)
    for v in values:
        hint = (dim.criteria.get(v) or dim.scale.special.get(v) or "").strip()
        attrs = {"value": f"{v} - {hint}" if hint else str(v), "alias": str(v)}
        if hint:
            attrs["hint"] = hint
        ET.SubElement(group, "Choice", attrs)


def _dimension_header(parent: ET.Element, dim: Dimension, suffix: str = "") -> None:
    ET.SubElement(parent, "Header", {
        "value": f"{dim.name}{suffix} ({dim.scale.low}-{dim.scale.high}): {dim.description.strip()}", "size": "6",
    })


def label_config(kind: ItemKind, dims: Sequence[Dimension]) -> str:
    """The labeling interface XML for ``kind`` items scored on ``dims`` (deterministic text)."""
    root = ET.Element("View")
    ET.SubElement(root, "Header", {"value": "$title", "size": "4"})
    ET.SubElement(root, "Header", {"value": _INTRO[kind], "size": "6"})
    if not is_pair(kind):
        ET.SubElement(root, "HyperText", {"name": "dialogue", "value": "$dialogue", "inline": "true"})
        scores = ET.SubElement(root, "View", {"style": "margin-top: 1em"})
        for d in dims:
            _dimension_header(scores, d)
            _choices(scores, d.name, "dialogue", d)
            ET.SubElement(scores, "TextArea", {
                "name": f"{d.name}-reason", "toName": "dialogue", "rows": "2", "maxSubmissions": "1",
                "editable": "true", "placeholder": f"Why this {d.name} score? (optional)",
            })
    else:
        # One object holds both sides: Label Studio uploads files (the images) only into projects
        # whose interface reads a single data field.
        ET.SubElement(root, "HyperText", {"name": "pair", "value": "$pair", "inline": "true"})
        sides = ET.SubElement(root, "View", {"style": "display: flex; gap: 1.5em; align-items: flex-start"})
        for side in (1, 2):
            col = ET.SubElement(sides, "View", {"style": "flex: 1; min-width: 0"})
            ET.SubElement(col, "Header", {"value": f"Response {side}", "size": "5"})
            for d in dims:
                _dimension_header(col, d, f" - response {side}")
                _choices(col, f"{d.name}-{side}", "pair", d)
        reasons = ET.SubElement(root, "View", {"style": "margin-top: 1em"})
        for d in dims:
            ET.SubElement(reasons, "TextArea", {
                "name": f"{d.name}-reason", "toName": "pair", "rows": "2", "maxSubmissions": "1",
                "editable": "true", "placeholder": f"Why these {d.name} scores? (optional)",
            })
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def canonical(config: str) -> str | None:
    """The config with insignificant whitespace removed (None when it is not XML), for comparing."""
    try:
        return ET.canonicalize(config, strip_text=True)
    except ET.ParseError:
        return None


def same_config(a: str, b: str) -> bool:
    """Whether two labeling configs are the same interface (whitespace between tags ignored)."""
    ca, cb = canonical(a), canonical(b)
    return ca is not None and ca == cb


def config_digest(config: str) -> str:
    """A short fingerprint of a config (recorded in the project description)."""
    return hashlib.sha256((canonical(config) or config).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ControlRef:
    """What one control of a generated interface holds: a dimension's score or reason, of side 1/2 or 0."""

    dimension: str
    side: int
    part: Literal["score", "reason"]


def read_control(name: str, kind: ItemKind, dimensions: Sequence[str]) -> ControlRef | None:
    """Which dimension, side and part a result's ``from_name`` is (None for a name interleaf never makes)."""
    known = set(dimensions)
    if name.endswith("-reason"):
        dim = name[: -len("-reason")]
        return ControlRef(dim, 0, "reason") if dim in known else None
    if is_pair(kind):
        dim, _, side = name.rpartition("-")
        if dim in known and side in ("1", "2"):
            return ControlRef(dim, int(side), "score")
        return None
    return ControlRef(name, 0, "score") if name in known else None
