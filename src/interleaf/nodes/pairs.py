"""PreferencePairs: chosen/rejected pairs from the scored tree.

- local pairs: two scored sibling candidates under the same history (same parent, or the same
  prompt variant at turn 0), compared on the turn-level rubric;
- global pairs: two complete dialogues of the seed, compared on the dialogue-level rubric.

Each pair carries a per-dimension preference (1, 2, or 0 for a tie), the judge's reasons, and
an overall preference by the rubric's weights. Selection is data: ``min_margin`` on the
weighted difference and a cap per seed, largest margins first, ties broken by pair id. With
``by_group`` every dimension group of the rubric (say helpfulness vs harmlessness) gets its
own pairs, with the group name in the pair id.

People's scores (``TreeNode.human_scores``, ``DialogueState.human_dialogue_scores``) count where
present unless ``prefer: judge``; each pair says in ``decided_by`` whether a person's score
entered it. The rule is :class:`PairRule`, a pure function of the tree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import SpecError
from interleaf.graphs.rubric import Level, Rubric
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import Prefer, ScoreView, combine_scores, history_key, node_rubric, node_scores
from interleaf.nodes.registry import node_kinds
from interleaf.state import HumanScore, PreferencePair, Score, Seed, TreeNode


class PreferencePairsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric_local: str = Field(default="intermt-local", description="Rubric of sibling (turn-level) pairs.")
    rubric_global: str | None = Field(
        default="intermt-global", description="Rubric of dialogue-level pairs (None: local pairs only)."
    )
    min_margin: float = Field(default=1.0, ge=0, description="Least weighted score difference (0 keeps ties).")
    max_local_pairs: int = Field(default=64, ge=0, description="Most local pairs per seed (per group with by_group).")
    max_global_pairs: int = Field(default=32, ge=0, description="Most global pairs per seed (per group with by_group).")
    by_group: bool = Field(default=False, description="Make pairs per dimension group of the rubric.")
    include_failed: bool = Field(default=False, description="Let candidates that failed a check be rejected sides.")
    same_depth: bool = Field(default=True, description="Pair only dialogues with the same number of turns.")
    prefer: Prefer = Field(
        default="human", description="Whose score counts where an item has both the judge's and people's."
    )


class PreferencePairsInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    dialogue_scores: dict[str, dict[str, Score]]
    human_dialogue_scores: dict[str, list[HumanScore]] = Field(default_factory=dict)


class PreferencePairsOutput(NodeIO):
    pairs: list[PreferencePair]


@dataclass(frozen=True)
class Comparison:
    """Two score sets compared on the dimensions both have."""

    preference: dict[str, int]
    overall: int
    margin: float
    reasons: dict[str, str]


def _sign(a: float, b: float) -> int:
    return 1 if a > b else 2 if b > a else 0


def compare(
    first: dict[str, Score], second: dict[str, Score], rubric: Rubric, dims: Sequence[str]
) -> Comparison | None:
    """Per-dimension and weighted overall preference; None when no dimension is scored on both sides."""
    preference: dict[str, int] = {}
    reasons: dict[str, str] = {}
    total_1 = total_2 = 0.0
    for name in dims:
        s1, s2 = first.get(name), second.get(name)
        if s1 is None or s2 is None or s1.value is None or s2.value is None:
            continue
        preference[name] = _sign(s1.value, s2.value)
        reasons[name] = f"response_1 ({s1.value:g}): {s1.reason} | response_2 ({s2.value:g}): {s2.reason}"
        weight = rubric.dimension(name).weight
        total_1 += weight * s1.value
        total_2 += weight * s2.value
    if not preference:
        return None
    return Comparison(preference, _sign(total_1, total_2), round(abs(total_1 - total_2), 6), reasons)


def _has_scores(scores: dict[str, Score]) -> bool:
    return any(s.value is not None for s in scores.values())


def _decided_by(c: Comparison, *views: ScoreView) -> Literal["judge", "human"]:
    """``human`` when a person's score entered any dimension the pair was compared on."""
    compared = set(c.preference)
    return "human" if any(compared & v.human for v in views) else "judge"


@dataclass(frozen=True)
class PairRule:
    """The selection rule of a ``preference_pairs`` node as plain data (no graph, no model needed).

    ``interleaf annotate apply`` re-makes a finished tree's pairs with it, with people's scores
    taking precedence per ``params.prefer``.

    Example:
        >>> from interleaf.graphs.rubric import load_rubric
        >>> rule = PairRule.from_params(PreferencePairsParams(), load_rubric("intermt-local"),
        ...                             load_rubric("intermt-global"))
        >>> [g for g, _ in rule.groups(rule.local, "turn")]
        [None]
    """

    params: PreferencePairsParams
    local: Rubric
    global_: Rubric | None = None

    @classmethod
    def from_params(cls, params: PreferencePairsParams, local: Rubric, global_: Rubric | None) -> PairRule:
        """Build the rule; ``by_group`` on a rubric without groups is a :class:`SpecError`."""
        if params.by_group:
            for param, rubric in (("rubric_local", local), ("rubric_global", global_)):
                if rubric is not None and not rubric.group_members():
                    raise SpecError(
                        f"by_group needs dimension groups, but rubric {rubric.name!r} ({rubric.source}) "
                        f"declares none (param {param})", None, "params.by_group",
                    )
        return cls(params, local, global_)

    def groups(self, rubric: Rubric, level: Level) -> list[tuple[str | None, list[str]]]:
        """(group name or None, dimension names) to make pairs for."""
        if self.params.by_group:
            return [(g, names) for g, names in rubric.group_members().items()
                    if any(rubric.dimension(n).level == level for n in names)]
        return [(None, [d.name for d in rubric.dims(level)])]

    def select(self, pairs: list[PreferencePair], limit: int) -> list[PreferencePair]:
        """Pairs over ``min_margin``, largest margins first (ties by id), at most ``limit``."""
        kept = [p for p in pairs if p.margin >= self.params.min_margin]
        kept.sort(key=lambda p: (-p.margin, p.id))
        return kept[:limit]

    def local_pairs(self, seed: Seed, nodes: Mapping[str, TreeNode]) -> list[PreferencePair]:
        """Pairs of scored siblings under the same history."""
        allowed = {"alive", "pruned", "failed"} if self.params.include_failed else {"alive", "pruned"}
        groups: dict[str, list[tuple[TreeNode, ScoreView]]] = defaultdict(list)
        for n in sorted(nodes.values(), key=lambda n: n.id):
            view = node_scores(n, self.params.prefer)
            if n.status in allowed and n.assistant is not None and _has_scores(view.scores):
                groups[history_key(n)].append((n, view))
        out: list[PreferencePair] = []
        for group, dims in self.groups(self.local, "turn"):
            found: list[PreferencePair] = []
            for key in sorted(groups):
                for (a, va), (b, vb) in combinations(groups[key], 2):
                    if a.status == "failed" and b.status == "failed":
                        continue
                    c = compare(va.scores, vb.scores, self.local, dims)
                    if c is None:
                        continue
                    suffix = f"/{group}" if group else ""
                    found.append(PreferencePair(
                        id=f"{seed.id}/local/{a.id}~{b.id}{suffix}", level="local", turn=a.turn, history=a.parent,
                        response_1=a.id, response_2=b.id, preference=c.preference, overall=c.overall,
                        margin=c.margin, reasons=c.reasons, decided_by=_decided_by(c, va, vb),
                    ))
            out += self.select(found, self.params.max_local_pairs)
        return out

    def global_pairs(
        self,
        seed: Seed,
        nodes: Mapping[str, TreeNode],
        scores: Mapping[str, dict[str, Score]],
        human: Mapping[str, list[HumanScore]] | None = None,
    ) -> list[PreferencePair]:
        """Pairs of complete dialogues (alive ends with dialogue scores, the judge's or people's)."""
        if self.global_ is None:
            return []
        global_ = self.global_
        human = human or {}
        views: dict[str, ScoreView] = {}
        for k in sorted(set(scores) | set(human)):
            if k not in nodes or nodes[k].status != "alive":
                continue
            judged = scores.get(k, {})
            people = human.get(k, [])
            view = combine_scores(judged, people, self.params.prefer) if people else ScoreView(judged)
            if _has_scores(view.scores):
                views[k] = view
        leaves = [nodes[k] for k in sorted(views)]
        out: list[PreferencePair] = []
        for group, dims in self.groups(global_, "dialogue"):
            found: list[PreferencePair] = []
            for a, b in combinations(leaves, 2):
                if self.params.same_depth and a.turn != b.turn:
                    continue
                c = compare(views[a.id].scores, views[b.id].scores, global_, dims)
                if c is None:
                    continue
                suffix = f"/{group}" if group else ""
                found.append(PreferencePair(
                    id=f"{seed.id}/global/{a.id}~{b.id}{suffix}", level="global", response_1=a.id,
                    response_2=b.id, preference=c.preference, overall=c.overall, margin=c.margin, reasons=c.reasons,
                    decided_by=_decided_by(c, views[a.id], views[b.id]),
                ))
            out += self.select(found, self.params.max_global_pairs)
        return out

    def pairs(
        self,
        seed: Seed,
        nodes: Mapping[str, TreeNode],
        dialogue_scores: Mapping[str, dict[str, Score]],
        human_dialogue_scores: Mapping[str, list[HumanScore]] | None = None,
    ) -> list[PreferencePair]:
        """Local then global pairs of one seed's tree: a pure function of the tree and its scores."""
        return self.local_pairs(seed, nodes) + self.global_pairs(seed, nodes, dialogue_scores, human_dialogue_scores)


@node_kinds.register("preference_pairs")
class PreferencePairs(NodeKind[PreferencePairsInput, PreferencePairsOutput, PreferencePairsParams]):
    """Local pairs among scored siblings and global pairs among complete dialogues of one seed."""

    kind = "preference_pairs"
    Input = PreferencePairsInput
    Output = PreferencePairsOutput
    Params = PreferencePairsParams
    # Without a global judge upstream there are no dialogue scores, and only local pairs; people's
    # dialogue scores exist only in runs that were annotated (or imported with them).
    optional_reads = frozenset({"dialogue_scores", "human_dialogue_scores"})

    def __init__(self, ctx: NodeContext, params: PreferencePairsParams):
        super().__init__(ctx, params)
        self.local = node_rubric(ctx, params.rubric_local, "rubric_local")
        self.global_ = (
            node_rubric(ctx, params.rubric_global, "rubric_global") if params.rubric_global is not None else None
        )
        self.rule = PairRule.from_params(params, self.local, self.global_)

    async def run(self, inp: PreferencePairsInput) -> PreferencePairsOutput:
        pairs = self.rule.pairs(inp.seed, inp.nodes, inp.dialogue_scores, inp.human_dialogue_scores)
        return PreferencePairsOutput(pairs=pairs)
