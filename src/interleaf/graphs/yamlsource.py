"""Safe YAML loading that remembers where every value came from.

The text is *composed* into a YAML node tree (no object construction at all) and
then turned into plain Python data by hand: mappings, lists, strings, numbers,
booleans and null. Any other tag (``!!python/object``, ``!!binary``, ``!custom``,
...) is refused, aliases are expanded with a size bound (no "billion laughs"),
merge keys (``<<``) are honoured and duplicate keys are errors. Every key and
list item keeps its line/column, which :class:`YamlDocument` turns into error
locations.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interleaf.errors import Location, SpecError

if TYPE_CHECKING:
    from ruamel.yaml.nodes import Node

Loc = tuple[str | int, ...]

#: Graph and rubric files are small; anything bigger is a mistake (or an attack).
MAX_YAML_BYTES = 256 << 10
#: Values after alias expansion; bounds exponential alias bombs.
MAX_YAML_VALUES = 50_000
MAX_YAML_DEPTH = 40

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}
# A bare date is resolved as a timestamp; keep it as the text the user wrote.
_TEXT_TAGS = {f"{_TAG}str", f"{_TAG}timestamp"}
_MAP_TAG = f"{_TAG}map"
_SEQ_TAG = f"{_TAG}seq"
_MERGE_TAG = f"{_TAG}merge"

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


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


def _tag_message(tag: str | None) -> str:
    tag = tag or "?"
    shown = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
    return (
        f"YAML tag {shown!r} is not allowed: a graph file holds only mappings, lists, strings, numbers, "
        "booleans and null"
    )


class _PlainBuilder:
    """Turns a composed node tree into plain data, recording positions and refusing unsafe input."""

    def __init__(self, path: str, construct_scalar: Any):
        self.path = path
        self.positions: dict[Loc, tuple[int, int]] = {}
        self._construct_scalar = construct_scalar
        self._count = 0
        self._open: set[int] = set()

    def _fail(self, message: str, node: Node, loc: Loc) -> SpecError:
        mark = node.start_mark
        shown = [str(p) for p in loc[:8]] + (["..."] if len(loc) > 8 else [])
        field = ".".join(shown) or None
        return SpecError(message, Location(self.path, mark.line + 1, mark.column + 1), field)

    def _mark(self, loc: Loc, node: Node) -> None:
        self.positions.setdefault(loc, (node.start_mark.line + 1, node.start_mark.column + 1))

    def build(self, node: Node, loc: Loc = ()) -> Any:
        from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

        self._count += 1
        if self._count > MAX_YAML_VALUES:
            raise self._fail(
                f"document expands to more than {MAX_YAML_VALUES} values (aliases repeated too often?)", node, loc
            )
        if len(loc) > MAX_YAML_DEPTH:
            raise self._fail(f"values are nested more than {MAX_YAML_DEPTH} levels deep", node, loc)
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._open:
            raise self._fail("an alias refers to a value that contains it (recursive anchor)", node, loc)
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise self._fail(_tag_message(node.tag), node, loc)
                out: list[Any] = []
                for i, item in enumerate(node.value):
                    self._mark((*loc, i), item)
                    out.append(self.build(item, (*loc, i)))
                return out
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    raise self._fail(_tag_message(node.tag), node, loc)
                return self._mapping(node, loc)
        finally:
            self._open.discard(id(node))
        raise self._fail(f"unsupported YAML node {type(node).__name__}", node, loc)

    def _scalar(self, node: Node, loc: Loc) -> Any:
        tag = node.tag
        if tag in _TEXT_TAGS:
            return str(node.value)
        if tag not in _SCALAR_TAGS:
            raise self._fail(_tag_message(tag), node, loc)
        try:
            return self._construct_scalar(node)
        except Exception as exc:  # the library's own conversion of a resolved int/float/bool
            value = str(node.value)
            shown = value if len(value) <= 24 else value[:20] + "..."
            raise self._fail(f"cannot read value {shown!r}: {str(exc)[:100]}", node, loc) from None

    def _key(self, node: Node, loc: Loc) -> str:
        from ruamel.yaml.nodes import ScalarNode

        if not isinstance(node, ScalarNode):
            raise self._fail("mapping keys must be plain names, not lists or mappings", node, loc)
        if node.tag not in _SCALAR_TAGS and node.tag not in _TEXT_TAGS:
            raise self._fail(_tag_message(node.tag), node, loc)
        return str(node.value)

    def _mapping(self, node: Node, loc: Loc) -> dict[str, Any]:
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        out: dict[str, Any] = {}
        merges: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append((key_node, value_node))
                continue
            key = self._key(key_node, loc)
            if key in out:
                raise self._fail(f"duplicate key {key!r}", key_node, (*loc, key))
            self._mark((*loc, key), key_node)
            out[key] = self.build(value_node, (*loc, key))
        # Merge keys: explicit keys win, then earlier merge sources over later ones.
        for key_node, value_node in merges:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise self._fail("a merge key ('<<') takes a mapping or a list of mappings", key_node, loc)
                merged = self.build(source, loc)
                for key, value in merged.items():
                    if key not in out:
                        out[key] = value
        return out


def _syntax_error(exc: Exception, path: str, text: str) -> SpecError:
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError

    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        return SpecError(f"YAML syntax error: {what}", loc)
    if isinstance(exc, ReaderError):
        where = Location(path, *_line_of(text, exc.position)) if 0 <= exc.position <= len(text) else Location(path)
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or " ")
        return SpecError(f"YAML error: control character U+{char:04X} is not allowed in YAML text", where)
    if isinstance(exc, RecursionError):
        return SpecError("YAML error: values are nested too deeply", Location(path))
    return SpecError(f"YAML error: {type(exc).__name__}: {exc}", Location(path))


def _line_of(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def load_yaml_text(text: str, path: str) -> YamlDocument:
    """Parse YAML text into plain data; every problem becomes a :class:`SpecError` with the place."""
    from ruamel.yaml import YAML

    if len(text) > MAX_YAML_BYTES:
        raise SpecError(f"file is too large ({len(text)} characters; at most {MAX_YAML_BYTES})", Location(path))
    if "\x00" in text:
        where = Location(path, *_line_of(text, text.index("\x00")))
        raise SpecError("file holds binary data (NUL bytes), not YAML text", where)
    # The pure-Python parser takes seconds on huge flat lists; separators bound the value count cheaply.
    if text.count(",") + text.count("\n") > MAX_YAML_VALUES:
        raise SpecError(f"file holds more than {MAX_YAML_VALUES} values; a graph file is far smaller", Location(path))
    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(text)
    except Exception as exc:  # the parser's own errors, and RecursionError on absurd nesting
        raise _syntax_error(exc, path, text) from None
    if root is None:
        raise SpecError("file is empty (no YAML document)", Location(path, 1, 1))
    builder = _PlainBuilder(path, lambda node: yaml.constructor.construct_object(node, deep=True))
    try:
        data = builder.build(root)
    except RecursionError:
        raise SpecError("YAML error: values are nested too deeply", Location(path)) from None
    positions = builder.positions
    positions[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
    return YamlDocument(data, path, positions)


def load_yaml_file(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file (UTF-8, optionally with a BOM)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise SpecError(f"file is too large ({size} bytes; at most {MAX_YAML_BYTES})", Location(str(p)))
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}", Location(str(p))) from None
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise SpecError(f"file is {name} text; save it as UTF-8", Location(str(p), 1, 1))
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if b"\x00" in raw:
        where = raw.index(b"\x00")
        line = raw.count(b"\n", 0, where) + 1
        raise SpecError("file holds binary data (NUL bytes), not YAML text", Location(str(p), line))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"file is not valid UTF-8 text (byte 0x{raw[exc.start]:02x})", Location(str(p), line, col)
        ) from None
    return load_yaml_text(text, str(p))
