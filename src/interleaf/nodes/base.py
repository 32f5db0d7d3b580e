"""The node-kind contract.

A node kind is a small class with a typed ``Input`` and ``Output`` (pydantic
models whose field names are :class:`~interleaf.state.DialogueState` fields) and
a ``Params`` model for its YAML ``params:``. What a kind reads and writes is
*derived* from those models, so the compiler can check the wiring of a graph
before any model is called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from interleaf.state import DialogueState, Provenance

if TYPE_CHECKING:
    from interleaf.graphs.spec import NodeSpec
    from interleaf.models.client import ModelClient
    from interleaf.runtime import Runtime
    from interleaf.tools.base import Tool


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeIO(BaseModel):
    """Base for node Input/Output models: arbitrary state values pass through unvalidated."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)
ParamsT = TypeVar("ParamsT", bound=BaseModel)

ModelArity = Literal["none", "one", "optional", "many"]


@dataclass
class NodeContext:
    """What a node instance is given at compile time."""

    name: str
    spec: NodeSpec
    runtime: Runtime
    model_names: list[str] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)

    def model(self, index: int = 0) -> ModelClient:
        """The node's model client (``model:``) or the ``index``-th of ``models:``."""
        return self.runtime.model(self.model_names[index])

    def models(self) -> list[ModelClient]:
        return [self.runtime.model(n) for n in self.model_names]

    def tools(self) -> dict[str, Tool]:
        return {n: self.runtime.tool(n) for n in self.tool_names}


class NodeKind(Generic[InT, OutT, ParamsT]):
    """Base class of node kinds. Subclasses set the class attributes and implement :meth:`run`."""

    kind: ClassVar[str]
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    Params: ClassVar[type[BaseModel]] = NoParams
    models: ClassVar[ModelArity] = "none"
    uses_tools: ClassVar[bool] = False
    #: Fields read whose defaults are meaningful input (an empty tree at the first turn), so the
    #: compiler does not require a node before this one to write them.
    optional_reads: ClassVar[frozenset[str]] = frozenset()
    #: Bump when behaviour changes so response caches keyed on it are invalidated.
    version: ClassVar[str] = "1"

    def __init__(self, ctx: NodeContext, params: ParamsT):
        self.ctx = ctx
        self.params = params

    @classmethod
    def reads(cls) -> frozenset[str]:
        return frozenset(cls.Input.model_fields)

    @classmethod
    def writes(cls) -> frozenset[str]:
        return frozenset(cls.Output.model_fields)

    async def run(self, inp: InT) -> OutT:  # pragma: no cover - abstract
        raise NotImplementedError

    def provenance(self, started: float, **fields: Any) -> Provenance:
        """A provenance record for this node, timed from ``started`` (``time.perf_counter()``)."""
        return Provenance(
            node=self.ctx.name,
            kind=self.kind,
            seconds=round(time.perf_counter() - started, 6),
            **fields,
        )

    async def __call__(self, state: DialogueState | dict[str, Any]) -> dict[str, Any]:
        """LangGraph entry: pick the declared inputs, run, return only the declared outputs."""
        if isinstance(state, dict):
            values = {k: state[k] for k in self.Input.model_fields if k in state}
        else:
            values = {k: getattr(state, k) for k in self.Input.model_fields}
        # State values are already validated by LangGraph; skip re-validating big trees.
        inp = self.Input.model_construct(**values)
        out = await self.run(inp)  # type: ignore[arg-type]
        return {k: getattr(out, k) for k in out.model_fields_set if k in self.Output.model_fields}
