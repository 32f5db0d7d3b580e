r"""CrucialStep: a judge names a dialogue's crucial step; a grader compares it with a person's.

InterMT-Bench's Crucial Step Recognition task, as two model calls per complete dialogue that a
person labelled (a ``human_dialogue_scores`` record of ``reference`` with a reason):

1. the **judge** (``models[0]``) reads the whole conversation and answers in the usual format,
   the reason naming the crucial step(s) of the user's intent and whether the assistant
   fulfilled them::

       [[crucial_step_recognition, the route had to be planned before packing; done in turn 2, \boxed{3}]]

   Its score lands in ``dialogue_scores`` like any dialogue-level score (so it can be compared
   with the person's score too);
2. the **grader** (``models[1]``, default the judge itself) reads the person's reason (the
   reference) and the judge's answer, and grades the answer with the ``grade_rubric``
   (1-5, ``intermt-step-grade``).

Everything lands in ``records[<node>][<leaf id>]``: ``answer`` (the judge's reason, or its raw
text when the format was not followed: the grader can still read it; ``answer_parsed`` says
which), ``grade`` (None when the grader's answer is unreadable), ``grade_reason``,
``reference`` and both provenance records.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import SpecError
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import ask_judge, judge_prompt, node_rubric, rubric_dims
from interleaf.nodes.registry import node_kinds
from interleaf.state import DialogueState, HumanScore, Message, Score, Seed, TextPart, TreeNode

_ANSWER = (
    "\n\nIn the reason of your answer, name the crucial step (or steps) of what the user wanted across the "
    "conversation, and say whether the assistant fulfilled each of them."
)


class CrucialStepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric: str = Field(default="intermt-global", description="Rubric holding the judge's dimension.")
    dimension: str = Field(default="crucial_step_recognition", description="The dialogue-level dimension judged.")
    reference: str = Field(default="crucial_step_recognition",
                           description="The human_dialogue_scores dimension whose reason is the reference.")
    grade_rubric: str = Field(default="intermt-step-grade", description="Rubric the grader grades with.")


class CrucialStepInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    human_dialogue_scores: dict[str, list[HumanScore]]


class CrucialStepOutput(NodeIO):
    dialogue_scores: dict[str, dict[str, Score]]
    records: dict[str, Any]


@node_kinds.register("crucial_step")
class CrucialStep(NodeKind[CrucialStepInput, CrucialStepOutput, CrucialStepParams]):
    """Per labelled dialogue: the judge's crucial-step answer, then the grader's 1-5 grade of it."""

    kind = "crucial_step"
    Input = CrucialStepInput
    Output = CrucialStepOutput
    Params = CrucialStepParams
    models = "many"

    def __init__(self, ctx: NodeContext, params: CrucialStepParams):
        super().__init__(ctx, params)
        if not 1 <= len(ctx.model_names) <= 2:
            raise SpecError("crucial_step takes models: [judge] or [judge, grader]", None, "models")
        self.rubric = node_rubric(ctx, params.rubric)
        self.dims = rubric_dims(self.rubric, "dialogue", [params.dimension], "dimension")
        self.grade_rubric = node_rubric(ctx, params.grade_rubric, "grade_rubric")
        self.grade_dims = rubric_dims(self.grade_rubric, "dialogue", None, "grade_rubric")

    def _reference(self, scores: list[HumanScore]) -> str | None:
        found = [s.reason.strip() for s in scores if s.dimension == self.params.reference and s.reason.strip()]
        return found[0] if found else None

    async def _one(self, state: DialogueState, leaf: TreeNode, reference: str) -> tuple[str, Score, dict[str, Any]]:
        started = time.perf_counter()
        prompt = judge_prompt(self.rubric, self.dims, [("Complete conversation", state.history(leaf.id))])
        system = prompt[0]
        prompt[0] = system.model_copy(update={"parts": [TextPart(text=system.text + _ANSWER)]})
        judge = self.ctx.model(0)
        outcome = await ask_judge(judge, self.rubric, self.dims, prompt, self.ctx.runtime.store,
                                  cache_tag=f"{self.ctx.name}:{leaf.id}")
        score = outcome.scores[self.params.dimension]
        parsed = score.value is not None
        # An answer that broke the format still says what it says: the grader reads its raw text.
        answer = score.reason if parsed else (score.raw or "")
        judge_prov = self.provenance(started, model=self.ctx.model_names[0], calls=outcome.calls,
                                     notes=[n for n in (outcome.error,) if n])
        grade: float | None = None
        grade_reason = ""
        grader_prov = None
        if answer.strip() and outcome.error is None:
            started = time.perf_counter()
            grader_index = 1 if len(self.ctx.model_names) > 1 else 0
            grade_prompt = judge_prompt(self.grade_rubric, self.grade_dims, [
                ("Reference answer (written by a person)", [Message(role="user", parts=[TextPart(text=reference)])]),
                ("Answer to grade", [Message(role="assistant", parts=[TextPart(text=answer)])]),
            ])
            graded = await ask_judge(self.ctx.model(grader_index), self.grade_rubric, self.grade_dims, grade_prompt,
                                     self.ctx.runtime.store, cache_tag=f"{self.ctx.name}:{leaf.id}:grade")
            first = graded.scores[self.grade_dims[0].name]
            grade, grade_reason = first.value, first.reason if first.value is not None else (first.raw or "")
            grader_prov = self.provenance(started, model=self.ctx.model_names[grader_index], calls=graded.calls,
                                          notes=["grader", *(n for n in (graded.error,) if n)])
        record = {
            "answer": answer, "answer_parsed": parsed, "grade": grade, "grade_reason": grade_reason,
            "reference": reference, "turns": leaf.turn + 1,
            "provenance": judge_prov.model_dump(mode="json"),
            "grader_provenance": grader_prov.model_dump(mode="json") if grader_prov is not None else None,
        }
        return leaf.id, score, record

    async def run(self, inp: CrucialStepInput) -> CrucialStepOutput:
        state = DialogueState.model_construct(seed=inp.seed, nodes=inp.nodes)
        todo = []
        for leaf_id, scores in sorted(inp.human_dialogue_scores.items()):
            reference = self._reference(scores)
            if leaf_id in inp.nodes and reference is not None:
                todo.append((inp.nodes[leaf_id], reference))
        results = await asyncio.gather(*(self._one(state, leaf, ref) for leaf, ref in todo))
        return CrucialStepOutput(
            dialogue_scores={leaf: {self.params.dimension: score} for leaf, score, _ in results},
            records={self.ctx.name: {leaf: record for leaf, _, record in results}},
        )
