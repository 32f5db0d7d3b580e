"""The built-in graphs `intermt` and `intermt-lite`: they compile, differ only in YAML, and grow real trees.

The whole-graph runs use the simulator over real HTTP for every model and tiny random-weight
diffusers pipelines for the image tools. The `intermt` copy used there only shrinks the image
size and steps (CPU time); k, keep, max_turns and all wiring are the built-in's.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import builtin_graphs, load_graph, load_graph_text
from interleaf.nodes.judging import history_key
from interleaf.runtime import Runtime
from interleaf.state import DialogueState, Seed
from interleaf.storage.store import ObjectStore

SEEDS = [
    Seed(id="tides", prompt="Explain how tides work and show a diagram of the moon's pull.",
         situation="stepwise incremental tasks"),
    Seed(id="logo", prompt="Design a simple logo for a bakery called Morning Crumb."),
]


def _missing(*modules: str) -> str | None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            return m
    return None


def test_both_builtins_compile_and_differ_only_in_yaml() -> None:
    assert {"intermt", "intermt-lite"} <= set(builtin_graphs())
    full, _ = load_graph("intermt")
    lite, _ = load_graph("intermt-lite")
    compile_graph(*load_graph("intermt"))
    compile_graph(*load_graph("intermt-lite"))
    assert {n: s.kind for n, s in full.nodes.items()} == {n: s.kind for n, s in lite.nodes.items()}
    assert [(e.source, e.to, e.fan_out, e.if_, e.then, e.else_) for e in full.edges] == [
        (e.source, e.to, e.fan_out, e.if_, e.then, e.else_) for e in lite.edges]
    assert full.nodes["plan"].params["k"] == 3 and full.nodes["prune"].params["keep"] == 2
    assert next(e for e in full.edges if e.if_).args == {"max_turns": 4}
    assert full.nodes["answer"].tools == ["generate_image", "edit_image"] and set(full.tools) == {
        "generate_image", "edit_image"}
    assert lite.tools == {} and lite.nodes["answer"].tools == [] and lite.nodes["plan"].params["k"] == 2
    judges = {lite.nodes[n].model for n in ("check", "rate")}
    assert judges == {"judge"}
    for spec in (full, lite):
        for m in spec.models.values():
            assert m.model.startswith("${INTERLEAF_") and m.api_key == "${OPENAI_API_KEY:-}"


def check_tree_rules(state: DialogueState, *, variants: int, k: int, keep: int, max_turns: int) -> None:
    """The tree's counts follow from the planner, pruner and stop rules."""
    nodes = state.nodes
    by_turn: dict[int, list[Any]] = {}
    for n in nodes.values():
        by_turn.setdefault(n.turn, []).append(n)
    assert max(by_turn) <= max_turns - 1
    assert len(by_turn[0]) == variants * k
    for t in range(1, max(by_turn) + 1):
        parents = [n for n in by_turn[t - 1] if n.status == "alive" and n.follow_up is not None]
        assert len(by_turn[t]) == k * len(parents)
        assert {n.parent for n in by_turn[t]} == {p.id for p in parents}
    for n in nodes.values():
        if n.status != "alive":
            assert n.reason, n.id
        if n.status == "alive" or (n.status == "pruned" and n.reason and n.reason.startswith("rank")):
            assert n.scores and n.assistant is not None
    groups: dict[str, list[Any]] = {}
    for n in nodes.values():
        groups.setdefault(history_key(n), []).append(n)
    for members in groups.values():
        alive = [n for n in members if n.status == "alive"]
        eligible = [n for n in members if n.status != "failed"]
        assert len(alive) == min(keep, len(eligible))
    leaves = [n for n in state.leaves() if n.turn == max(by_turn)]
    assert set(state.dialogue_scores) == {n.id for n in leaves}
    ids = set(nodes)
    for p in state.pairs:
        assert {p.response_1, p.response_2} <= ids
        assert p.overall in (0, 1, 2) and set(p.preference.values()) <= {0, 1, 2}


async def _grow(path: Path, tmp_path: Path, seeds: list[Seed]) -> list[DialogueState]:
    spec, doc = load_graph(path)
    runtime = Runtime(spec, store=ObjectStore(tmp_path / "store"), spec_dir=path.parent)
    graph = compile_graph(spec, doc, runtime).build()
    try:
        out = []
        for seed in seeds:
            final = await graph.ainvoke(DialogueState(seed=seed), config={"recursion_limit": 500})
            out.append(DialogueState.model_validate(final))
        return out
    finally:
        await runtime.aclose()


def _point_models_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv("INTERLEAF_API_BASE", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    for var, role in (("EXPANDER", "expand"), ("ASSISTANT", "assistant"), ("JUDGE", "judge"), ("USER_SIM", "user")):
        monkeypatch.setenv(f"INTERLEAF_{var}_MODEL", f"openai/{role}")


async def test_intermt_lite_grows_trees_on_the_simulator(sim: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _point_models_at(monkeypatch, sim.base_url)
    states = await _grow(builtin_graphs()["intermt-lite"], tmp_path, SEEDS)
    for state in states:
        check_tree_rules(state, variants=2, k=2, keep=1, max_turns=3)
        assert len(state.prompts) == 2 and all(p.situation for p in state.prompts)
        assert max(n.turn for n in state.nodes.values()) == 2
        assert all(not n.assistant.images for n in state.nodes.values() if n.assistant)
        for scores in state.dialogue_scores.values():
            assert set(scores) == {"context_awareness", "helpfulness", "crucial_step_recognition"}
        pruned = [n for n in state.nodes.values() if n.status == "pruned"]
        assert pruned and all(n.reason and n.reason.startswith("rank 2 of 2 under ") for n in pruned)
    assert sim.requests_by_model["judge"] > 0 and sim.requests_by_model["user"] > 0


async def test_intermt_grows_trees_with_images(sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               request: pytest.FixtureRequest) -> None:
    missing = _missing("interleaf.tools.images", "interleaf.testing.tiny_pipelines")
    if missing:
        pytest.skip(f"{missing} is not there yet")
    _point_models_at(monkeypatch, sim.base_url)
    monkeypatch.setenv("INTERLEAF_T2I_MODEL", str(request.getfixturevalue("tiny_pipeline_dir")))
    monkeypatch.setenv("INTERLEAF_EDIT_MODEL", str(request.getfixturevalue("tiny_pix2pix_dir")))
    text = builtin_graphs()["intermt"].read_text(encoding="utf-8")
    small = text.replace("size: 512", "size: 64").replace("steps: 20", "steps: 2").replace("steps: 4", "steps: 2")
    path = tmp_path / "intermt.yaml"
    path.write_text(small, encoding="utf-8")
    load_graph_text(small, str(path))
    (state,) = await _grow(path, tmp_path, SEEDS[:1])
    check_tree_rules(state, variants=1, k=3, keep=2, max_turns=4)
    statuses = Counter(n.status for n in state.nodes.values())
    assert max(n.turn for n in state.nodes.values()) == 3
    assert len(state.dialogue_scores) >= 8, statuses
    images = [p for n in state.nodes.values() if n.assistant for p in n.assistant.parts if p.type == "image"]
    assert images and all(p.marker for p in images)
    assert any(p.level == "local" for p in state.pairs) and any(p.level == "global" for p in state.pairs)
