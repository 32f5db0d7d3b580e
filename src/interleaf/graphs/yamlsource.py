"""Safe YAML loading that remembers where every value came from.

``ruamel.yaml``'s round-trip loader builds plain containers only (no arbitrary
Python objects), and keeps line/column marks we turn into error locations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interleaf.errors import Location, SpecError

Loc = tuple[str | int, ...]


class YamlDocument:
    """Plain data loaded from YAML plus a map from key paths to source positions."""

    def __init__(self, data: Any, path: str, positions: dict[Loc, tuple[int, int]]):
        self.data = data
        self.path = path
        self._positions = positions

    def location(self, loc: Sequence[str | int]) -> Location:
        """The closest known position for a key path (falls back to parents)."""
        key = tuple(loc)
        while key:
            if key in self._positions:
                line, col = self._positions[key]
                return Location(self.path, line, col)
            key = key[:-1]
        return Location(self.path, *self._positions.get((), (1, 1)))

    def error(self, message: str, loc: Sequence[str | int] = (), cls: type[SpecError] = SpecError) -> SpecError:
        field = ".".join(str(p) for p in loc) or None
        return cls(message, self.location(loc), field)


def _plain(node: Any, loc: Loc, positions: dict[Loc, tuple[int, int]]) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key in node:
            try:
                line, col = node.lc.key(key)
                positions[(*loc, str(key))] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key) if not isinstance(key, str) else key] = _plain(
                node[key], (*loc, str(key)), positions
            )
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            try:
                line, col = node.lc.item(i)
                positions[(*loc, i)] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            items.append(_plain(item, (*loc, i), positions))
        return items
    if hasattr(node, "__str__") and type(node).__module__.startswith("ruamel"):
        # Scalars with formatting info (ScalarFloat, LiteralScalarString...) become builtins.
        for base in (bool, int, float, str):
            if isinstance(node, base):
                return base(node)
    return node


def load_yaml_text(text: str, path: str) -> YamlDocument:
    """Parse YAML text; syntax errors become :class:`SpecError` with the line."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", loc) from None
    except YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", Location(path)) from None
    positions: dict[Loc, tuple[int, int]] = {(): (1, 1)}
    return YamlDocument(_plain(raw, (), positions), path, positions)


def load_yaml_file(path: str | Path) -> YamlDocument:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}", Location(str(p))) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError("file is not valid UTF-8 text", Location(str(p), line)) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SpecError("file contains NUL bytes (binary data?)", Location(str(p), line))
    return load_yaml_text(text, str(p))
