"""PreferencePairs: chosen/rejected pairs from the scored tree.

- local pairs: two scored sibling candidates under the same history (same parent, or the same
  prompt variant at turn 0), compared on the turn-level rubric;
- global pairs: two complete dialogues of the seed, compared on the dialogue-level rubric.

Each pair carries a per-dimension preference (1, 2, or 0 for a tie), the judge's reasons, and
an overall preference by the rubric's weights. Selection is data: ``min_margin`` on the
weighted difference and a cap per seed, largest margins first, ties broken by pair id. With
``by_group`` every dimension group of the rubric (say helpfulness vs harmlessness) gets its
own pairs, with the group name in the pair id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import SpecError
from interleaf.graphs.rubric import Level, Rubric
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import history_key, node_rubric
from interleaf.nodes.registry import node_kinds
from interleaf.state import PreferencePair, Score, Seed, TreeNode


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


class PreferencePairsInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    dialogue_scores: dict[str, dict[str, Score]]


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


@node_kinds.register("preference_pairs")
class PreferencePairs(NodeKind[PreferencePairsInput, PreferencePairsOutput, PreferencePairsParams]):
    """Local pairs among scored siblings and global pairs among complete dialogues of one seed."""

    kind = "preference_pairs"
    Input = PreferencePairsInput
    Output = PreferencePairsOutput
    Params = PreferencePairsParams
    # Without a global judge upstream there are no dialogue scores, and only local pairs.
    optional_reads = frozenset({"dialogue_scores"})

    def __init__(self, ctx: NodeContext, params: PreferencePairsParams):
        super().__init__(ctx, params)
        self.local = node_rubric(ctx, params.rubric_local, "rubric_local")
        self.global_ = (
            node_rubric(ctx, params.rubric_global, "rubric_global") if params.rubric_global is not None else None
        )
        if params.by_group:
            for param, rubric in (("rubric_local", self.local), ("rubric_global", self.global_)):
                if rubric is not None and not rubric.group_members():
                    raise SpecError(
                        f"by_group needs dimension groups, but rubric {rubric.name!r} ({rubric.source}) "
                        f"declares none (param {param})", None, "params.by_group",
                    )

    def _groups(self, rubric: Rubric, level: Level) -> list[tuple[str | None, list[str]]]:
        if self.params.by_group:
            return [(g, names) for g, names in rubric.group_members().items()
                    if any(rubric.dimension(n).level == level for n in names)]
        return [(None, [d.name for d in rubric.dims(level)])]

    def _select(self, pairs: list[PreferencePair], limit: int) -> list[PreferencePair]:
        kept = [p for p in pairs if p.margin >= self.params.min_margin]
        kept.sort(key=lambda p: (-p.margin, p.id))
        return kept[:limit]

    def _local(self, seed: Seed, nodes: dict[str, TreeNode]) -> list[PreferencePair]:
        allowed = {"alive", "pruned", "failed"} if self.params.include_failed else {"alive", "pruned"}
        groups: dict[str, list[TreeNode]] = defaultdict(list)
        for n in sorted(nodes.values(), key=lambda n: n.id):
            if n.status in allowed and n.assistant is not None and _has_scores(n.scores):
                groups[history_key(n)].append(n)
        out: list[PreferencePair] = []
        for group, dims in self._groups(self.local, "turn"):
            found: list[PreferencePair] = []
            for key in sorted(groups):
                for a, b in combinations(groups[key], 2):
                    if a.status == "failed" and b.status == "failed":
                        continue
                    c = compare(a.scores, b.scores, self.local, dims)
                    if c is None:
                        continue
                    suffix = f"/{group}" if group else ""
                    found.append(PreferencePair(
                        id=f"{seed.id}/local/{a.id}~{b.id}{suffix}", level="local", turn=a.turn, history=a.parent,
                        response_1=a.id, response_2=b.id, preference=c.preference, overall=c.overall,
                        margin=c.margin, reasons=c.reasons,
                    ))
            out += self._select(found, self.params.max_local_pairs)
        return out

    def _global(
        self, seed: Seed, nodes: dict[str, TreeNode], scores: dict[str, dict[str, Score]]
    ) -> list[PreferencePair]:
        leaves = sorted(
            (nodes[k] for k, s in scores.items() if k in nodes and nodes[k].status == "alive" and _has_scores(s)),
            key=lambda n: n.id,
        )
        out: list[PreferencePair] = []
        if self.global_ is None:
            return out
        global_ = self.global_
        for group, dims in self._groups(global_, "dialogue"):
            found: list[PreferencePair] = []
            for a, b in combinations(leaves, 2):
                if self.params.same_depth and a.turn != b.turn:
                    continue
                c = compare(scores[a.id], scores[b.id], global_, dims)
                if c is None:
                    continue
                suffix = f"/{group}" if group else ""
                found.append(PreferencePair(
                    id=f"{seed.id}/global/{a.id}~{b.id}{suffix}", level="global", response_1=a.id,
                    response_2=b.id, preference=c.preference, overall=c.overall, margin=c.margin, reasons=c.reasons,
                ))
            out += self._select(found, self.params.max_global_pairs)
        return out

    async def run(self, inp: PreferencePairsInput) -> PreferencePairsOutput:
        pairs = self._local(inp.seed, inp.nodes) + self._global(inp.seed, inp.nodes, inp.dialogue_scores)
        return PreferencePairsOutput(pairs=pairs)
