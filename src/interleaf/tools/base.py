"""The tool contract: typed input/output, YAML params, registered by kind name.

A tool is called by the assistant-turn node, either from a native function call
(its JSON schema comes from ``Input``) or from an inline ``<Image, ...>`` marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from interleaf.registry import Registry

if TYPE_CHECKING:
    from interleaf.graphs.spec import ToolSpec
    from interleaf.storage.store import ObjectStore

tool_kinds: Registry[type[Tool[Any, Any, Any]]] = Registry(
    "tool kind", "interleaf.tools", ("interleaf.tools.builtin",)
)

ParamsT = TypeVar("ParamsT", bound=BaseModel)
InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)


class NoToolParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolContext:
    """Where a call comes from; image tools derive their seed from it."""

    dialogue_id: str
    node_id: str
    index: int
    run_seed: int
    store: ObjectStore


class ToolError(Exception):
    """A tool failed in a way the model should be told about (becomes a tool message)."""


class Tool(Generic[ParamsT, InT, OutT]):
    """Base class of tools.

    A tool is built with what it may use: ``store`` (the run's object store, where images go;
    each call also gets it in its :class:`ToolContext`) and ``base_dir`` (the graph file's
    folder, against which relative paths in its params resolve). Both may be None (a tool
    built for validation or a test).

    Example::

        class Shout(Tool[NoToolParams, ShoutIn, ShoutOut]):
            kind = "shout"
            description = "Repeat the text loudly."
            Input, Output = ShoutIn, ShoutOut

            async def __call__(self, inp: ShoutIn, ctx: ToolContext) -> ShoutOut:
                return ShoutOut(text=inp.text.upper())
    """

    kind: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoToolParams
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]

    def __init__(self, name: str, params: ParamsT, *, store: ObjectStore | None = None,
                 base_dir: Path | None = None):
        self.name = name
        self.params = params
        self.store = store
        self.base_dir = base_dir

    async def __call__(self, inp: InT, ctx: ToolContext) -> OutT:  # pragma: no cover - abstract
        raise NotImplementedError

    def function_schema(self) -> dict[str, Any]:
        """OpenAI ``tools=[...]`` entry generated from ``Input``."""
        schema = self.Input.model_json_schema()
        schema.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }

    async def preflight(self, ctx: ToolContext) -> str:
        """Check before a run that this tool can work; returns what was checked.

        Raise (any exception) when it cannot. The default only proves the tool was built;
        image tools make one smallest image, retrieval loads its collection.
        """
        return "built (no check of its own)"

    async def aclose(self) -> None:
        return None


def tool_kind_of(name: str, spec: ToolSpec) -> type[Tool[Any, Any, Any]]:
    return tool_kinds.get(spec.kind or name)


def validate_tool_spec(name: str, spec: ToolSpec) -> BaseModel:
    """Resolve a tool's kind and validate its params (raises LookupError / ValidationError)."""
    return tool_kind_of(name, spec).Params.model_validate(spec.params())


def build_tool(name: str, spec: ToolSpec, *, store: ObjectStore | None = None,
               base_dir: Path | None = None) -> Tool[Any, Any, Any]:
    """Build the tool a ``tools:`` entry names (params validated).

    >>> from interleaf.graphs.spec import ToolSpec
    >>> tool = build_tool("find", ToolSpec(kind="retrieve_image", collection="images.jsonl"))
    >>> (tool.kind, tool.params.top_k)
    ('retrieve_image', 3)
    """
    kind = tool_kind_of(name, spec)
    return kind(name, kind.Params.model_validate(spec.params()), store=store, base_dir=base_dir)
