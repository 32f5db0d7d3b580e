import json
from pathlib import Path

from interleaf.state import DialogueState
from interleaf.testing.demo import DEMO_NOTE, DEMO_SEEDS, demo_graph, run_demo


def test_demo_graph_copy_shrinks_only_the_image_tools(tmp_path: Path) -> None:
    from interleaf.graphs.loading import load_graph

    original, _ = load_graph("intermt")
    copy, _ = load_graph(demo_graph("intermt", tmp_path / "g.yaml", image_size=32, steps=1))
    for name, tool in copy.tools.items():
        assert tool.params()["size"] == 32 and tool.params()["steps"] == 1
        rest = {k: v for k, v in tool.params().items() if k not in ("size", "steps")}
        assert rest == {k: v for k, v in original.tools[name].params().items() if k not in ("size", "steps")}
    assert copy.nodes == original.nodes and copy.edges == original.edges and copy.models == original.models


def test_demo_runs_a_builtin_graph_offline_and_resumes(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    first = DEMO_SEEDS.read_text(encoding="utf-8").splitlines()[0]
    seeds.write_text(first + "\n", encoding="utf-8")
    # Seed images are relative to the seeds file.
    for img in json.loads(first).get("images", []):
        (tmp_path / img).write_bytes((DEMO_SEEDS.parent / img).read_bytes())

    out = tmp_path / "run"
    outcome = run_demo(out, graph="intermt-lite", seeds=seeds, progress=False)
    assert outcome.outcome == "finished" and outcome.exit_code == 0, outcome.describe()
    assert (outcome.totals.seeds, outcome.totals.done, outcome.totals.failed, outcome.totals.pending) == (1, 1, 0, 0)
    assert outcome.totals.calls > 0 and outcome.totals.failed_calls == 0
    # The summary tells the truth about the demo's data.
    assert DEMO_NOTE in outcome.describe() and "scripted" in DEMO_NOTE and "random-weight" in DEMO_NOTE

    (dialogue,) = (out / "dialogues").glob("*.json")
    state = DialogueState.model_validate_json(dialogue.read_text(encoding="utf-8"))
    models = {p.model for n in state.nodes.values() for p in n.provenance for p in [p] if p.model}
    assert models, "provenance should name the models used"
    assert state.pairs, "the lite graph should still produce preference pairs"
    # The simulator was only reachable inside the demo; a rerun must not need it.
    again = run_demo(out, graph="intermt-lite", seeds=seeds, progress=False)
    assert (again.totals.done, again.totals.skipped, again.totals.calls) == (0, 1, 0)
    assert again.exit_code == 0 and again.run_id == outcome.run_id
