"""GlobalJudge: score each complete root-to-leaf dialogue with a dialogue-level rubric.

A complete dialogue ends at a leaf: an alive, answered node with no alive child. By default
only leaves at the deepest turn reached count (``leaves: deepest``), so dialogues compared
later have the same length; ``leaves: all`` also scores branches that ended early.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import ask_judge, judge_prompt, node_rubric, rubric_dims
from interleaf.nodes.registry import node_kinds
from interleaf.state import DialogueState, Score, Seed, TreeNode


class GlobalJudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric: str = Field(default="intermt-global", description="Built-in rubric name or YAML path.")
    dimensions: list[str] | None = Field(
        default=None, min_length=1, description="Score only these dialogue-level dimensions (default: all)."
    )
    leaves: Literal["deepest", "all"] = "deepest"


class GlobalJudgeInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]


class GlobalJudgeOutput(NodeIO):
    dialogue_scores: dict[str, dict[str, Score]]
    records: dict[str, Any]


def complete_leaves(state: DialogueState, mode: Literal["deepest", "all"] = "deepest") -> list[TreeNode]:
    """Ends of complete dialogues (answered alive leaves), optionally only at the deepest turn."""
    leaves = [n for n in state.leaves() if n.assistant is not None]
    if mode == "deepest" and leaves:
        deepest = max(n.turn for n in leaves)
        leaves = [n for n in leaves if n.turn == deepest]
    return leaves


@node_kinds.register("global_judge")
class GlobalJudge(NodeKind[GlobalJudgeInput, GlobalJudgeOutput, GlobalJudgeParams]):
    """Scores every complete dialogue of the tree; results keyed by leaf id."""

    kind = "global_judge"
    Input = GlobalJudgeInput
    Output = GlobalJudgeOutput
    Params = GlobalJudgeParams
    models = "one"

    def __init__(self, ctx: NodeContext, params: GlobalJudgeParams):
        super().__init__(ctx, params)
        self.rubric = node_rubric(ctx, params.rubric)
        self.dims = rubric_dims(self.rubric, "dialogue", params.dimensions)

    async def _judge(self, state: DialogueState, leaf: TreeNode) -> tuple[str, dict[str, Score], dict[str, Any]]:
        started = time.perf_counter()
        prompt = judge_prompt(self.rubric, self.dims, [("Complete conversation", state.history(leaf.id))])
        outcome = await ask_judge(self.ctx.model(), self.rubric, self.dims, prompt, self.ctx.runtime.store,
                                  cache_tag=f"{self.ctx.name}:{leaf.id}")
        notes = [n for n in (outcome.error, "judge re-asked once" if outcome.reasked else None) if n]
        if outcome.missing:
            notes.append("unreadable: " + ", ".join(outcome.missing))
        prov = self.provenance(started, model=self.ctx.model_names[0], calls=outcome.calls, notes=notes)
        return leaf.id, outcome.scores, prov.model_dump(mode="json")

    async def run(self, inp: GlobalJudgeInput) -> GlobalJudgeOutput:
        state = DialogueState.model_construct(seed=inp.seed, nodes=inp.nodes)
        leaves = complete_leaves(state, self.params.leaves)
        results = await asyncio.gather(*(self._judge(state, leaf) for leaf in leaves))
        return GlobalJudgeOutput(
            dialogue_scores={leaf: scores for leaf, scores, _ in results},
            records={self.ctx.name: {leaf: prov for leaf, _, prov in results}},
        )
