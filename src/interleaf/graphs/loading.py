"""Loading graph YAML: built-in names, file paths and text, with errors that name the place.

:func:`load_graph` and :func:`load_graph_text` return a schema-checked
:class:`~interleaf.graphs.spec.GraphSpec` and its :class:`~interleaf.graphs.yamlsource.YamlDocument`;
:func:`located_validation_error` turns a pydantic error into a :class:`SpecError` at the YAML
line and column. Nothing here imports node kinds or compiles wiring (see
:mod:`interleaf.graphs.compiler`).

Example:
    >>> spec, doc = load_graph("intermt-lite")
    >>> spec.name
    'intermt-lite'
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from interleaf.errors import Location, SpecError
from interleaf.graphs.spec import GraphSpec, env_ref_problem, without_env_refs
from interleaf.graphs.yamlsource import YamlDocument, load_yaml_file, load_yaml_text

BUILTIN_DIR = Path(__file__).parent / "builtin"

Loc = tuple[str | int, ...]


def builtin_graphs() -> dict[str, Path]:
    """Built-in graph name -> YAML path (package data)."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def resolve_graph_path(ref: str | Path) -> Path:
    """A graph reference is a YAML path or a built-in graph name."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    builtins = builtin_graphs()
    if str(ref) in builtins:
        return builtins[str(ref)]
    known = ", ".join(builtins) or "none"
    raise SpecError(f"no graph file or built-in graph named {str(ref)!r} (built-ins: {known})", Location(str(ref)))


# ---------------------------------------------------------------------------------------------
# Schema errors


def unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` below ``root`` (None if unknown)."""
    current: Any = root
    for part in loc:
        current = unwrap_optional(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            found = next(
                (f for n, f in current.model_fields.items() if part in (n, f.alias)), None
            )
            if found is None:
                return None
            current = found.annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return None
    current = unwrap_optional(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _shown(value: Any) -> str | None:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return None


_SECRET_WORDS = ("key", "token", "secret", "password", "credential")


def _is_secret_field(loc: Sequence[str | int]) -> bool:
    """Values under such fields are never echoed in error messages."""
    return any(isinstance(p, str) and any(w in p.lower() for w in _SECRET_WORDS) for p in loc)


def located_validation_error(
    doc: YamlDocument, exc: ValidationError, root: type[BaseModel], prefix: Sequence[str | int] = ()
) -> SpecError:
    """The first problem of a pydantic error as a :class:`SpecError` at its YAML place."""
    # An unknown field is usually a typo of the field reported missing: name the typo first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc: list[str | int] = [p for p in first["loc"] if p != "[key]"]
    kind = first["type"]
    msg = str(first["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden" and loc:
        msg = f"unknown field {str(loc[-1])!r}"
        parent = _model_at(root, loc[:-1])
        if parent is not None:
            allowed = _field_names(parent)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            msg += f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
    elif kind == "missing" and loc:
        msg = f"missing required field {str(loc[-1])!r}"
    else:
        got = None if _is_secret_field([*prefix, *loc]) else _shown(first.get("input"))
        if got is not None and kind not in ("value_error", "assertion_error"):
            msg += f", got {got}"
    more = len(errors) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return doc.error(msg, [*prefix, *loc])


def _walk_strings(data: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    if isinstance(data, str):
        yield loc, data
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _walk_strings(v, (*loc, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk_strings(v, (*loc, i))


def parse_spec(doc: YamlDocument) -> GraphSpec:
    """Schema-check loaded YAML as a :class:`GraphSpec` (env references checked, not resolved)."""
    if not isinstance(doc.data, dict):
        got = "a list" if isinstance(doc.data, list) else f"a single value ({_shown(doc.data) or '?'})"
        raise doc.error(f"a graph file must be a YAML mapping with 'name', 'nodes' and 'edges', not {got}")
    for loc, text in _walk_strings(doc.data):
        problem = env_ref_problem(text)
        if problem is not None:
            if _is_secret_field(loc):
                problem = "malformed environment reference: write ${NAME} or ${NAME:-default}"
            raise doc.error(problem, loc)
    try:
        spec = GraphSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise located_validation_error(doc, exc, GraphSpec) from None
    for name, model in spec.models.items():
        if model.api_key and without_env_refs(model.api_key).strip():
            raise doc.error(
                "api_key holds a literal value: reference an environment variable instead "
                "(api_key: ${MY_API_KEY}) so the key is never written out with the graph",
                ("models", name, "api_key"),
            )
    return spec


def load_graph(ref: str | Path) -> tuple[GraphSpec, YamlDocument]:
    """Load and schema-check a graph YAML (path or built-in name)."""
    doc = load_yaml_file(resolve_graph_path(ref))
    return parse_spec(doc), doc


def load_graph_text(text: str, path: str = "<string>") -> tuple[GraphSpec, YamlDocument]:
    """Like :func:`load_graph` for YAML text; ``path`` is the name used in errors."""
    doc = load_yaml_text(text, path)
    return parse_spec(doc), doc
