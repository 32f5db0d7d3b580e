"""The tool contract: typed input/output, YAML params, registered by kind name.

A tool is called by the assistant-turn node, either from a native function call
(its JSON schema comes from ``Input``) or from an inline ``<Image, ...>`` marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from interleaf.registry import Registry

if TYPE_CHECKING:
    from interleaf.graphs.spec import ToolSpec
    from interleaf.runtime import Runtime
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
    """Base class of tools."""

    kind: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoToolParams
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]

    def __init__(self, name: str, params: ParamsT, runtime: Runtime | None):
        self.name = name
        self.params = params
        self.runtime = runtime

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

    async def aclose(self) -> None:
        return None


def tool_kind_of(name: str, spec: ToolSpec) -> type[Tool[Any, Any, Any]]:
    return tool_kinds.get(spec.kind or name)


def validate_tool_spec(name: str, spec: ToolSpec) -> BaseModel:
    """Resolve a tool's kind and validate its params (raises LookupError / ValidationError)."""
    return tool_kind_of(name, spec).Params.model_validate(spec.params())


def build_tool(name: str, spec: ToolSpec, runtime: Runtime | None) -> Tool[Any, Any, Any]:
    kind = tool_kind_of(name, spec)
    return kind(name, kind.Params.model_validate(spec.params()), runtime)
