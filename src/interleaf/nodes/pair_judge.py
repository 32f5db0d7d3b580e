r"""PairJudge: a judge model says, per dimension, which of two answers is better.

For each preference pair already in the state (by default the people's ones, ``decided_by:
human``, as an import of InterMT-Bench's pair files gives them) the judge sees the shared
history and both sides as ``ResponseA`` / ``ResponseB`` and answers one line per dimension::

    [[text_quality, A answers the question, \boxed{ResponseA}]]

Its verdict becomes a second :class:`~interleaf.state.PreferencePair` on the same two nodes,
``id = "<pair id>/judge"``, ``decided_by="judge"``, with the sides named as in the people's
pair (1 = ``response_1``), so the two can be compared dimension by dimension. A local pair
is judged on the turn-level rubric (history, question, two answers), a global pair on the
dialogue-level rubric (shared history, two continuations).

``order: balanced`` shows ``response_2`` first for half of the pairs (fixed by the pair id),
so a judge that prefers whatever comes first cannot look good by position alone. Dimensions
still unreadable after one re-ask are left out of the judge's ``preference`` and listed in
``records[<node>][<pair id>]["unparsed"]``: counted, never guessed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.models.client import ModelCallError
from interleaf.models.judge_format import choice_instructions, parse_choice_output
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import node_rubric, rubric_dims
from interleaf.nodes.prompting import chat_messages, merge_text, transcript_parts
from interleaf.nodes.registry import node_kinds
from interleaf.state import DialogueState, ImagePart, Message, ModelCall, PreferencePair, Seed, TextPart, TreeNode

#: Suffix of the id of the judge's pair made from a people's pair.
JUDGE_PAIR_SUFFIX = "/judge"

_TASK = (
    "You compare two assistant responses in the same multi-turn, interleaved text-and-image "
    "conversation. The criteria below are written for scoring one answer; use them to decide which "
    "response is better on each dimension. Do not let the order in which the responses are shown, "
    "or their length, sway you."
)


class PairJudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric_local: str = Field(default="intermt-local", description="Rubric of local (one-turn) pairs.")
    rubric_global: str = Field(default="intermt-global", description="Rubric of global (whole-dialogue) pairs.")
    dimensions_local: list[str] | None = Field(default=None, min_length=1)
    dimensions_global: list[str] | None = Field(default=None, min_length=1)
    pairs: Literal["human", "all"] = Field(default="human", description="Which pairs of the state to judge.")
    order: Literal["given", "balanced"] = Field(
        default="balanced", description="given: response_1 first; balanced: swapped for half the pairs (by id).")


class PairJudgeInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    pairs: list[PreferencePair]


class PairJudgeOutput(NodeIO):
    pairs: list[PreferencePair]
    records: dict[str, Any]


def swapped(pair_id: str) -> bool:
    """Whether ``order: balanced`` shows this pair's ``response_2`` first (half the ids, fixed).

    >>> [swapped(i) for i in ("p1", "p2", "p3", "p4")].count(True) in range(5)
    True
    """
    return hashlib.sha256(pair_id.encode("utf-8")).digest()[0] % 2 == 1


def _majority(choices: dict[str, int]) -> int:
    ones = sum(1 for c in choices.values() if c == 1)
    twos = sum(1 for c in choices.values() if c == 2)
    return 1 if ones > twos else 2 if twos > ones else 0


@node_kinds.register("pair_judge")
class PairJudge(NodeKind[PairJudgeInput, PairJudgeOutput, PairJudgeParams]):
    """Judges each (people's) preference pair of the state; adds the judge's pair beside it."""

    kind = "pair_judge"
    Input = PairJudgeInput
    Output = PairJudgeOutput
    Params = PairJudgeParams
    models = "one"

    def __init__(self, ctx: NodeContext, params: PairJudgeParams):
        super().__init__(ctx, params)
        self.rubrics = {
            "local": node_rubric(ctx, params.rubric_local, "rubric_local"),
            "global": node_rubric(ctx, params.rubric_global, "rubric_global"),
        }
        self.dims = {
            "local": rubric_dims(self.rubrics["local"], "turn", params.dimensions_local, "dimensions_local"),
            "global": rubric_dims(self.rubrics["global"], "dialogue", params.dimensions_global, "dimensions_global"),
        }

    def _sections(self, state: DialogueState, pair: PreferencePair, first: str, second: str) -> list[
            tuple[str, Sequence[Message]]]:
        a, b = state.nodes[first], state.nodes[second]
        if pair.level == "local":
            history = state.history(a.parent)
            out: list[tuple[str, Sequence[Message]]] = [("Conversation so far", history)] if history else []
            out.append(("Last user message", [a.user]))
            out.append(("ResponseA", [a.assistant] if a.assistant else []))
            out.append(("ResponseB", [b.assistant] if b.assistant else []))
            return out
        path_a, path_b = state.path(a.id), state.path(b.id)
        shared = 0
        while shared < min(len(path_a), len(path_b)) - 1 and path_a[shared].id == path_b[shared].id:
            shared += 1
        common = state.history(path_a[shared - 1].id) if shared else []
        out = [("Shared conversation", common)] if common else []
        for label, tail in (("ResponseA (the conversation from here on)", path_a[shared:]),
                            ("ResponseB (the conversation from here on)", path_b[shared:])):
            msgs: list[Message] = []
            for n in tail:
                msgs.append(n.user)
                if n.assistant is not None:
                    msgs.append(n.assistant)
            out.append((label, msgs))
        return out

    def _prompt(self, level: str, sections: list[tuple[str, Sequence[Message]]]) -> list[Message]:
        rubric, dims = self.rubrics[level], self.dims[level]
        parts: list[TextPart | ImagePart] = []
        for title, msgs in sections:
            parts.append(TextPart(text=f"\n=== {title} ===\n"))
            parts.extend(transcript_parts(msgs))
        parts.append(TextPart(text="\n\n" + choice_instructions([d.name for d in dims])))
        return [Message(role="system", parts=[TextPart(text=_TASK + "\n\n" + rubric.criteria_text(dims))]),
                Message(role="user", parts=merge_text(parts))]

    async def _ask(self, level: str, prompt: list[Message], cache_tag: str) -> dict[str, Any]:
        names = [d.name for d in self.dims[level]]
        client = self.ctx.model()
        messages = await chat_messages(client, prompt, self.ctx.runtime.store)
        read: dict[str, tuple[int, str]] = {}
        calls: list[ModelCall] = []
        texts: list[str] = []
        error = None
        reasked = False
        for attempt in range(2):
            try:
                completion = await client.complete(messages, cache_tag=f"{cache_tag}:pair{attempt}")
            except ModelCallError as exc:
                error = f"judge call failed: {exc.reason}"
                break
            calls.append(completion.call)
            text = completion.text or ""
            texts.append(text)
            for dim, value in parse_choice_output(text, names).choices.items():
                read.setdefault(dim, value)
            missing = [n for n in names if n not in read]
            if not missing or attempt == 1:
                break
            reasked = True
            messages = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": (
                "Your answer could not be read for: " + ", ".join(missing) + ". Answer again for every "
                "dimension, using exactly the format below.\n\n" + choice_instructions(names))}]
        return {"read": read, "calls": calls, "raw": "\n---\n".join(texts), "error": error, "reasked": reasked,
                "unparsed": [n for n in names if n not in read]}

    async def _judge(self, state: DialogueState, pair: PreferencePair) -> tuple[PreferencePair, dict[str, Any]]:
        started = time.perf_counter()
        swap = self.params.order == "balanced" and swapped(pair.id)
        first, second = (pair.response_2, pair.response_1) if swap else (pair.response_1, pair.response_2)
        prompt = self._prompt(pair.level, self._sections(state, pair, first, second))
        asked = await self._ask(pair.level, prompt, f"{self.ctx.name}:{pair.id}")
        # Sides as the people's pair names them: 1 = response_1, whichever was shown first.
        flip = {1: 2, 2: 1, 0: 0}
        choices = {dim: (flip[c] if swap else c) for dim, (c, _) in asked["read"].items()}
        reasons = {dim: r for dim, (_, r) in asked["read"].items() if r}
        judged = PreferencePair(
            id=pair.id + JUDGE_PAIR_SUFFIX, level=pair.level, turn=pair.turn, history=pair.history,
            response_1=pair.response_1, response_2=pair.response_2, preference=dict(sorted(choices.items())),
            overall=_majority(choices), reasons=dict(sorted(reasons.items())), decided_by="judge",
        )
        notes = [n for n in (asked["error"], "judge re-asked once" if asked["reasked"] else None) if n]
        if asked["unparsed"]:
            notes.append("unreadable: " + ", ".join(asked["unparsed"]))
        prov = self.provenance(started, model=self.ctx.model_names[0], calls=asked["calls"], notes=notes)
        record = {"judge_pair": judged.id, "swapped": swap, "unparsed": asked["unparsed"], "error": asked["error"],
                  "reasked": asked["reasked"], "raw": asked["raw"], "provenance": prov.model_dump(mode="json")}
        return judged, record

    async def run(self, inp: PairJudgeInput) -> PairJudgeOutput:
        state = DialogueState.model_construct(seed=inp.seed, nodes=inp.nodes, pairs=inp.pairs)
        todo = [p for p in inp.pairs if not p.id.endswith(JUDGE_PAIR_SUFFIX)
                and (self.params.pairs == "all" or p.decided_by == "human")
                and p.response_1 in inp.nodes and p.response_2 in inp.nodes]
        results = await asyncio.gather(*(self._judge(state, p) for p in todo))
        return PairJudgeOutput(pairs=[r[0] for r in results],
                               records={self.ctx.name: {p.id: r[1] for p, r in zip(todo, results, strict=True)}})
