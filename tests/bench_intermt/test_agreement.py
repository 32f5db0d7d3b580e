"""The metrics on a run annotated later (two people, Label Studio origins), and the bench's refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from interleaf.bench.metrics import bench_summary, pair_summary, pearson
from interleaf.run.writer import RunWriter
from interleaf.state import (
    DialogueState,
    HumanScore,
    Message,
    ModelCall,
    PreferencePair,
    Provenance,
    Score,
    Seed,
    TextPart,
    TreeNode,
)

from .judges import DATA, bench


def test_pearson_by_hand() -> None:
    # x = 1 2 3, y = 1 3 2: Sxy = 1, Sxx = Syy = 2 -> 1/2.
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert pearson([0, 1, 2, 3], [0, 2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1], [1]) is None and pearson([2, 2], [1, 3]) is None


def _answer(text: str) -> Message:
    return Message(role="assistant", parts=[TextPart(text=text)])


def _judged(scores: dict[str, float | None]) -> dict[str, Score]:
    return {k: Score(value=v) for k, v in scores.items()}


def _people(who: str, scores: dict[str, float]) -> list[HumanScore]:
    return [HumanScore(dimension=k, value=v, annotator=who, origin=f"label-studio:proj/{who}")
            for k, v in scores.items()]


def annotated_run(root: Path) -> Path:
    """A generated run (the judge's scores from consistency_check and global_judge) that two people
    annotated afterwards: turn 1 by both, turn 2 by one, the dialogue by one."""
    judge = Provenance(node="check", kind="consistency_check", model="judge",
                       calls=[ModelCall(model="judge", provider_model="openai/gpt-4o-mini")])
    first = TreeNode(id="v0.0", turn=0, user=Message.user("q1"), assistant=_answer("a1"), provenance=[judge],
                     scores=_judged({"text_quality": 3, "context_coherence": 2}),
                     human_scores=_people("ann", {"text_quality": 3, "context_coherence": 1})
                     + _people("bob", {"text_quality": 2, "context_coherence": 2}))
    # ann changed her mind on turn 2's text_quality: only the later label counts.
    changed = HumanScore(dimension="text_quality", value=3, annotator="ann", at=1.0, origin="label-studio:proj/ann")
    second = TreeNode(id="v0.0.0", parent="v0.0", turn=1, user=Message.user("q2"), assistant=_answer("a2"),
                      provenance=[judge], scores=_judged({"text_quality": 1, "context_coherence": None}),
                      human_scores=[changed, *(h.model_copy(update={"at": 2.0}) for h in _people(
                          "ann", {"text_quality": 1, "context_coherence": 3}))])
    other = TreeNode(id="v0.1", turn=0, candidate=1, user=Message.user("q1"), assistant=_answer("b1"),
                     status="pruned", scores=_judged({"text_quality": 0}))
    state = DialogueState(
        seed=Seed(id="trip", prompt="q1"), nodes={n.id: n for n in (first, second, other)}, status="done",
        dialogue_scores={"v0.0.0": _judged({"helpfulness": 2})},
        human_dialogue_scores={"v0.0.0": _people("ann", {"helpfulness": 3})},
        pairs=[PreferencePair(id="judge-pair", level="local", turn=0, response_1="v0.1", response_2="v0.0",
                              preference={"text_quality": 2}, decided_by="judge"),
               PreferencePair(id="people-pair", level="local", turn=0, response_1="v0.0", response_2="v0.1",
                              preference={"text_quality": 1, "context_coherence": 0}, decided_by="human")],
    )
    writer = RunWriter(root)
    writer.write_dialogue(state)
    writer.write_manifest("intermt", {})
    return root


def test_agreement_on_an_annotated_run(tmp_path: Path) -> None:
    run = annotated_run(tmp_path / "run")
    result = bench("agreement", str(run), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # Comparisons (person, judge): turn 1 text 3-3 ok, 2-3; coherence 1-2, 2-2 ok; turn 2 text 1-1 ok,
    # coherence unreadable (lost); dialogue helpfulness 3-2. 3 of 6 match.
    assert summary["task"] == "agreement" and summary["judge"] == "openai/gpt-4o-mini"
    assert (summary["items"], summary["judgments"], summary["parsed"], summary["unparsed"]) == (1, 3, 2, 1)
    assert summary["comparisons"] == 6 and summary["agreement"] == 0.5
    tq = summary["dimensions"]["text_quality"]
    # people 3 2 1, judge 3 3 1: Sxy = 2, Sxx = 2, Syy = 8/3 -> 2 / sqrt(16/3) = sqrt(3)/2.
    assert tq["n"] == 3 and tq["pearson"] == pytest.approx(math.sqrt(3) / 2)
    assert summary["dimensions"]["context_coherence"]["unparsed"] == 1
    # ann and bob labelled turn 1: 3 vs 2 and 1 vs 2, no exact match between people.
    assert summary["human_agreement"] == {"n": 2, "agreement": 0.0}
    assert summary["by_turns"] == [{"turns": 1, "items": 1, "comparisons": 4, "metric": 0.5},
                                   {"turns": 2, "items": 2, "comparisons": 2, "metric": 0.5}]
    # The judge's pair names the sides the other way round: it still agrees on text_quality.
    assert summary["pair"]["accuracy"] == 1.0 and summary["pair"]["ties_excluded"] == 1
    # Written under the run's reports/ by default.
    assert bench("agreement", str(run)).exit_code == 0
    assert json.loads((run / "reports" / "intermt_bench.json").read_text())["agreement"] == 0.5


def test_pair_orientation_and_missing_verdicts() -> None:
    state = DialogueState.model_validate_json(json.dumps({
        "seed": {"id": "s", "prompt": "q"},
        "nodes": {i: {"id": i, "user": {"role": "user", "parts": []}} for i in ("a", "b")},
        "pairs": [{"id": "p", "level": "local", "response_1": "a", "response_2": "b", "preference": {"x": 1},
                   "decided_by": "human"}],
    }))
    summary = pair_summary([state])
    assert (summary["items"], summary["judgments"], summary["unjudged"], summary["accuracy"]) == (1, 0, 1, None)
    assert bench_summary([state], "pair")["judge"] is None


def test_refusals_exit_2(tmp_path: Path) -> None:
    pairs = ["intermt", str(DATA / "pairs"), "--images-root", str(DATA), "--out", str(tmp_path / "run")]
    wrong = bench(*pairs, "--task", "score")
    assert wrong.exit_code == 2
    assert "no item with people's labels for --task score" in wrong.stderr
    assert "1 global pair record(s), 3 local pair record(s)" in wrong.stderr
    assert bench(*pairs, "--task", "nope").exit_code == 2
    assert "--grader is for --task crucial" in bench(*pairs, "--task", "pair", "--grader", "openai/x").stderr
    assert "--missing-images must be" in bench(*pairs, "--task", "pair", "--missing-images", "maybe").stderr
    missing = bench("intermt", str(tmp_path / "nothing.json"), "--task", "score", "--out", str(tmp_path / "x"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    # A run with no people's scores has nothing to compare.
    empty = tmp_path / "plain"
    writer = RunWriter(empty)
    writer.write_dialogue(DialogueState(seed=Seed(id="s", prompt="q"), status="done", nodes={"v0.0": TreeNode(
        id="v0.0", user=Message.user("q"), assistant=_answer("a"), scores=_judged({"text_quality": 2}))}))
    writer.write_manifest("intermt", {})
    nothing = bench("agreement", str(empty))
    assert nothing.exit_code == 2 and "nothing to compare" in nothing.stderr
    assert bench("agreement", str(tmp_path / "no-run")).exit_code == 2
