"""BranchPruner: per history, keep the best ``keep`` candidates of this turn; prune the rest with a reason.

The score rule is data: ``weights`` (dimension -> weight, default the rubric's weights) and
``thresholds`` (dimension -> minimum). A candidate under a threshold is pruned first; the
rest are ranked by weighted score, ties broken by node id, so pruning is deterministic.
``max_alive`` bounds the branches kept across the whole turn, which bounds the tree's size.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import SpecError
from interleaf.graphs.rubric import Rubric
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.nodes.judging import check_dimension_keys, history_key, node_rubric
from interleaf.nodes.registry import node_kinds
from interleaf.state import TreeNode


class BranchPrunerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: int = Field(default=2, ge=1, le=64, description="Candidates kept under each history.")
    rubric: str = Field(default="intermt-local", description="Rubric whose dimensions the rule names.")
    weights: dict[str, float] | None = Field(default=None, description="Dimension -> weight (default: rubric's).")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Dimension -> minimum score to survive.")
    max_alive: int | None = Field(default=None, ge=1, description="Most branches kept alive at one turn, tree-wide.")


class BranchPrunerInput(NodeIO):
    nodes: dict[str, TreeNode]
    turn: int


class BranchPrunerOutput(NodeIO):
    nodes: dict[str, TreeNode]


def _fmt(x: float) -> str:
    return f"{x:g}"


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
        weights = params.weights if params.weights is not None else self.rubric.weights()
        check_dimension_keys(self.rubric, weights, "weights")
        check_dimension_keys(self.rubric, params.thresholds, "thresholds")
        if not any(w > 0 for w in weights.values()):
            raise SpecError("weights must give at least one dimension a positive weight", None, "params.weights")
        self.weights = weights

    def score(self, node: TreeNode) -> float:
        """Weighted sum; a missing score counts as the bottom of its dimension's scale."""
        total = 0.0
        for name, w in self.weights.items():
            s = node.scores.get(name)
            value = s.value if s is not None and s.value is not None else self.rubric.dimension(name).scale.low
            total += w * value
        return total

    def _below_threshold(self, node: TreeNode) -> str | None:
        for name, minimum in self.params.thresholds.items():
            s = node.scores.get(name)
            if s is None or s.value is None:
                return f"{name} missing < threshold {_fmt(minimum)}"
            if s.value < minimum:
                return f"{name} {_fmt(s.value)} < threshold {_fmt(minimum)}"
        return None

    async def run(self, inp: BranchPrunerInput) -> BranchPrunerOutput:
        candidates = sorted(
            (n for n in inp.nodes.values() if n.turn == inp.turn and n.status == "alive"), key=lambda n: n.id
        )
        pruned: dict[str, TreeNode] = {}
        groups: dict[str, list[TreeNode]] = defaultdict(list)
        for node in candidates:
            why = self._below_threshold(node)
            if why is not None:
                pruned[node.id] = node.model_copy(update={"status": "pruned", "reason": why})
            else:
                groups[history_key(node)].append(node)
        kept: list[tuple[float, TreeNode]] = []
        for key in sorted(groups):
            ranked = sorted(groups[key], key=lambda n: (-self.score(n), n.id))
            if ranked:
                cutoff = self.score(ranked[min(self.params.keep, len(ranked)) - 1])
            for rank, node in enumerate(ranked, start=1):
                s = self.score(node)
                if rank <= self.params.keep:
                    kept.append((s, node))
                    continue
                relation = "<" if s < cutoff else "= (tie broken by id)"
                pruned[node.id] = node.model_copy(update={
                    "status": "pruned",
                    "reason": f"rank {rank} of {len(ranked)} under {key}: score {_fmt(s)} {relation} "
                              f"kept {_fmt(cutoff)}",
                })
        limit = self.params.max_alive
        if limit is not None and len(kept) > limit:
            ordered = sorted(kept, key=lambda t: (-t[0], t[1].id))
            floor = ordered[limit - 1][0]
            for rank, (s, node) in enumerate(ordered[limit:], start=limit + 1):
                pruned[node.id] = node.model_copy(update={
                    "status": "pruned",
                    "reason": f"over max_alive {limit} at turn {inp.turn}: score {_fmt(s)} ranks {rank} "
                              f"(lowest kept {_fmt(floor)})",
                })
        return BranchPrunerOutput(nodes=pruned)
