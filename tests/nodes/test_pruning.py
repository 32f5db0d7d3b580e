"""branch_pruner: per-history top-`keep` by a YAML score rule, reasons on every pruned node."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interleaf.errors import SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph_text
from interleaf.nodes.pruning import BranchPruner

from .fakes import FakeRuntime, make_node
from .trees import node, tree

ALL3 = {"local_image_text_consistency": 3, "visual_perceptual_quality": 3, "text_quality": 3, "context_coherence": 3}


def pruner(tmp_path: Path, **params) -> BranchPruner:
    return make_node(BranchPruner, params, FakeRuntime({}, None, tmp_path))


def with_text(q: float, **rest: float) -> dict[str, float]:
    return {**ALL3, "text_quality": q, **rest}


async def test_keeps_best_two_of_three_per_parent(tmp_path: Path) -> None:
    nodes = tree(
        node("v0.0", scores=ALL3), node("v0.1", scores=ALL3),
        node("v0.0.0", scores=with_text(1)), node("v0.0.1", scores=with_text(3)), node("v0.0.2", scores=with_text(2)),
        node("v0.1.0", scores=with_text(0)), node("v0.1.1", scores=with_text(0)), node("v0.1.2", scores=with_text(3)),
    )
    out = await pruner(tmp_path, keep=2).run(BranchPruner.Input(nodes=nodes, turn=1))
    assert set(out.nodes) == {"v0.0.0", "v0.1.1"}
    assert all(n.status == "pruned" for n in out.nodes.values())
    assert out.nodes["v0.0.0"].reason == "rank 3 of 3 under v0.0: score 10 < kept 11"
    assert out.nodes["v0.1.1"].reason == "rank 3 of 3 under v0.1: score 9 = (tie broken by id) kept 9"


async def test_thresholds_and_weights(tmp_path: Path) -> None:
    nodes = tree(node("v0.0", scores=with_text(0)), node("v0.1", scores=with_text(3, context_coherence=0)),
                 node("v0.2", scores=with_text(2)))
    p = pruner(tmp_path, keep=1, weights={"context_coherence": 2.0, "text_quality": 1.0},
               thresholds={"text_quality": 1})
    out = await p.run(BranchPruner.Input(nodes=nodes, turn=0))
    assert out.nodes["v0.0"].reason == "text_quality 0 < threshold 1"
    # v0.2: 2*3 + 2 = 8 beats v0.1: 2*0 + 3 = 3
    assert out.nodes["v0.1"].reason == "rank 2 of 2 under v0: score 3 < kept 8"
    assert "v0.2" not in out.nodes


async def test_missing_scores_count_as_scale_bottom_and_other_turns_untouched(tmp_path: Path) -> None:
    nodes = tree(node("v0.0", scores={**ALL3, "text_quality": None}), node("v0.1", scores=ALL3),
                 node("v0.1.0", scores={}), node("v0.2", status="failed", scores={}))
    out = await pruner(tmp_path, keep=1).run(BranchPruner.Input(nodes=nodes, turn=0))
    assert list(out.nodes) == ["v0.0"]
    assert "score 9 < kept 12" in (out.nodes["v0.0"].reason or "")


async def test_max_alive_bounds_the_turn(tmp_path: Path) -> None:
    nodes = tree(*(node(f"v{v}.{c}", scores=with_text(c)) for v in range(3) for c in range(2)))
    out = await pruner(tmp_path, keep=2, max_alive=4).run(BranchPruner.Input(nodes=nodes, turn=0))
    assert sorted(out.nodes) == ["v1.0", "v2.0"]
    assert out.nodes["v2.0"].reason == "over max_alive 4 at turn 0: score 9 ranks 6 (lowest kept 9)"


def test_rule_naming_unknown_dimension_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        pruner(tmp_path, weights={"text_qualty": 1.0})
    assert err.value.field == "params.weights.text_qualty" and "text_qualty" in str(err.value)
    text = """\
name: t
nodes:
  prune:
    kind: branch_pruner
    params:
      keep: 2
      thresholds:
        helpfulness: 1
edges:
  - {from: START, to: prune}
  - {from: prune, to: END}
"""
    spec, doc = load_graph_text(text, str(tmp_path / "g.yaml"))
    with pytest.raises(SpecError) as err:
        compile_graph(spec, doc)
    assert err.value.location is not None and err.value.location.line == 8
    assert "helpfulness" in err.value.message and "intermt-local" in err.value.message


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=4, max_size=4), min_size=1, max_size=6), st.integers(1, 4))
async def test_property_keep_best_per_history(rows: list[list[int]], keep: int) -> None:
    dims = list(ALL3)
    nodes = tree(*(node(f"v0.{i}", scores=dict(zip(dims, r, strict=True))) for i, r in enumerate(rows)))
    p = make_node(BranchPruner, {"keep": keep}, FakeRuntime({}, None, None))
    out = await p.run(BranchPruner.Input(nodes=nodes, turn=0))
    kept = [n for i, n in nodes.items() if i not in out.nodes]
    assert len(kept) == min(keep, len(rows))
    if out.nodes:
        assert min(p.score(n) for n in kept) >= max(p.score(n) for n in out.nodes.values())
        assert all(n.reason for n in out.nodes.values())
