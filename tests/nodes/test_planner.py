"""TurnPlanner: the tree's branching, turn by turn."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from interleaf.graphs.loading import load_graph_text
from interleaf.graphs.spec import NodeSpec
from interleaf.nodes.base import NodeContext
from interleaf.nodes.planner import TurnPlanner, TurnPlannerInput, TurnPlannerParams
from interleaf.runtime import Runtime
from interleaf.state import DialogueState, Message, Prompt, Seed, TextPart, TreeNode

GRAPH = """
name: planner-only
nodes:
  plan: {kind: turn_planner}
edges:
  - {from: START, to: plan}
  - {from: plan, to: END}
"""


def _planner(**params: int) -> TurnPlanner:
    spec, _ = load_graph_text(GRAPH, "planner.yaml")
    ctx = NodeContext(name="plan", spec=NodeSpec(kind="turn_planner", params=params), runtime=Runtime(spec))
    return TurnPlanner(ctx, TurnPlannerParams(**params))


def _prompt(variant: int) -> Prompt:
    return Prompt(variant=variant, message=Message.user(f"question {variant}"), situation=f"sit {variant}",
                  tags={"topic": f"t{variant}"})


def _answered(node_id: str, parent: str | None, turn: int, status: str = "alive",
              follow_up: str | None = "and then?") -> TreeNode:
    return TreeNode(
        id=node_id, parent=parent, turn=turn, user=Message.user(f"q {node_id}"),
        assistant=Message(role="assistant", parts=[TextPart(text=f"a {node_id}")]), status=status,  # type: ignore[arg-type]
        follow_up=Message.user(follow_up) if follow_up else None, tags={"topic": "t0"},
    )


async def test_first_turn_branches_k_times_per_prompt_variant() -> None:
    out = await _planner(k=3).run(TurnPlannerInput(prompts=[_prompt(0), _prompt(1)], nodes={}, turn=0))
    assert out.turn == 0
    assert [t.node_id for t in out.tasks] == ["v0.0", "v0.1", "v0.2", "v1.0", "v1.1", "v1.2"]
    for t in out.tasks:
        variant = int(t.node_id[1])
        assert t.parent is None and t.turn == 0 and t.candidate == int(t.node_id[-1])
        assert t.user.text == f"question {variant}"
        assert t.tags == {"topic": f"t{variant}", "situation": f"sit {variant}"}


async def test_later_turns_branch_under_alive_nodes_with_a_follow_up() -> None:
    nodes = {n.id: n for n in [
        _answered("v0.0", None, 0),
        _answered("v0.1", None, 0, status="pruned"),
        _answered("v0.2", None, 0, follow_up=None),
        _answered("v0.3", None, 0, status="failed"),
    ]}
    out = await _planner(k=2).run(TurnPlannerInput(prompts=[_prompt(0)], nodes=nodes, turn=0))
    assert out.turn == 1
    assert [(t.node_id, t.parent, t.turn, t.candidate) for t in out.tasks] == [
        ("v0.0.0", "v0.0", 1, 0), ("v0.0.1", "v0.0", 1, 1),
    ]
    assert all(t.user.text == "and then?" and t.tags == {"topic": "t0"} for t in out.tasks)


async def test_no_alive_branch_means_no_tasks() -> None:
    nodes = {"v0.0": _answered("v0.0", None, 0, status="pruned")}
    out = await _planner(k=2).run(TurnPlannerInput(prompts=[_prompt(0)], nodes=nodes, turn=0))
    assert out.tasks == [] and out.turn == 1


async def test_max_nodes_bounds_the_tree() -> None:
    out = await _planner(k=4, max_nodes=5).run(TurnPlannerInput(prompts=[_prompt(0), _prompt(1)], nodes={}, turn=0))
    assert [t.node_id for t in out.tasks] == ["v0.0", "v0.1", "v0.2", "v0.3", "v1.0"]
    nodes = {n.id: n for n in [_answered("v0.0", None, 0), _answered("v0.1", None, 0)]}
    full = await _planner(k=4, max_nodes=2).run(TurnPlannerInput(prompts=[], nodes=nodes, turn=0))
    assert full.tasks == []


async def test_langgraph_entry_returns_only_declared_outputs_and_is_deterministic() -> None:
    state = DialogueState(seed=Seed(id="s", prompt="p"), prompts=[_prompt(0)], records={"x": 1})
    planner = _planner(k=2)
    first = await planner(state)
    second = await planner(dict(state))  # LangGraph may hand a node a plain dict of state values
    assert set(first) == {"turn", "tasks"}
    assert first == second


def test_params_are_bounded() -> None:
    for bad in ({"k": 0}, {"k": 65}, {"max_nodes": 0}, {"branching": 2}):
        with pytest.raises(ValidationError):
            TurnPlannerParams.model_validate(bad)
    assert TurnPlanner.reads() == {"prompts", "nodes", "turn"} and TurnPlanner.writes() == {"turn", "tasks"}
