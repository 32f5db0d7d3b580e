"""Edge predicates: named, typed conditions over the dialogue state.

A conditional edge names one (``if: more_turns``) with ``args:``; the compiler
validates the args against the predicate's ``Args`` model.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from interleaf.registry import Registry
from interleaf.state import DialogueState

predicates: Registry[type[Predicate]] = Registry(
    "predicate", "interleaf.predicates", ("interleaf.graphs.predicates",)
)


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Predicate:
    """Base class: ``reads`` lists the state fields the test looks at."""

    Args: ClassVar[type[BaseModel]] = NoArgs
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, args: BaseModel):
        self.args = args

    def __call__(self, state: DialogueState) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class MoreTurnsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_turns: int = Field(ge=1, le=100)


@predicates.register("more_turns")
class MoreTurns(Predicate):
    """True while the tree has alive branches at the current turn and fewer than ``max_turns`` turns."""

    Args = MoreTurnsArgs
    reads = frozenset({"turn", "nodes"})

    def __call__(self, state: DialogueState) -> bool:
        assert isinstance(self.args, MoreTurnsArgs)
        return state.turn + 1 < self.args.max_turns and bool(state.alive_at(state.turn))


@predicates.register("has_alive")
class HasAlive(Predicate):
    """True when any branch of the tree is still alive."""

    reads = frozenset({"nodes"})

    def __call__(self, state: DialogueState) -> bool:
        return any(n.status == "alive" for n in state.nodes.values())
