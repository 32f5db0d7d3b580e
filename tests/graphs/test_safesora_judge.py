"""The built-in SafeSora rubric and graphs: generated (or imported) answers judged on helpfulness
sub-dimensions and twelve harm categories, paired separately for helpfulness and harmlessness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from interleaf import DialogueStatus, open_run
from interleaf.datasets.reports import write_reports
from interleaf.datasets.sim_truth import DEFAULT_DEFECT_RATES
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import builtin_graphs, load_graph
from interleaf.graphs.rubric import load_rubric
from interleaf.state import DialogueState, Seed

from .run_builtin import DATA, point_models_at, run_graph

HELPFUL = ["instruction_following", "correctness", "informativeness", "aesthetics"]
HARMS = [
    "s1_adult_content", "s2_animal_abuse", "s3_child_abuse", "s4_crime", "s5_debated_sensitive_social_issues",
    "s6_drugs_weapons_substance_abuse", "s7_insulting_hateful_aggressive_behaviour", "s8_violence_injury_gore",
    "s9_racial_discrimination", "s10_other_discrimination", "s11_terrorism_organised_crime",
    "s12_other_harmful_content",
]


def test_safesora_rubric_has_the_helpfulness_and_harm_dimensions() -> None:
    rubric = load_rubric("safesora")
    assert rubric.group_members() == {"helpfulness": HELPFUL, "harmlessness": HARMS}
    for name in HELPFUL:
        d = rubric.dimension(name)
        assert (d.scale.low, d.scale.high) == (0, 3) and set(d.criteria) == {0, 1, 2, 3}
    for i, name in enumerate(HARMS, start=1):
        d = rubric.dimension(name)
        assert (d.scale.low, d.scale.high) == (0, 1) and d.description.startswith(f"S{i} ")
    # Not tied to images: every dimension also looks at video, and the instructions say so.
    assert all("video" in d.modalities for d in rubric.dimensions)
    assert "video" in rubric.instructions and all(d.level == "turn" for d in rubric.dimensions)


def test_safesora_graphs_are_data_and_validate() -> None:
    for name in ("safesora-judge", "safesora-judge-import"):
        spec, doc = load_graph(name)
        compile_graph(spec, doc)
        assert spec.nodes["judge"].params["rubric"] == "safesora"
        pairs = spec.nodes["pairs"].params
        assert pairs["rubric_local"] == "safesora" and pairs["by_group"] is True and pairs["rubric_global"] is None


def check_pairs(states: list[DialogueState]) -> set[str]:
    """Every pair is local, within one group's dimensions, with the margin the scores give."""
    rubric = load_rubric("safesora")
    groups: set[str] = set()
    for state in states:
        for pair in state.pairs:
            group = pair.id.rsplit("/", 1)[1]
            groups.add(group)
            dims = HELPFUL if group == "helpfulness" else HARMS
            assert pair.level == "local" and set(pair.preference) <= set(dims)
            a, b = state.nodes[pair.response_1], state.nodes[pair.response_2]
            assert a.parent == b.parent and a.turn == b.turn == 0
            sa = sum(rubric.dimension(d).weight * a.scores[d].value for d in dims)  # type: ignore[operator]
            sb = sum(rubric.dimension(d).weight * b.scores[d].value for d in dims)  # type: ignore[operator]
            assert pair.margin == pytest.approx(abs(sa - sb)) and pair.margin >= 1.0
            assert pair.overall == (1 if sa > sb else 2)
            for d in dims:
                va, vb = a.scores[d].value, b.scores[d].value
                assert pair.preference[d] == (0 if va == vb else 1 if va > vb else 2)  # type: ignore[operator]
    return groups


async def test_safesora_judge_generates_judges_and_pairs(sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tiny_pipeline_dir: Path) -> None:
    # The simulator's judge scores from the planted truth: harmlessness pairs need unsafe siblings.
    sim.configure(defect_rates={**DEFAULT_DEFECT_RATES, "unsafe": 0.5})
    point_models_at(monkeypatch, sim.base_url, {"INTERLEAF_ASSISTANT_MODEL": "assistant",
                                               "INTERLEAF_JUDGE_MODEL": "judge"})
    monkeypatch.setenv("INTERLEAF_T2I_MODEL", str(tiny_pipeline_dir))
    text = builtin_graphs()["safesora-judge"].read_text(encoding="utf-8")
    small = text.replace("size: 512", "size: 64").replace("steps: 4", "steps: 2")
    assert small != text
    path = tmp_path / "safesora-judge.yaml"
    path.write_text(small, encoding="utf-8")
    seeds = [Seed(id=f"p{i}", prompt=p) for i, p in enumerate(
        ["A fox jumping over a frozen river at dawn", "A street market in the rain", "A robot watering plants"])]
    _, totals, states = await run_graph(path, tmp_path / "run", seeds)
    assert totals.done == len(seeds) and totals.failed == 0
    # Every request the simulator received is counted, and nothing else.
    assert totals.calls == sim.requests and totals.failed_calls == 0
    for state in states:
        assert len(state.nodes) == 2
        for node in state.nodes.values():
            assert set(node.scores) == {*HELPFUL, *HARMS}
            if node.status != "failed":
                assert node.assistant is not None and all(
                    img.uri.startswith("file://") for img in node.assistant.images)
    assert check_pairs(states) == {"helpfulness", "harmlessness"}
    assert sim.requests_by_model["judge"] >= sum(
        1 for s in states for n in s.nodes.values() if n.status != "failed")


async def test_safesora_judge_import_scores_answers_from_seeds(sim: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    point_models_at(monkeypatch, sim.base_url, {"INTERLEAF_JUDGE_MODEL": "judge"})
    flower, house = str(DATA / "flower.png"), str(DATA / "house.png")
    seeds = [
        Seed(id=f"q{i}", prompt=f"Show me {what}", metadata={"answers": [
            {"text": f"Here is {what}.", "images": [flower], "model": "gen-a"},
            {"text": f"A picture of {what}.", "images": [house], "model": "gen-b", "tags": {"clip": i}},
            {"text": "I would rather not.", "model": "gen-c"},
        ]})
        for i, what in enumerate(["a flower", "a house", "a garden"])
    ]
    seeds.append(Seed(id="broken", prompt="Show me a boat", metadata={"answers": [{"text": "ok"}, {"txt": "typo"}]}))
    store, totals, states = await run_graph("safesora-judge-import", tmp_path / "run", seeds[:3])
    assert totals.done == 3 and sim.requests_by_model["judge"] == 9
    assert totals.calls == sim.requests == 9
    assert sim.requests_by_model["assistant"] == 0  # nothing is generated
    for state in states:
        assert sorted(state.nodes) == ["v0.0", "v0.1", "v0.2"]
        by_model = {n.tags["model"]: n for n in state.nodes.values()}
        assert set(by_model) == {"gen-a", "gen-b", "gen-c"}
        assert len(by_model["gen-a"].assistant.images) == 1 and not by_model["gen-c"].assistant.images  # type: ignore[union-attr]
        assert by_model["gen-b"].tags["clip"] == int(state.seed.id[1:])
        assert all(set(n.scores) == {*HELPFUL, *HARMS} for n in state.nodes.values())
    assert check_pairs(states) == {"helpfulness", "harmlessness"}

    # The report by model is written from the run.
    assert "reports/helpfulness_by_model.csv" in write_reports(store)
    csv_text = store.get_bytes("reports/helpfulness_by_model.csv").decode()
    assert csv_text.splitlines()[0] == "model,column,instruction_following,n"
    assert {line.split(",")[0] for line in csv_text.splitlines()[1:]} == {"gen-a", "gen-b", "gen-c"}

    # A seed whose answers do not fit fails alone, naming the field.
    run = open_run("safesora-judge-import", tmp_path / "run2")
    try:
        totals = await run.arun_seeds([seeds[3], seeds[0]])
    finally:
        await run.aclose()
        run.release()
    assert (totals.seeds, totals.failed, totals.done) == (2, 1, 1)
    status = DialogueStatus.load(run.store, "broken")
    assert status is not None and status.status == "failed" and status.error is not None
    assert "[answers[1].txt]" in status.error and "Extra inputs are not permitted" in status.error
    assert status.reason is not None and totals.failed_reasons == {status.reason: 1}
    ok = DialogueStatus.load(run.store, "q0")
    assert ok is not None and ok.status == "done" and ok.complete > 0
