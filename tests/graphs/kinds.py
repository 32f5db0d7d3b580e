"""Small node kinds, a predicate and a tool for compiler tests, named in YAML by import path.

They call no model: what a node "did" is written into ``records`` so a test can see which
kind, params and model configuration actually ran.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import SpecError
from interleaf.graphs.predicates import Predicate
from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.state import CandidateTask, Message, Seed, TextPart, TreeNode
from interleaf.tools.base import Tool, ToolContext

# Attempts per (kind, node name), shared across instances so retries are visible to tests.
ATTEMPTS: dict[str, int] = {}


class LabelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = "x"
    times: int = Field(default=1, ge=1, le=10)


class SeedIn(NodeIO):
    seed: Seed


class RecordsOut(NodeIO):
    records: dict[str, Any]


def _model_string(node: NodeKind[Any, Any, Any]) -> str | None:
    names = node.ctx.model_names
    return node.ctx.runtime.spec.models[names[0]].model if names else None


class Echo(NodeKind[SeedIn, RecordsOut, LabelParams]):
    """Records ``echo:<label>:<prompt>`` under its node name, and the model string it was given."""

    kind = "echo"
    Input = SeedIn
    Output = RecordsOut
    Params = LabelParams
    models: ClassVar[Any] = "optional"

    async def run(self, inp: SeedIn) -> RecordsOut:
        text = ":".join(["echo", self.params.label, inp.seed.prompt] * self.params.times)
        return RecordsOut(records={self.ctx.name: {"text": text, "model": _model_string(self)}})


class Shout(Echo):
    """Same contract as :class:`Echo`, different behaviour (for swapping a kind in YAML)."""

    kind = "shout"

    async def run(self, inp: SeedIn) -> RecordsOut:
        return RecordsOut(records={self.ctx.name: {"text": f"SHOUT:{inp.seed.prompt.upper()}",
                                                   "model": _model_string(self)}})


class TasksParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=3, ge=0, le=50)


class TasksOut(NodeIO):
    tasks: list[CandidateTask]
    turn: int


class MakeTasks(NodeKind[SeedIn, TasksOut, TasksParams]):
    """Writes ``n`` candidate tasks for the seed's prompt (turn 0)."""

    kind = "make_tasks"
    Input = SeedIn
    Output = TasksOut
    Params = TasksParams

    async def run(self, inp: SeedIn) -> TasksOut:
        user = Message.user(inp.seed.prompt)
        tasks = [CandidateTask(node_id=f"v0.{c}", parent=None, turn=0, candidate=c, user=user)
                 for c in range(self.params.n)]
        return TasksOut(tasks=tasks, turn=0)


class TaskIn(NodeIO):
    task: CandidateTask
    seed: Seed


class NodesOut(NodeIO):
    nodes: dict[str, TreeNode]


class AnswerTask(NodeKind[TaskIn, NodesOut, LabelParams]):
    """Answers one fanned-out task with ``<label> answer <candidate>``."""

    kind = "answer_task"
    Input = TaskIn
    Output = NodesOut
    Params = LabelParams

    async def run(self, inp: TaskIn) -> NodesOut:
        t = inp.task
        text = f"{self.params.label} answer {t.candidate} for {inp.seed.id}"
        node = TreeNode(id=t.node_id, parent=t.parent, turn=t.turn, candidate=t.candidate, user=t.user,
                        assistant=Message(role="assistant", parts=[TextPart(text=text)]))
        return NodesOut(nodes={node.id: node})


class TaskWithStateIn(NodeIO):
    """What a fanned-out node sees: checks that only declared inputs travel in the ``Send``."""

    task: CandidateTask
    seed: Seed
    records: dict[str, Any]


class InspectSend(NodeKind[TaskWithStateIn, NodesOut, LabelParams]):
    """Answers a task and notes which record keys it was given (to check the ``Send`` payload)."""

    kind = "inspect_send"
    Input = TaskWithStateIn
    Output = NodesOut
    Params = LabelParams

    async def run(self, inp: TaskWithStateIn) -> NodesOut:
        t = inp.task
        seen = ",".join(sorted(inp.records))
        node = TreeNode(id=t.node_id, parent=t.parent, turn=t.turn, candidate=t.candidate, user=t.user,
                        assistant=Message(role="assistant", parts=[TextPart(text=seen)]))
        return NodesOut(nodes={node.id: node})


class TurnIn(NodeIO):
    turn: int
    records: dict[str, Any]


class TurnOut(NodeIO):
    turn: int
    records: dict[str, Any]


class NextTurn(NodeKind[TurnIn, TurnOut, LabelParams]):
    """Advances ``turn`` and logs it (a loop body)."""

    kind = "next_turn"
    Input = TurnIn
    Output = TurnOut
    Params = LabelParams

    async def run(self, inp: TurnIn) -> TurnOut:
        log = list(inp.records.get("turns", []))
        log.append(inp.turn)
        return TurnOut(turn=inp.turn + 1, records={"turns": log})


class StartTurn(NodeKind[SeedIn, TurnOut, LabelParams]):
    """Writes ``turn = 0`` so loop bodies read a field written upstream."""

    kind = "start_turn"
    Input = SeedIn
    Output = TurnOut
    Params = LabelParams

    async def run(self, inp: SeedIn) -> TurnOut:
        return TurnOut(turn=0, records={"turns": []})


class TurnBelowArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(ge=1, le=50)


class TurnBelow(Predicate):
    """True while ``state.turn < limit``."""

    Args = TurnBelowArgs
    reads = frozenset({"turn"})

    def __call__(self, state: Any) -> bool:
        assert isinstance(self.args, TurnBelowArgs)
        return bool(state.turn < self.args.limit)


class TransientFailure(Exception):
    """An error LangGraph's default retry policy retries."""


class FlakyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failures: int = Field(default=1, ge=0)
    error: str = "transient"


class Flaky(NodeKind[SeedIn, RecordsOut, FlakyParams]):
    """Fails its first ``failures`` calls (per node name), then records how many attempts it took."""

    kind = "flaky"
    Input = SeedIn
    Output = RecordsOut
    Params = FlakyParams

    async def run(self, inp: SeedIn) -> RecordsOut:
        key = f"{inp.seed.id}/{self.ctx.name}"
        ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
        if ATTEMPTS[key] <= self.params.failures:
            if self.params.error == "value":
                raise ValueError(f"scripted ValueError #{ATTEMPTS[key]}")
            raise TransientFailure(f"scripted failure #{ATTEMPTS[key]}")
        return RecordsOut(records={self.ctx.name: {"attempts": ATTEMPTS[key]}})


class NeedsOneModel(Echo):
    kind = "needs_one_model"
    models: ClassVar[Any] = "one"


class ReadsPairs(NodeKind[Any, RecordsOut, LabelParams]):
    """Reads a field nothing writes in the test graphs (``pairs``)."""

    class Input(NodeIO):
        pairs: list[Any]

    kind = "reads_pairs"
    Output = RecordsOut
    Params = LabelParams


class BadField(NodeKind[Any, RecordsOut, LabelParams]):
    """Declares an input that is not a state field."""

    class Input(NodeIO):
        no_such_field: int

    kind = "bad_field"
    Output = RecordsOut
    Params = LabelParams


class PickyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric: str = "ok"


class Picky(Echo):
    """Refuses a param value in its constructor, naming the param field only."""

    kind = "picky"
    Params = PickyParams  # type: ignore[assignment]

    def __init__(self, ctx: Any, params: Any):
        super().__init__(ctx, params)
        if params.rubric != "ok":
            raise SpecError(f"unknown rubric {params.rubric!r}", None, "params.rubric")


class Crashy(Echo):
    """Raises a plain exception from its constructor."""

    kind = "crashy"

    def __init__(self, ctx: Any, params: Any):
        raise ZeroDivisionError("constructor bug")


class NotAKind:
    """A class that is not a NodeKind."""


class EchoToolParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = ">"


class EchoToolIn(BaseModel):
    text: str


class EchoToolOut(BaseModel):
    text: str


class EchoTool(Tool[EchoToolParams, EchoToolIn, EchoToolOut]):
    kind = "echo_tool"
    description = "Echoes its input."
    Params = EchoToolParams
    Input = EchoToolIn
    Output = EchoToolOut

    async def __call__(self, inp: EchoToolIn, ctx: ToolContext) -> EchoToolOut:
        return EchoToolOut(text=f"{self.params.prefix}{inp.text}")


class UsesTool(Echo):
    kind = "uses_tool"
    uses_tools = True


#: What each ``SendProbe`` call received from LangGraph: (type name, field names given).
PROBES: list[tuple[str, list[str]]] = []


class SendProbe(AnswerTask):
    """Answers like :class:`AnswerTask`, noting exactly which state fields the ``Send`` carried."""

    kind = "send_probe"

    async def __call__(self, state: Any) -> dict[str, Any]:
        if isinstance(state, dict):
            PROBES.append(("dict", sorted(state)))
        else:
            PROBES.append((type(state).__name__, sorted(state.model_fields_set)))
        return await super().__call__(state)
