"""ConsistencyCheck: score this turn's candidates with a turn-level rubric.

Cheap deterministic checks run first and short-circuit: an empty answer, an image marker
left unfulfilled (a promised image that never came), an image that is missing from the store
or does not decode, and a verbatim duplicate of an earlier sibling. Such a candidate is marked
``failed`` with the reason and scored at the bottom of every scale, without a model call.
The rest go to the judge model concurrently.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.models.markers import parse_markers
from interleaf.models.messages import load_image_bytes
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import ask_judge, history_key, judge_prompt, node_rubric, rubric_dims
from interleaf.nodes.registry import node_kinds
from interleaf.state import DialogueState, ImagePart, Score, Seed, TreeNode

Check = Literal["empty", "markers", "images", "duplicate"]
ALL_CHECKS: tuple[Check, ...] = ("empty", "markers", "images", "duplicate")
#: Node tag the assistant turn may set to the marker texts it could not turn into images.
UNFULFILLED_TAG = "unfulfilled_markers"


class ConsistencyCheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric: str = Field(default="intermt-local", description="Built-in rubric name or YAML path.")
    dimensions: list[str] | None = Field(
        default=None, min_length=1, description="Score only these turn-level dimensions (default: all)."
    )
    checks: list[Check] = Field(default_factory=lambda: list(ALL_CHECKS),
                                description="Deterministic checks to run before the judge.")


class ConsistencyCheckInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    turn: int


class ConsistencyCheckOutput(NodeIO):
    nodes: dict[str, TreeNode]


def _fingerprint(node: TreeNode) -> tuple[str, tuple[str, ...]] | None:
    if node.assistant is None:
        return None
    return " ".join(node.assistant.text.split()).lower(), tuple(i.sha256 for i in node.assistant.images)


def _decodes(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


@node_kinds.register("consistency_check")
class ConsistencyCheck(NodeKind[ConsistencyCheckInput, ConsistencyCheckOutput, ConsistencyCheckParams]):
    """Deterministic checks, then a judge model scores each unscored alive candidate of ``turn``."""

    kind = "consistency_check"
    Input = ConsistencyCheckInput
    Output = ConsistencyCheckOutput
    Params = ConsistencyCheckParams
    models = "one"

    def __init__(self, ctx: NodeContext, params: ConsistencyCheckParams):
        super().__init__(ctx, params)
        self.rubric = node_rubric(self.ctx, params.rubric)
        self.dims = rubric_dims(self.rubric, "turn", params.dimensions)

    async def _image_problem(self, node: TreeNode) -> str | None:
        assert node.assistant is not None
        store = self.ctx.runtime.store
        for n, part in enumerate(p for p in node.assistant.parts if isinstance(p, ImagePart)):
            try:
                data = await load_image_bytes(part.image, store)
            except (FileNotFoundError, OSError, ValueError) as exc:
                return f"image {n + 1} ({part.image.uri}) cannot be read: {exc}"
            if not await asyncio.to_thread(_decodes, data):
                return f"image {n + 1} ({part.image.uri}) does not decode as an image"
        return None

    @staticmethod
    def _marker_problem(node: TreeNode) -> str | None:
        assert node.assistant is not None
        unfulfilled = node.tags.get(UNFULFILLED_TAG) or []
        left = [m.raw for m in parse_markers(node.assistant.text)]
        missing = [*unfulfilled, *left]
        if missing:
            return f"{len(missing)} image marker(s) promised an image that was not produced: {missing[0]!r}"
        return None

    async def _deterministic(self, node: TreeNode, siblings: list[TreeNode]) -> str | None:
        checks = set(self.params.checks)
        if node.assistant is None or (not node.assistant.text.strip() and not node.assistant.images):
            return "empty answer" if "empty" in checks else None
        if "markers" in checks and (problem := self._marker_problem(node)):
            return problem
        if "images" in checks and (problem := await self._image_problem(node)):
            return problem
        if "duplicate" in checks:
            mine = _fingerprint(node)
            for other in siblings:
                if other.id < node.id and _fingerprint(other) == mine:
                    return f"duplicate of sibling {other.id}"
        return None

    async def _score(self, state: DialogueState, node: TreeNode) -> TreeNode:
        started = time.perf_counter()
        key = history_key(node)
        siblings = [n for n in state.nodes.values() if n.id != node.id and history_key(n) == key]
        problem = await self._deterministic(node, siblings)
        if problem is not None:
            scores = {d.name: Score(value=d.scale.low, reason=f"failed check: {problem}") for d in self.dims}
            prov = self.provenance(started, notes=[f"failed check: {problem}"])
            return node.model_copy(update={
                "status": "failed", "reason": problem, "scores": scores,
                "provenance": [*node.provenance, prov],
            })
        assert node.assistant is not None
        prompt = judge_prompt(self.rubric, self.dims, [
            ("Conversation so far", state.history(node.parent)),
            ("Candidate answer to the last user message", [node.user, node.assistant]),
        ])
        outcome = await ask_judge(self.ctx.model(), self.rubric, self.dims, prompt, self.ctx.runtime.store,
                                  cache_tag=f"{self.ctx.name}:{node.id}")
        notes = []
        if outcome.reasked:
            notes.append("judge re-asked once")
        if outcome.missing:
            notes.append("unreadable: " + ", ".join(outcome.missing))
        prov = self.provenance(started, model=self.ctx.model_names[0], calls=outcome.calls, notes=notes)
        update: dict[str, object] = {"scores": outcome.scores, "provenance": [*node.provenance, prov]}
        if outcome.error is not None:
            update.update(status="failed", reason=outcome.error)
        return node.model_copy(update=update)

    async def run(self, inp: ConsistencyCheckInput) -> ConsistencyCheckOutput:
        state = DialogueState.model_construct(seed=inp.seed, nodes=inp.nodes, turn=inp.turn)
        todo = [n for n in state.alive_at(inp.turn) if not n.scores]
        done = await asyncio.gather(*(self._score(state, n) for n in todo))
        return ConsistencyCheckOutput(nodes={n.id: n for n in done})
