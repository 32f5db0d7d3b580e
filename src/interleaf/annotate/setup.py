"""What a run is reviewed with, read from its graph: rubrics and dimensions, the pruning and pairing rules.

The graph is the run's own ``graph.yaml`` (the source it was generated with) unless ``--graph``
names another file or built-in graph - needed when the graph refers to rubric files by relative
paths, which resolve against the graph file's folder.

- Turn-level review uses the ``preference_pairs`` node's ``rubric_local`` (else the
  ``branch_pruner``'s, else the ``consistency_check``'s rubric), restricted to the dimensions the
  ``consistency_check`` node scores when it names some.
- Dialogue-level review uses ``rubric_global`` (else the ``global_judge``'s rubric), restricted
  to the ``global_judge``'s ``dimensions``.
- ``apply`` re-prunes with the ``branch_pruner``'s params and re-pairs with the
  ``preference_pairs`` node's, exactly as those node kinds do (:class:`PruneRule`,
  :class:`PairRule`), honouring their ``prefer`` param unless ``--prefer`` overrides it.

Example:
    >>> from interleaf.graphs.loading import load_graph
    >>> spec, doc = load_graph("intermt-lite")
    >>> setup = review_setup(spec, None)
    >>> [d.name for d in setup.dims("turns")], setup.prune.keep
    (['text_quality', 'context_coherence'], 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from interleaf.annotate.config import LEVEL_OF, ItemKind
from interleaf.annotate.errors import ReviewSetupError
from interleaf.errors import SpecError
from interleaf.graphs.loading import load_graph, load_graph_text
from interleaf.graphs.rubric import Dimension, Rubric, RubricNotFound, load_rubric
from interleaf.graphs.spec import GraphSpec, NodeSpec
from interleaf.nodes.consistency import ConsistencyCheckParams
from interleaf.nodes.global_judge import GlobalJudgeParams
from interleaf.nodes.judging import Prefer, rubric_dims
from interleaf.nodes.pairs import PairRule, PreferencePairsParams
from interleaf.nodes.pruning import BranchPrunerParams, PruneRule
from interleaf.run import layout
from interleaf.run.reader import RunReader

_HINT = "pass --graph FILE (the graph the run was made with)"


@dataclass(frozen=True)
class ReviewSetup:
    """Rubrics, dimensions and rules one run is reviewed and re-decided with."""

    graph_name: str
    rubrics: dict[str, Rubric] = field(default_factory=dict)  # level -> rubric
    dimensions: dict[str, list[Dimension]] = field(default_factory=dict)  # level -> dimensions
    prune: PruneRule | None = None
    pairs: PairRule | None = None

    def rubric(self, kind: ItemKind) -> Rubric:
        level = LEVEL_OF[kind]
        if level not in self.rubrics:
            raise ReviewSetupError(
                f"graph {self.graph_name!r} has no {level}-level rubric to review {kind} with "
                f"(no preference_pairs, branch_pruner, consistency_check or global_judge node names one)"
            )
        return self.rubrics[level]

    def dims(self, kind: ItemKind) -> list[Dimension]:
        self.rubric(kind)
        return self.dimensions[LEVEL_OF[kind]]


def _nodes_of(spec: GraphSpec, kind: str) -> list[tuple[str, NodeSpec]]:
    return [(name, node) for name, node in spec.nodes.items() if node.kind == kind]


def _one(spec: GraphSpec, kind: str) -> tuple[str, NodeSpec] | None:
    found = _nodes_of(spec, kind)
    if len(found) > 1:
        names = ", ".join(n for n, _ in found)
        raise ReviewSetupError(f"graph {spec.name!r} has several {kind} nodes ({names}); annotate cannot tell "
                               "which one decided the run")
    return found[0] if found else None


def _params(model: type[BaseModel], name: str, node: NodeSpec) -> Any:
    try:
        return model.model_validate(node.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReviewSetupError(f"graph node {name!r} [params.{where}]: {first['msg']}") from None


def _rubric(ref: str, base: Path | None, node: str, param: str) -> Rubric:
    try:
        return load_rubric(ref, base)
    except RubricNotFound as exc:
        raise ReviewSetupError(f"graph node {node!r} [params.{param}]: {exc}; {_HINT}") from None


def review_setup(spec: GraphSpec, base: Path | None, prefer: Prefer | None = None) -> ReviewSetup:
    """Read rubrics, dimensions and rules from a graph (``base``: the folder relative rubric paths start at)."""
    rubrics: dict[str, Rubric] = {}
    refs: dict[str, str] = {}
    pairs_node, prune_node = _one(spec, "preference_pairs"), _one(spec, "branch_pruner")
    check_node, judge_node = _one(spec, "consistency_check"), _one(spec, "global_judge")
    prune_rule: PruneRule | None = None
    pair_rule: PairRule | None = None
    try:
        if prune_node is not None:
            name, node = prune_node
            pp: BranchPrunerParams = _params(BranchPrunerParams, name, node)
            if prefer is not None:
                pp = pp.model_copy(update={"prefer": prefer})
            rubric = _rubric(pp.rubric, base, name, "rubric")
            prune_rule = PruneRule.from_params(rubric, pp)
            rubrics.setdefault("turn", rubric)
            refs.setdefault("turn", pp.rubric)
        if pairs_node is not None:
            name, node = pairs_node
            qp: PreferencePairsParams = _params(PreferencePairsParams, name, node)
            if prefer is not None:
                qp = qp.model_copy(update={"prefer": prefer})
            local = _rubric(qp.rubric_local, base, name, "rubric_local")
            glob = _rubric(qp.rubric_global, base, name, "rubric_global") if qp.rubric_global else None
            pair_rule = PairRule.from_params(qp, local, glob)
            rubrics["turn"], refs["turn"] = local, qp.rubric_local
            if glob is not None:
                rubrics["dialogue"], refs["dialogue"] = glob, str(qp.rubric_global)
        turn_names: list[str] | None = None
        if check_node is not None:
            name, node = check_node
            cp: ConsistencyCheckParams = _params(ConsistencyCheckParams, name, node)
            if "turn" not in rubrics:
                rubrics["turn"], refs["turn"] = _rubric(cp.rubric, base, name, "rubric"), cp.rubric
            if cp.rubric == refs["turn"]:
                turn_names = cp.dimensions
        dialogue_names: list[str] | None = None
        if judge_node is not None:
            name, node = judge_node
            gp: GlobalJudgeParams = _params(GlobalJudgeParams, name, node)
            if "dialogue" not in rubrics:
                rubrics["dialogue"], refs["dialogue"] = _rubric(gp.rubric, base, name, "rubric"), gp.rubric
            if gp.rubric == refs["dialogue"]:
                dialogue_names = gp.dimensions
        dimensions: dict[str, list[Dimension]] = {}
        if "turn" in rubrics:
            dimensions["turn"] = rubric_dims(rubrics["turn"], "turn", turn_names)
        if "dialogue" in rubrics:
            dimensions["dialogue"] = rubric_dims(rubrics["dialogue"], "dialogue", dialogue_names)
    except SpecError as exc:
        raise ReviewSetupError(f"graph {spec.name!r}: {exc}") from None
    return ReviewSetup(spec.name, rubrics, dimensions, prune_rule, pair_rule)


def load_review_setup(reader: RunReader, graph: str | Path | None = None, prefer: Prefer | None = None) -> ReviewSetup:
    """The run's :class:`ReviewSetup`, from ``graph`` when given, else from the run's own ``graph.yaml``."""
    try:
        if graph is not None:
            spec, doc = load_graph(graph)
            base: Path | None = Path(doc.path).parent
        else:
            source = reader.graph_source()
            if source is None:
                raise ReviewSetupError(f"{reader.name}: the run has no {layout.GRAPH}; {_HINT}")
            where = reader.store.url(layout.GRAPH)
            local = reader.store.local_path(layout.GRAPH)
            spec, doc = load_graph_text(source, str(local) if local is not None else where)
            base = Path(local).parent if local is not None else None
    except SpecError as exc:
        raise ReviewSetupError(f"{exc}; {_HINT}") from None
    return review_setup(spec, base, prefer)
