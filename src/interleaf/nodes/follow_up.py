"""FollowUp: a user-simulator model writes the next user message for each surviving branch.

The simulator sees the dialogue so far (text and images) and the situation the first question
was tagged with. It may ask to edit an earlier image ("edit image 2 so that ..."); the message
stays text by default, since the assistant sees every earlier image numbered in the history.
A reply equal to ``stop_token`` ends that branch (no follow-up is set, so the planner stops it).
"""

from __future__ import annotations

import asyncio
import re
import time

from pydantic import BaseModel, ConfigDict, Field, field_validator

from interleaf.models.client import ModelCallError
from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.nodes.expansion import check_template
from interleaf.nodes.prompting import chat_messages, merge_text, transcript_parts
from interleaf.nodes.registry import node_kinds
from interleaf.state import DialogueState, ImagePart, Message, Seed, TextPart, TreeNode

DEFAULT_SYSTEM_PROMPT = """\
You play the user in a conversation with a multimodal assistant that can read, create and edit
images. Situation of this conversation: {situation}.
Read the conversation and write the user's next message: one natural, specific message that
continues the conversation (ask a deeper question, point out what is wrong, request the next step,
or ask to edit an earlier image by its number). Write only the message.
If the conversation has reached a natural end, reply with exactly {stop_token}."""

_FIELDS = frozenset({"situation", "stop_token"})
_LEAD = re.compile(r"^\s*(?:\[?user\]?|you)\s*[:：\]]\s*", re.IGNORECASE)
_IMAGE_N = re.compile(r"\bimage\s*#?\s*(\d{1,4})\b", re.IGNORECASE)


class FollowUpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    stop_token: str = Field(default="[END]", min_length=1)
    attach_referenced_images: bool = Field(
        default=False, description="Attach the earlier images the question names ('image 2') to the message."
    )

    @field_validator("system_prompt")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, _FIELDS)


class FollowUpInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    turn: int


class FollowUpOutput(NodeIO):
    nodes: dict[str, TreeNode]


def clean_question(text: str) -> str:
    """The message without a leading role label or wrapping quotes."""
    body = _LEAD.sub("", text.strip(), count=1).strip()
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "\"'“”":
        body = body[1:-1].strip()
    return body


@node_kinds.register("follow_up")
class FollowUp(NodeKind[FollowUpInput, FollowUpOutput, FollowUpParams]):
    """Sets ``follow_up`` on every alive node of ``turn`` that has none yet."""

    kind = "follow_up"
    Input = FollowUpInput
    Output = FollowUpOutput
    Params = FollowUpParams
    models = "one"

    def _message(self, question: str, history: list[Message]) -> Message:
        images: list[ImagePart] = []
        if self.params.attach_referenced_images:
            earlier = [p for m in history for p in m.parts if isinstance(p, ImagePart)]
            for m in _IMAGE_N.finditer(question):
                n = int(m.group(1))
                if 1 <= n <= len(earlier) and earlier[n - 1] not in images:
                    images.append(ImagePart(image=earlier[n - 1].image, caption=earlier[n - 1].caption))
        return Message(role="user", parts=[*images, TextPart(text=question)])

    async def _ask(self, state: DialogueState, node: TreeNode) -> TreeNode:
        started = time.perf_counter()
        history = state.history(node.id)
        situation = node.tags.get("situation") or state.seed.situation or "open conversation"
        system = self.params.system_prompt.format(situation=situation, stop_token=self.params.stop_token)
        body = merge_text([
            TextPart(text="=== Conversation so far ===\n"),
            *transcript_parts(history),
            TextPart(text="\n\nWrite the user's next message."),
        ])
        request = [Message(role="system", parts=[TextPart(text=system)]), Message(role="user", parts=body)]
        client = self.ctx.model()
        model = self.ctx.model_names[0]
        try:
            messages = await chat_messages(client, request, self.ctx.runtime.store)
            completion = await client.complete(messages, cache_tag=f"{self.ctx.name}:{node.id}")
        except ModelCallError as exc:
            note = f"no follow-up: user simulator failed: {exc.reason}"
            prov = self.provenance(started, model=model, notes=[note])
            return node.model_copy(update={"tags": {**node.tags, "follow_up": "error"},
                                           "provenance": [*node.provenance, prov]})
        question = clean_question(completion.text or "")
        update: dict[str, object] = {}
        if not question or question == self.params.stop_token:
            outcome = "stopped" if question else "empty"
            prov = self.provenance(started, model=model, calls=[completion.call],
                                   notes=[f"no follow-up: user simulator {outcome}"])
            update["tags"] = {**node.tags, "follow_up": outcome}
        else:
            prov = self.provenance(started, model=model, calls=[completion.call])
            update["follow_up"] = self._message(question, history)
        update["provenance"] = [*node.provenance, prov]
        return node.model_copy(update=update)

    async def run(self, inp: FollowUpInput) -> FollowUpOutput:
        state = DialogueState.model_construct(seed=inp.seed, nodes=inp.nodes, turn=inp.turn)
        todo = [n for n in state.alive_at(inp.turn) if n.follow_up is None and "follow_up" not in n.tags]
        done = await asyncio.gather(*(self._ask(state, n) for n in todo))
        return FollowUpOutput(nodes={n.id: n for n in done})
