"""TurnJudge: score every answered turn of the tree with a turn-level rubric, each in its history.

``consistency_check`` judges the candidates of the turn being grown and fails broken ones;
a benchmark instead scores every turn of a finished dialogue as it is. This node sends each
answered node to the judge with the conversation before it, exactly as ``consistency_check``
words it (same rubric, same prompt, one re-ask for unreadable dimensions), so what a benchmark
measures is the judge as the pipeline uses it. Nothing is marked failed: an unreadable answer
stays a ``Score`` with ``value=None`` and the judge's raw text, to be counted, never guessed.

Example (the score task of InterMT-Bench)::

    rate_turns:
      kind: turn_judge
      model: judge
      params: {rubric: intermt-local}
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, ConfigDict, Field

from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import ask_judge, judge_prompt, node_rubric, rubric_dims
from interleaf.nodes.registry import node_kinds
from interleaf.state import DialogueState, Seed, TreeNode


class TurnJudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric: str = Field(default="intermt-local", description="Built-in rubric name or YAML path.")
    dimensions: list[str] | None = Field(
        default=None, min_length=1, description="Score only these turn-level dimensions (default: all)."
    )


class TurnJudgeInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]


class TurnJudgeOutput(NodeIO):
    nodes: dict[str, TreeNode]


@node_kinds.register("turn_judge")
class TurnJudge(NodeKind[TurnJudgeInput, TurnJudgeOutput, TurnJudgeParams]):
    """A judge model scores each answered, not yet scored node of the tree (all turns at once)."""

    kind = "turn_judge"
    Input = TurnJudgeInput
    Output = TurnJudgeOutput
    Params = TurnJudgeParams
    models = "one"

    def __init__(self, ctx: NodeContext, params: TurnJudgeParams):
        super().__init__(ctx, params)
        self.rubric = node_rubric(self.ctx, params.rubric)
        self.dims = rubric_dims(self.rubric, "turn", params.dimensions)

    async def _score(self, state: DialogueState, node: TreeNode) -> TreeNode:
        started = time.perf_counter()
        assert node.assistant is not None
        prompt = judge_prompt(self.rubric, self.dims, [
            ("Conversation so far", state.history(node.parent)),
            ("Candidate answer to the last user message", [node.user, node.assistant]),
        ])
        outcome = await ask_judge(self.ctx.model(), self.rubric, self.dims, prompt, self.ctx.runtime.store,
                                  cache_tag=f"{self.ctx.name}:{node.id}")
        notes = [n for n in (outcome.error, "judge re-asked once" if outcome.reasked else None) if n]
        if outcome.missing:
            notes.append("unreadable: " + ", ".join(outcome.missing))
        prov = self.provenance(started, model=self.ctx.model_names[0], calls=outcome.calls, notes=notes)
        return node.model_copy(update={"scores": outcome.scores, "provenance": [*node.provenance, prov]})

    async def run(self, inp: TurnJudgeInput) -> TurnJudgeOutput:
        state = DialogueState.model_construct(seed=inp.seed, nodes=inp.nodes)
        todo = sorted((n for n in inp.nodes.values() if n.assistant is not None and not n.scores
                       and n.status != "failed"), key=lambda n: n.id)
        done = await asyncio.gather(*(self._score(state, n) for n in todo))
        return TurnJudgeOutput(nodes={n.id: n for n in done})
