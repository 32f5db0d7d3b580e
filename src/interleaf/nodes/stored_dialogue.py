"""StoredDialogue: a dialogue already in the run's store (an import) becomes this seed's tree.

Benchmarks judge data they did not generate: ``interleaf bench intermt`` imports a released
file into a run folder inside the bench run (``source/``), then gives each item a seed that
names the stored dialogue::

    {"id": "d1", "prompt": "...", "bench": {"source": "source/dialogues/d1.json", "blobs": "source"}}

This node reads that :class:`~interleaf.state.DialogueState` and returns its prompts, tree,
people's labels (``human_scores``, ``human_dialogue_scores``) and, by default, people's
preference pairs, ready for a judge node. Images are copied from ``<blobs>/blobs/...`` into the
run's own blobs (content-addressed, so the run still resolves them after ``mv``). Judge scores
stored with the dialogue are dropped unless ``keep_judge_scores``: the judge under test scores
afresh. Like :mod:`interleaf.nodes.seed_answers`, nothing here calls a model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interleaf.errors import Location, SeedError
from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.nodes.registry import node_kinds
from interleaf.run.reader import image_extension
from interleaf.state import (
    DialogueState,
    HumanScore,
    ImagePart,
    ImageRef,
    Message,
    PreferencePair,
    Prompt,
    Seed,
    TreeNode,
)
from interleaf.storage.store import ObjectStore, blob_key, check_key


class StoredDialogueParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(default="bench", min_length=1,
                       description="Seed metadata key holding {source: store key of the dialogue, blobs: prefix}.")
    pairs: Literal["human", "all", "none"] = Field(
        default="human", description="Which stored preference pairs to keep: people's, all, or none.")
    keep_judge_scores: bool = Field(default=False, description="Keep the judge scores stored with the dialogue.")


class StoredDialogueInput(NodeIO):
    seed: Seed


class StoredDialogueOutput(NodeIO):
    prompts: list[Prompt]
    nodes: dict[str, TreeNode]
    turn: int
    human_dialogue_scores: dict[str, list[HumanScore]]
    pairs: list[PreferencePair]
    records: dict[str, Any]


def _remap(message: Message | None, refs: dict[str, ImageRef]) -> Message | None:
    if message is None:
        return None
    parts = [p.model_copy(update={"image": refs[p.image.sha256]}) if isinstance(p, ImagePart) else p
             for p in message.parts]
    return message.model_copy(update={"parts": parts})


def _messages(state: DialogueState) -> list[Message]:
    out = [p.message for p in state.prompts]
    for node in state.nodes.values():
        out += [m for m in (node.user, node.assistant, node.follow_up) if m is not None]
    return out


@node_kinds.register("stored_dialogue")
class StoredDialogue(NodeKind[StoredDialogueInput, StoredDialogueOutput, StoredDialogueParams]):
    """Seed -> the stored dialogue it names: prompts, tree, people's labels and pairs."""

    kind = "stored_dialogue"
    Input = StoredDialogueInput
    Output = StoredDialogueOutput
    Params = StoredDialogueParams

    def _where(self, seed: Seed) -> tuple[str, str]:
        ref = seed.metadata.get(self.params.field)
        where = Location(f"seed {seed.id!r}")
        if not isinstance(ref, dict) or not isinstance(ref.get("source"), str):
            raise SeedError(f"needs {{'source': <store key>}} under {self.params.field!r}", where, self.params.field)
        blobs = ref.get("blobs", "")
        if not isinstance(blobs, str):
            raise SeedError("must be a store prefix", where, f"{self.params.field}.blobs")
        try:
            # Keys come from a seeds file: never let one leave the run's store root.
            return check_key(ref["source"]), check_key(blobs) if blobs else ""
        except ValueError as exc:
            raise SeedError(str(exc), where, f"{self.params.field}.source") from None

    async def _load(self, store: ObjectStore, seed: Seed, key: str) -> DialogueState:
        raw = await store.aget_json_or_none(key)
        if raw is None:
            raise SeedError(f"no stored dialogue at {store.url(key)}", Location(f"seed {seed.id!r}"),
                            f"{self.params.field}.source")
        try:
            return DialogueState.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise SeedError(f"stored dialogue {key} is not a DialogueState: {first['msg']}",
                            Location(f"seed {seed.id!r}"), ".".join(str(p) for p in first["loc"])) from None

    async def _copy_images(self, store: ObjectStore, state: DialogueState, blobs: str) -> dict[str, ImageRef]:
        refs: dict[str, ImageRef] = {}
        for message in _messages(state):
            for ref in message.images:
                if ref.sha256 in refs:
                    continue
                ext = image_extension(ref)
                source = f"{blobs}/{blob_key(ref.sha256, ext)}" if blobs else blob_key(ref.sha256, ext)
                data = await store.aget_bytes(source)
                key, sha = await store.aput_blob(data, ext)
                refs[ref.sha256] = ref.model_copy(update={"uri": store.url(key), "sha256": sha})
        return refs

    async def run(self, inp: StoredDialogueInput) -> StoredDialogueOutput:
        store = self.ctx.runtime.require_store()
        key, blobs = self._where(inp.seed)
        stored = await self._load(store, inp.seed, key)
        try:
            refs = await self._copy_images(store, stored, blobs)
        except FileNotFoundError as exc:
            raise SeedError(f"an image of the stored dialogue is missing: {exc}", Location(f"seed {inp.seed.id!r}"),
                            f"{self.params.field}.blobs") from None
        nodes: dict[str, TreeNode] = {}
        for node in stored.nodes.values():
            update: dict[str, Any] = {"user": _remap(node.user, refs), "assistant": _remap(node.assistant, refs),
                                      "follow_up": _remap(node.follow_up, refs), "provenance": []}
            if not self.params.keep_judge_scores:
                update["scores"] = {}
            nodes[node.id] = node.model_copy(update=update)
        prompts = [p.model_copy(update={"message": _remap(p.message, refs)}) for p in stored.prompts]
        pairs = [p for p in stored.pairs
                 if self.params.pairs == "all" or (self.params.pairs == "human" and p.decided_by == "human")]
        return StoredDialogueOutput(
            prompts=prompts, nodes=nodes, turn=max((n.turn for n in nodes.values()), default=0),
            human_dialogue_scores=dict(stored.human_dialogue_scores), pairs=pairs,
            records={self.ctx.name: {"source": key, "nodes": len(nodes), "pairs": len(pairs)}},
        )
