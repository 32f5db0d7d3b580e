"""Typed dialogue state shared by every node of a graph.

One LangGraph thread holds one seed's dialogue *tree*. Nodes return partial
updates; the reducers below merge them, so candidates answered in parallel
(LangGraph ``Send`` fan-out) land in the same tree without clobbering each other.

Images are always references (:class:`ImageRef`), never bytes, so state stays
small and JSON round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(_Model):
    """A content-addressed image in the object store."""

    uri: str
    sha256: str
    width: int
    height: int
    mime: str = "image/png"


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class ImagePart(_Model):
    type: Literal["image"] = "image"
    image: ImageRef
    caption: str | None = None
    marker: str | None = Field(
        default=None, description="The inline marker text this image replaced, kept verbatim."
    )


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Model):
    """An interleaved message: text and image parts in order."""

    role: Literal["system", "user", "assistant"]
    parts: list[Part] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImageRef]:
        return [p.image for p in self.parts if isinstance(p, ImagePart)]

    @classmethod
    def user(cls, text: str, images: list[ImageRef] | None = None) -> Message:
        parts: list[TextPart | ImagePart] = [ImagePart(image=i) for i in images or []]
        parts.append(TextPart(text=text))
        return cls(role="user", parts=parts)


class ModelCall(_Model):
    """Accounting for one completion call: its requests (``attempts``), or a cache hit.

    ``error`` is set on a call that gave up; such calls are never in a dialogue's provenance,
    only in the run's totals (see :mod:`interleaf.run.totals`).
    """

    model: str
    provider_model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    latency_s: float = 0.0
    attempts: int = 1
    cached: bool = False
    error: str | None = None


class ToolCall(_Model):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool = True
    error: str | None = None
    output: dict[str, Any] | None = None
    seconds: float = 0.0


class Provenance(_Model):
    """Who made a tree node (or a score) and what it cost."""

    node: str
    kind: str
    model: str | None = None
    calls: list[ModelCall] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)


class Score(_Model):
    """One rubric dimension's score; ``value`` is None when the judge gave none."""

    value: float | None = Field(default=None, allow_inf_nan=False)
    reason: str = ""
    raw: str | None = None


class HumanScore(_Model):
    """One person's score of one rubric dimension, kept next to the judge's (never replacing it).

    ``origin`` says where it came from (``"label-studio:<project>/<task>"``,
    ``"import:intermt"``); two annotators of one item are two records.

    >>> HumanScore(dimension="helpfulness", value=2, annotator="ann-1", reason="answers the question").value
    2.0
    """

    dimension: str
    value: float | None = Field(default=None, allow_inf_nan=False)
    reason: str = ""
    annotator: str
    at: float | None = None
    origin: str = ""


NodeStatus = Literal["alive", "pruned", "failed"]


class TreeNode(_Model):
    """One assistant candidate and the user message it answers.

    ``id`` encodes the path from the root (``v0.1.2`` = prompt variant 0,
    candidate 1 at turn 0, candidate 2 at turn 1), so ids are deterministic
    and a resumed run produces the same tree.
    """

    id: str
    parent: str | None = None
    turn: int = 0
    candidate: int = 0
    user: Message
    assistant: Message | None = None
    status: NodeStatus = "alive"
    reason: str | None = None
    scores: dict[str, Score] = Field(default_factory=dict)
    human_scores: list[HumanScore] = Field(default_factory=list)
    follow_up: Message | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    provenance: list[Provenance] = Field(default_factory=list)


class Seed(_Model):
    """One input row: ``id``, ``prompt``, optional ``images`` and ``situation``; the rest is metadata."""

    id: str
    prompt: str
    images: list[str] = Field(default_factory=list)
    situation: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Prompt(_Model):
    """A first user message made from a seed (prompt expansion)."""

    variant: int
    message: Message
    situation: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)


class CandidateTask(_Model):
    """Work for one assistant candidate: answer ``user`` under ``parent``."""

    node_id: str
    parent: str | None
    turn: int
    candidate: int
    user: Message
    model: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)


class PreferencePair(_Model):
    """A chosen/rejected pair with per-dimension preference (1, 2, or 0 for a tie)."""

    id: str
    level: Literal["local", "global"]
    turn: int | None = None
    history: str | None = Field(default=None, description="Parent node id shared by both sides.")
    response_1: str
    response_2: str
    preference: dict[str, int] = Field(default_factory=dict)
    overall: int = 0
    margin: float = 0.0
    reasons: dict[str, str] = Field(default_factory=dict)
    #: Whose scores decided the preference: the model judge's, or people's (annotations, imports).
    decided_by: Literal["judge", "human"] = "judge"


DialogueStatus = Literal["running", "done", "failed"]


def merge_by_key(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: entries of ``right`` replace those of ``left`` with the same key."""
    if not left:
        return dict(right or {})
    if not right:
        return left
    merged = dict(left)
    merged.update(right)
    return merged


def append_unique(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    """Reducer: append items whose ``id`` is not present yet (idempotent on replay)."""
    out = list(left or [])
    seen = {getattr(item, "id", None) for item in out}
    for item in right or []:
        key = getattr(item, "id", None)
        if key is None or key not in seen:
            out.append(item)
            seen.add(key)
    return out


class Tree:
    """A read-only view of a dialogue tree's nodes: paths, histories, leaves and dialogue ends.

    Nodes that receive ``nodes`` alone use ``Tree(inp.nodes)``; a whole state has
    :meth:`DialogueState.tree`.

    Example:
        >>> root = TreeNode(id="v0", user=Message.user("hi"))
        >>> Tree({"v0": root}).path("v0")[0].id
        'v0'
    """

    __slots__ = ("nodes",)

    def __init__(self, nodes: dict[str, TreeNode]):
        self.nodes = nodes

    def children(self, parent: str | None) -> list[TreeNode]:
        return sorted(
            (n for n in self.nodes.values() if n.parent == parent), key=lambda n: n.id
        )

    def path(self, node_id: str) -> list[TreeNode]:
        """Root-to-node chain of tree nodes.

        Raises ``KeyError`` naming the missing node when a parent link dangles, and
        ``ValueError`` when parent links form a cycle (a corrupt or hand-edited state).
        """
        chain: list[TreeNode] = []
        seen: set[str] = set()
        cur: str | None = node_id
        while cur is not None:
            if cur in seen:
                raise ValueError(f"tree node {cur!r} is its own ancestor (parent links form a cycle)")
            seen.add(cur)
            node = self.nodes.get(cur)
            if node is None:
                below = f" (parent of {chain[-1].id!r})" if chain else ""
                raise KeyError(f"no tree node {cur!r}{below}")
            chain.append(node)
            cur = node.parent
        chain.reverse()
        return chain

    def history(self, node_id: str | None) -> list[Message]:
        """Messages up to and including ``node_id``'s answer."""
        if node_id is None:
            return []
        msgs: list[Message] = []
        for n in self.path(node_id):
            msgs.append(n.user)
            if n.assistant is not None:
                msgs.append(n.assistant)
        return msgs

    def alive_at(self, turn: int) -> list[TreeNode]:
        return sorted(
            (n for n in self.nodes.values() if n.turn == turn and n.status == "alive"),
            key=lambda n: n.id,
        )

    def leaves(self) -> list[TreeNode]:
        """Alive nodes with no alive child and no pruned or failed ancestor: the ends of
        complete dialogues."""
        alive_path: dict[str, bool] = {}

        def on_alive_path(node_id: str) -> bool:
            # Iterative: trees can be deep, and a corrupt state may hold a dangling or cyclic parent.
            chain: list[str] = []
            cur: str | None = node_id
            result = True
            while cur is not None and cur not in alive_path:
                node = self.nodes.get(cur)
                if node is None or node.status != "alive" or cur in chain:
                    result = False
                    break
                chain.append(cur)
                cur = node.parent
            else:
                result = alive_path[cur] if cur is not None else True
            for c in chain:
                alive_path[c] = result
            return result

        parents = {n.parent for n in self.nodes.values() if n.status == "alive"}
        return sorted(
            (n for n in self.nodes.values() if n.id not in parents and on_alive_path(n.id)),
            key=lambda n: n.id,
        )

    def complete_ends(self) -> list[TreeNode]:
        """Ends of complete dialogues: answered leaves on an alive path with no children at all.

        A node whose every child failed is a leaf of the alive tree but not a finished dialogue.
        """
        parents = {n.parent for n in self.nodes.values()}
        return [n for n in self.leaves() if n.id not in parents and n.assistant is not None]

    def dialogue_ends(self, scored: Iterable[str] = ()) -> list[str]:
        """Ids of the nodes that end a dialogue: the alive leaves, plus any node given a dialogue score."""
        ids = {n.id for n in self.leaves()} | {k for k in scored if k in self.nodes}
        return sorted(ids)


class DialogueState(_Model):
    """The whole state of one seed's run through a graph."""

    seed: Seed
    prompts: list[Prompt] = Field(default_factory=list)
    nodes: Annotated[dict[str, TreeNode], merge_by_key] = Field(default_factory=dict)
    turn: int = 0
    tasks: list[CandidateTask] = Field(default_factory=list)
    task: CandidateTask | None = None
    dialogue_scores: Annotated[dict[str, dict[str, Score]], merge_by_key] = Field(
        default_factory=dict, description="Global (whole-dialogue) scores keyed by leaf node id."
    )
    human_dialogue_scores: Annotated[dict[str, list[HumanScore]], merge_by_key] = Field(
        default_factory=dict, description="People's whole-dialogue scores keyed by leaf node id."
    )
    pairs: Annotated[list[PreferencePair], append_unique] = Field(default_factory=list)
    records: Annotated[dict[str, Any], merge_by_key] = Field(
        default_factory=dict, description="Free-form per-node outputs (reports, summaries)."
    )
    status: DialogueStatus = "running"
    error: str | None = None

    def tree(self) -> Tree:
        """The tree view of this state's nodes."""
        return Tree(self.nodes)

    def children(self, parent: str | None) -> list[TreeNode]:
        return self.tree().children(parent)

    def path(self, node_id: str) -> list[TreeNode]:
        """Root-to-node chain (see :meth:`Tree.path`)."""
        return self.tree().path(node_id)

    def history(self, node_id: str | None) -> list[Message]:
        """Messages up to and including ``node_id``'s answer."""
        return self.tree().history(node_id)

    def alive_at(self, turn: int) -> list[TreeNode]:
        return self.tree().alive_at(turn)

    def leaves(self) -> list[TreeNode]:
        """See :meth:`Tree.leaves`."""
        return self.tree().leaves()

    def dialogue_ends(self) -> list[str]:
        """Ids of the nodes that end a dialogue (alive leaves and dialogue-scored nodes)."""
        return self.tree().dialogue_ends(self.dialogue_scores)


#: State fields a run starts with; every other field must be written by some node.
INITIAL_FIELDS: frozenset[str] = frozenset({"seed"})

#: Every model class that can appear in a checkpoint; checkpoint deserialisation allows these only.
CHECKPOINT_TYPES: tuple[type[BaseModel], ...] = (
    ImageRef, TextPart, ImagePart, Message, ModelCall, ToolCall, Provenance, Score, HumanScore, TreeNode,
    Seed, Prompt, CandidateTask, PreferencePair, DialogueState,
)
