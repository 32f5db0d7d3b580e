"""SeedAnswers: existing answers carried in a seed become first-turn candidates of the tree.

This lets a judging graph score an imported dataset instead of generating answers: a seed row
``{"id": "p1", "prompt": "...", "answers": [{"text": "...", "images": ["a.png"], "model": "x"}, ...]}``
becomes one prompt and one tree node per answer (ids ``v0.0``, ``v0.1``, ... as the planner
would give them), tagged with the answer's ``model`` and ``tags``, ready for a judge node.
Answer images are copied into the run's store like seed images.

Answers are text and images: the dialogue state has no part type for video, so a video answer
has to be judged through a judge model that is sent the video some other way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interleaf.errors import Location, SeedError
from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.nodes.registry import node_kinds
from interleaf.seeds import load_seed_images
from interleaf.state import ImagePart, Message, Prompt, Seed, TextPart, TreeNode


class SeedAnswer(BaseModel):
    """One imported answer."""

    model_config = ConfigDict(extra="forbid")
    text: str = ""
    images: list[str] = Field(default_factory=list, description="Paths or URLs, as for seed images.")
    model: str | None = Field(default=None, description="Who produced it; becomes the node's 'model' tag.")
    tags: dict[str, Any] = Field(default_factory=dict)


class SeedAnswersParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(default="answers", min_length=1, description="Seed metadata key holding the answers.")
    min_answers: int = Field(default=1, ge=1, description="Fewest answers a seed must carry.")


class SeedAnswersInput(NodeIO):
    seed: Seed


class SeedAnswersOutput(NodeIO):
    prompts: list[Prompt]
    nodes: dict[str, TreeNode]
    turn: int


@node_kinds.register("seed_answers")
class SeedAnswers(NodeKind[SeedAnswersInput, SeedAnswersOutput, SeedAnswersParams]):
    """Seed -> its prompt and one answered first-turn node per answer in ``metadata[field]``."""

    kind = "seed_answers"
    Input = SeedAnswersInput
    Output = SeedAnswersOutput
    Params = SeedAnswersParams

    def _answers(self, seed: Seed) -> list[SeedAnswer]:
        key = self.params.field
        raw = seed.metadata.get(key)
        where = Location(f"seed {seed.id!r}")
        if not isinstance(raw, list):
            got = "nothing" if raw is None else type(raw).__name__
            raise SeedError(f"needs a list of answers under {key!r}, got {got}", where, key)
        if len(raw) < self.params.min_answers:
            raise SeedError(f"has {len(raw)} answer(s) under {key!r}; at least {self.params.min_answers} needed",
                            where, key)
        answers = []
        for i, item in enumerate(raw):
            try:
                answers.append(SeedAnswer.model_validate(item))
            except ValidationError as exc:
                first = exc.errors()[0]
                path = ".".join(str(p) for p in first["loc"])
                raise SeedError(first["msg"], where, f"{key}[{i}]" + (f".{path}" if path else "")) from None
        return answers

    async def run(self, inp: SeedAnswersInput) -> SeedAnswersOutput:
        seed = inp.seed
        answers = self._answers(seed)
        store = self.ctx.runtime.require_store()
        user = Message.user(seed.prompt, await load_seed_images(seed, store))
        nodes: dict[str, TreeNode] = {}
        for i, answer in enumerate(answers):
            # Reuse the seed-image reader (checks, normalising, content addressing) for answer images.
            holder = Seed(id=f"{seed.id} answer {i}", prompt=seed.prompt, images=answer.images)
            images = await load_seed_images(holder, store)
            parts: list[TextPart | ImagePart] = [TextPart(text=answer.text)] if answer.text else []
            parts += [ImagePart(image=ref) for ref in images]
            tags = {**answer.tags, "source": "seed", "seed_id": seed.id}
            if answer.model is not None:
                tags["model"] = answer.model
            node_id = f"v0.{i}"
            nodes[node_id] = TreeNode(id=node_id, parent=None, turn=0, candidate=i, user=user,
                                      assistant=Message(role="assistant", parts=parts), tags=tags)
        prompt = Prompt(variant=0, message=user, situation=seed.situation, tags={"expansion": "seed"})
        return SeedAnswersOutput(prompts=[prompt], nodes=nodes, turn=0)
