"""The compiler on valid graphs: wiring, LangGraph fan-out, loops, retries and swapping by YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from interleaf.errors import SpecError
from interleaf.graphs.compiler import CompiledGraph, compile_graph
from interleaf.graphs.loading import builtin_graphs, load_graph, load_graph_text
from interleaf.graphs.predicates import HasAlive, MoreTurns, MoreTurnsArgs, NoArgs
from interleaf.nodes.registry import node_kinds
from interleaf.registry import Registry
from interleaf.state import DialogueState, Message, Seed, TreeNode
from tests.graphs import kinds

K = "tests.graphs.kinds"


def _compile(text: str, path: str = "g.yaml") -> CompiledGraph:
    return compile_graph(*load_graph_text(text, path))


async def _run(text: str, seed: Seed | None = None) -> DialogueState:
    graph = _compile(text).build()
    final = await graph.ainvoke(DialogueState(seed=seed or Seed(id="s1", prompt="hello")),
                                config={"recursion_limit": 100})
    return DialogueState.model_validate(final)


LINEAR = f"""
name: linear
models:
  small: {{model: "openai/small-model"}}
  large: {{model: "openai/large-model"}}
nodes:
  greet:
    kind: "{K}:Echo"
    model: small
    params: {{label: hi}}
edges:
  - {{from: START, to: greet}}
  - {{from: greet, to: END}}
"""


async def test_linear_graph_compiles_and_runs() -> None:
    cg = _compile(LINEAR)
    assert cg.order == ["greet"] and isinstance(cg.nodes["greet"], kinds.Echo)
    assert cg.nodes["greet"].reads() == {"seed"} and cg.nodes["greet"].writes() == {"records"}
    state = await _run(LINEAR)
    assert state.records["greet"] == {"text": "echo:hi:hello", "model": "openai/small-model"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (f'kind: "{K}:Echo"', f'kind: "{K}:Shout"', {"text": "SHOUT:HELLO", "model": "openai/small-model"}),
        ("model: small", "model: large", {"text": "echo:hi:hello", "model": "openai/large-model"}),
        ("params: {label: hi}", "params: {label: yo, times: 2}",
         {"text": "echo:yo:hello:echo:yo:hello", "model": "openai/small-model"}),
    ],
    ids=["kind", "model", "params"],
)
async def test_one_line_yaml_change_swaps_what_runs(old: str, new: str, expected: dict[str, Any]) -> None:
    assert LINEAR.count(old) == 1
    swapped = LINEAR.replace(old, new)
    assert sum(a != b for a, b in zip(LINEAR.splitlines(), swapped.splitlines(), strict=True)) == 1
    state = await _run(swapped)
    assert state.records["greet"] == expected


def test_registered_kind_names_and_import_paths_resolve_the_same_class() -> None:
    node_kinds.register("test_echo_registered")(kinds.Echo)
    by_name = _compile(LINEAR.replace(f'"{K}:Echo"', "test_echo_registered"))
    by_path = _compile(LINEAR)
    assert type(by_name.nodes["greet"]) is type(by_path.nodes["greet"]) is kinds.Echo
    assert "turn_planner" in node_kinds.names()


FAN_OUT = f"""
name: fan
nodes:
  first: {{kind: "{K}:Echo", params: {{label: a}}}}
  plan: {{kind: "{K}:MakeTasks", params: {{n: 3}}}}
  answer: {{kind: "{K}:SendProbe", params: {{label: cand}}}}
  after: {{kind: "{K}:Echo", params: {{label: z}}}}
edges:
  - {{from: START, to: first}}
  - {{from: first, to: plan}}
  - {{from: plan, fan_out: tasks, to: answer, empty: after}}
  - {{from: answer, to: after}}
  - {{from: after, to: END}}
"""


async def test_fan_out_sends_one_task_each_with_only_declared_inputs() -> None:
    kinds.PROBES.clear()
    state = await _run(FAN_OUT)
    assert sorted(state.nodes) == ["v0.0", "v0.1", "v0.2"]
    assert [state.nodes[f"v0.{c}"].assistant.text for c in range(3)] == [  # type: ignore[union-attr]
        f"cand answer {c} for s1" for c in range(3)
    ]
    assert len(kinds.PROBES) == 3
    for _, fields in kinds.PROBES:
        # SendProbe reads task and seed: nothing else of the state travels in the Send.
        assert fields == ["seed", "task"]
    assert set(state.records) == {"first", "after"}  # the join ran once after all candidates


async def test_empty_fan_out_takes_the_empty_branch() -> None:
    kinds.PROBES.clear()
    state = await _run(FAN_OUT.replace("params: {n: 3}", "params: {n: 0}"))
    assert kinds.PROBES == [] and state.nodes == {}
    assert set(state.records) == {"first", "after"}


LOOP = f"""
name: loop
nodes:
  start: {{kind: "{K}:StartTurn"}}
  step: {{kind: "{K}:NextTurn"}}
edges:
  - {{from: START, to: start}}
  - {{from: start, to: step}}
  - {{from: step, if: "{K}:TurnBelow", args: {{limit: 3}}, then: step, else: END}}
"""


async def test_loop_with_a_predicate_exit_runs_until_the_predicate_says_stop() -> None:
    state = await _run(LOOP)
    assert state.turn == 3 and state.records["turns"] == [0, 1, 2]


RETRY = f"""
name: retry
nodes:
  flaky:
    kind: "{K}:Flaky"
    params: {{failures: FAILURES, error: ERROR}}
    RETRY
edges:
  - {{from: START, to: flaky}}
  - {{from: flaky, to: END}}
"""


def _retry_graph(failures: int, error: str, retry: str) -> str:
    return RETRY.replace("FAILURES", str(failures)).replace("ERROR", error).replace("RETRY", retry)


@pytest.mark.parametrize(
    ("failures", "error", "retry", "attempts"),
    [
        (1, "transient", "retry: {max_attempts: 2, initial_interval: 0.01, jitter: false}", 2),
        (2, "transient", "retry: {max_attempts: 3, initial_interval: 0.01, backoff_factor: 1}", 3),
        (1, "value", "retry: {max_attempts: 2, initial_interval: 0.01, retry_on: any}", 2),
    ],
)
async def test_retry_policy_from_yaml_retries_the_node(failures: int, error: str, retry: str, attempts: int,
                                                       request: pytest.FixtureRequest) -> None:
    seed = Seed(id=request.node.name, prompt="p")
    state = await _run(_retry_graph(failures, error, retry), seed)
    assert state.records["flaky"] == {"attempts": attempts}
    assert kinds.ATTEMPTS[f"{seed.id}/flaky"] == attempts


@pytest.mark.parametrize(
    ("error", "retry", "exc_type", "attempts"),
    [
        ("transient", "", kinds.TransientFailure, 1),  # no retry: key -> first failure is final
        ("value", "retry: {max_attempts: 3, initial_interval: 0.01}", ValueError, 1),  # bugs are not retried
        ("transient", "retry: {max_attempts: 2, initial_interval: 0.01}", kinds.TransientFailure, 2),
    ],
)
async def test_failures_beyond_the_retry_policy_propagate(error: str, retry: str, exc_type: type[Exception],
                                                          attempts: int, request: pytest.FixtureRequest) -> None:
    seed = Seed(id=request.node.name, prompt="p")
    with pytest.raises(exc_type):
        await _run(_retry_graph(5, error, retry), seed)
    assert kinds.ATTEMPTS[f"{seed.id}/flaky"] == attempts


def test_tools_declared_by_import_path_are_validated_and_built() -> None:
    text = f"""
name: tools
tools:
  shout: {{kind: "{K}:EchoTool", prefix: ">>"}}
nodes:
  greet: {{kind: "{K}:UsesTool", tools: [shout]}}
edges:
  - {{from: START, to: greet}}
  - {{from: greet, to: END}}
"""
    cg = _compile(text)
    tools = cg.nodes["greet"].ctx.tools()
    assert isinstance(tools["shout"], kinds.EchoTool) and tools["shout"].params.prefix == ">>"


def test_compile_does_not_build_model_clients() -> None:
    cg = _compile(LINEAR)
    assert cg.runtime.model_clients() == {}


def test_optional_reads_need_no_writer_upstream() -> None:
    text = f"""
name: opt
nodes:
  step: {{kind: "{K}:NextTurn"}}
edges:
  - {{from: START, to: step}}
  - {{from: step, to: END}}
"""
    with pytest.raises(SpecError, match="reads state field 'records'"):
        _compile(text)

    class LenientNextTurn(kinds.NextTurn):
        optional_reads = frozenset({"turn", "records"})

    node_kinds.register("test_lenient_next_turn")(LenientNextTurn)
    assert _compile(text.replace(f'"{K}:NextTurn"', "test_lenient_next_turn")).order == ["step"]


@pytest.mark.parametrize("name", sorted(builtin_graphs()))
def test_builtin_graphs_compile_and_build(name: str) -> None:
    cg = compile_graph(*load_graph(name))
    graph = cg.build()
    assert set(cg.order) <= set(graph.nodes)


def _write_plugin_dist(root: Path) -> None:
    dist = root / "interleaf_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: interleaf-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[interleaf.nodes]\n"
        f"plugin_echo = {K}:Shout\n"
        "plugin_broken = tests.graphs.no_such_plugin_module:Kind\n"
    )


def test_entry_point_group_adds_node_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin_dist(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[Any] = Registry("node kind", "interleaf.nodes", ())
    assert registry.get("plugin_echo") is kinds.Shout
    assert "plugin_echo" in registry.names() and "plugin_broken" not in registry.names()
    with pytest.raises(LookupError, match=r"plugin_broken.*failed to load.*ModuleNotFoundError"):
        registry.get("plugin_broken")


async def test_graph_uses_a_node_kind_from_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin_dist(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(node_kinds, "_loaded", False)  # rediscover entry points on the new sys.path
    state = await _run(LINEAR.replace(f'"{K}:Echo"', "plugin_echo"))
    assert state.records["greet"]["text"] == "SHOUT:HELLO"
    with pytest.raises(SpecError, match="failed to load") as info:
        _compile(LINEAR.replace(f'"{K}:Echo"', "plugin_broken"))
    assert info.value.field == "nodes.greet.kind"


def _tree_state(turn: int, statuses: dict[str, str]) -> DialogueState:
    nodes = {
        nid: TreeNode(id=nid, parent=nid.rsplit(".", 1)[0] if nid.count(".") > 1 else None,
                      turn=nid.count(".") - 1, user=Message.user("q"), status=status)  # type: ignore[arg-type]
        for nid, status in statuses.items()
    }
    return DialogueState(seed=Seed(id="s", prompt="p"), turn=turn, nodes=nodes)


def test_builtin_predicates() -> None:
    more = MoreTurns(MoreTurnsArgs(max_turns=3))
    assert more(_tree_state(0, {"v0.0": "alive"}))
    assert more(_tree_state(1, {"v0.0": "alive", "v0.0.0": "alive"}))
    assert not more(_tree_state(2, {"v0.0": "alive", "v0.0.0": "alive", "v0.0.0.0": "alive"}))
    assert not more(_tree_state(0, {"v0.0": "pruned", "v0.1": "failed"}))
    alive = HasAlive(NoArgs())
    assert alive(_tree_state(0, {"v0.0": "pruned", "v0.1": "alive"}))
    assert not alive(_tree_state(0, {"v0.0": "pruned"}))
