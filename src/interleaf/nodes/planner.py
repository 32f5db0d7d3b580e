"""TurnPlanner: lays out the next turn's candidate slots (the tree's branching)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.nodes.registry import node_kinds
from interleaf.state import CandidateTask, Prompt, TreeNode


class TurnPlannerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=2, ge=1, le=64, description="Candidate answers per history (branching factor).")
    max_nodes: int = Field(default=10_000, ge=1, description="Hard bound on the tree's size.")


class TurnPlannerInput(NodeIO):
    prompts: list[Prompt]
    nodes: dict[str, TreeNode]
    turn: int


class TurnPlannerOutput(NodeIO):
    turn: int
    tasks: list[CandidateTask]


@node_kinds.register("turn_planner")
class TurnPlanner(NodeKind[TurnPlannerInput, TurnPlannerOutput, TurnPlannerParams]):
    """Turn 0: ``k`` candidates for each prompt variant. Later turns: ``k`` candidates under each
    alive node of the previous turn that has a follow-up question."""

    kind = "turn_planner"
    Input = TurnPlannerInput
    Output = TurnPlannerOutput
    Params = TurnPlannerParams
    # The first turn reads an empty tree, so a single-turn graph (START -> expand -> plan) is valid.
    optional_reads = frozenset({"nodes", "turn"})

    async def run(self, inp: TurnPlannerInput) -> TurnPlannerOutput:
        k = self.params.k
        tasks: list[CandidateTask] = []
        if not inp.nodes:
            for p in inp.prompts:
                for c in range(k):
                    tasks.append(CandidateTask(node_id=f"v{p.variant}.{c}", parent=None, turn=0, candidate=c,
                                               user=p.message, tags={**p.tags, "situation": p.situation}))
            turn = 0
        else:
            turn = inp.turn + 1
            parents = sorted(
                (n for n in inp.nodes.values() if n.turn == inp.turn and n.status == "alive" and n.follow_up),
                key=lambda n: n.id,
            )
            for parent in parents:
                assert parent.follow_up is not None
                for c in range(k):
                    tasks.append(CandidateTask(node_id=f"{parent.id}.{c}", parent=parent.id, turn=turn,
                                               candidate=c, user=parent.follow_up, tags=dict(parent.tags)))
        room = max(0, self.params.max_nodes - len(inp.nodes))
        return TurnPlannerOutput(turn=turn, tasks=tasks[:room])
