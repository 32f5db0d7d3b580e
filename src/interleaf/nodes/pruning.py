"""BranchPruner: per history, keep the best ``keep`` candidates of this turn; prune the rest with a reason.

The score rule is data: ``weights`` (dimension -> weight, default the rubric's weights) and
``thresholds`` (dimension -> minimum). A candidate under a threshold is pruned first; the
rest are ranked by weighted score, ties broken by node id, so pruning is deterministic.
``max_alive`` bounds the branches kept across the whole turn, which bounds the tree's size.
People's scores (``TreeNode.human_scores``) count where present, unless ``prefer: judge``.
The rule itself is :class:`PruneRule` and :func:`prune_turn`, pure functions of the tree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import SpecError
from interleaf.graphs.rubric import Rubric
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import Prefer, check_dimension_keys, history_key, node_rubric, node_scores
from interleaf.nodes.registry import node_kinds
from interleaf.state import Score, TreeNode


class BranchPrunerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: int = Field(default=2, ge=1, le=64, description="Candidates kept under each history.")
    rubric: str = Field(default="intermt-local", description="Rubric whose dimensions the rule names.")
    weights: dict[str, float] | None = Field(default=None, description="Dimension -> weight (default: rubric's).")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Dimension -> minimum score to survive.")
    max_alive: int | None = Field(default=None, ge=1, description="Most branches kept alive at one turn, tree-wide.")
    prefer: Prefer = Field(
        default="human", description="Whose score counts where a node has both the judge's and people's."
    )


class BranchPrunerInput(NodeIO):
    nodes: dict[str, TreeNode]
    turn: int


class BranchPrunerOutput(NodeIO):
    nodes: dict[str, TreeNode]


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class PruneRule:
    """The pruning rule of a ``branch_pruner`` as plain data, usable without a graph or a model.

    ``interleaf annotate apply`` re-prunes a finished tree with it, so the node and the
    re-pruning cannot drift apart.

    Example:
        >>> from interleaf.graphs.rubric import load_rubric
        >>> rule = PruneRule.from_params(load_rubric("intermt-local"), BranchPrunerParams(keep=1))
        >>> rule.keep, sorted(rule.weights)[:1]
        (1, ['context_coherence'])
    """

    rubric: Rubric
    weights: dict[str, float]
    thresholds: dict[str, float] = field(default_factory=dict)
    keep: int = 2
    max_alive: int | None = None
    prefer: Prefer = "human"

    @classmethod
    def from_params(cls, rubric: Rubric, params: BranchPrunerParams) -> PruneRule:
        """Check the params against ``rubric`` (a :class:`SpecError` naming the bad key) and build the rule."""
        weights = params.weights if params.weights is not None else rubric.weights()
        check_dimension_keys(rubric, weights, "weights")
        check_dimension_keys(rubric, params.thresholds, "thresholds")
        if not any(w > 0 for w in weights.values()):
            raise SpecError("weights must give at least one dimension a positive weight", None, "params.weights")
        return cls(rubric, dict(weights), dict(params.thresholds), params.keep, params.max_alive, params.prefer)

    def scores_of(self, node: TreeNode) -> Mapping[str, Score]:
        """The scores the rule ranks ``node`` by (the judge's, with people's per ``prefer``)."""
        return node_scores(node, self.prefer).scores

    def score(self, node: TreeNode) -> float:
        """Weighted sum; a missing score counts as the bottom of its dimension's scale."""
        scores = self.scores_of(node)
        total = 0.0
        for name, w in self.weights.items():
            s = scores.get(name)
            value = s.value if s is not None and s.value is not None else self.rubric.dimension(name).scale.low
            total += w * value
        return total

    def below_threshold(self, node: TreeNode) -> str | None:
        """Why ``node`` fails a threshold, or None."""
        scores = self.scores_of(node)
        for name, minimum in self.thresholds.items():
            s = scores.get(name)
            if s is None or s.value is None:
                return f"{name} missing < threshold {_fmt(minimum)}"
            if s.value < minimum:
                return f"{name} {_fmt(s.value)} < threshold {_fmt(minimum)}"
        return None


def prune_turn(nodes: Mapping[str, TreeNode], turn: int, rule: PruneRule) -> dict[str, TreeNode]:
    """The alive candidates of ``turn`` that ``rule`` prunes, as updated copies (status and reason).

    A pure function of the tree: no model is called, and the same tree gives the same result.
    """
    candidates = sorted((n for n in nodes.values() if n.turn == turn and n.status == "alive"), key=lambda n: n.id)
    pruned: dict[str, TreeNode] = {}
    groups: dict[str, list[TreeNode]] = defaultdict(list)
    for node in candidates:
        why = rule.below_threshold(node)
        if why is not None:
            pruned[node.id] = node.model_copy(update={"status": "pruned", "reason": why})
        else:
            groups[history_key(node)].append(node)
    kept: list[tuple[float, TreeNode]] = []
    for key in sorted(groups):
        ranked = sorted(groups[key], key=lambda n: (-rule.score(n), n.id))
        if ranked:
            cutoff = rule.score(ranked[min(rule.keep, len(ranked)) - 1])
        for rank, node in enumerate(ranked, start=1):
            s = rule.score(node)
            if rank <= rule.keep:
                kept.append((s, node))
                continue
            relation = "<" if s < cutoff else "= (tie broken by id)"
            pruned[node.id] = node.model_copy(update={
                "status": "pruned",
                "reason": f"rank {rank} of {len(ranked)} under {key}: score {_fmt(s)} {relation} "
                          f"kept {_fmt(cutoff)}",
            })
    limit = rule.max_alive
    if limit is not None and len(kept) > limit:
        ordered = sorted(kept, key=lambda t: (-t[0], t[1].id))
        floor = ordered[limit - 1][0]
        for rank, (s, node) in enumerate(ordered[limit:], start=limit + 1):
            pruned[node.id] = node.model_copy(update={
                "status": "pruned",
                "reason": f"over max_alive {limit} at turn {turn}: score {_fmt(s)} ranks {rank} "
                          f"(lowest kept {_fmt(floor)})",
            })
    return pruned


@node_kinds.register("branch_pruner")
class BranchPruner(NodeKind[BranchPrunerInput, BranchPrunerOutput, BranchPrunerParams]):
    """Keep the top ``keep`` alive candidates of ``turn`` under each history; prune the others."""

    kind = "branch_pruner"
    Input = BranchPrunerInput
    Output = BranchPrunerOutput
    Params = BranchPrunerParams

    def __init__(self, ctx: NodeContext, params: BranchPrunerParams):
        super().__init__(ctx, params)
        self.rubric: Rubric = node_rubric(ctx, params.rubric)
        self.rule = PruneRule.from_params(self.rubric, params)
        self.weights = self.rule.weights

    def score(self, node: TreeNode) -> float:
        """Weighted sum; a missing score counts as the bottom of its dimension's scale."""
        return self.rule.score(node)

    async def run(self, inp: BranchPrunerInput) -> BranchPrunerOutput:
        return BranchPrunerOutput(nodes=prune_turn(inp.nodes, inp.turn, self.rule))
