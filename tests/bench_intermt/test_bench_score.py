"""``interleaf bench intermt --task score`` end to end on the simulator, against hand-worked metrics.

People's labels (data/score.jsonl) and the scripted judge (judges.JUDGE_LOCAL / JUDGE_GLOBAL):

=========  ==================  ==================  =====================================
unit       people              judge               matches
=========  ==================  ==================  =====================================
s1 r1      3 2 3 3             3 2 3 3             4/4
s2 r1      2 2 2 3             2 2 2 3             4/4
s2 r2      1 2 1 2             1 2 2 3             2/4
s3 r1      3 2 3 3             3 2 3 3             4/4
s3 r2      2 2 2 2             3 2 2 3             2/4
s3 r3      0 2 1 1             2 2 ? 3             1/3 (text_quality unreadable twice)
s1 (all)   3 3 2 3 3           3 3 2 3 3           5/5
s2 (all)   2 2 1 2 3           2 3 1 3 3           3/5
s3 (all)   1 1 0 1 2           2 1 2 2 3           1/5
=========  ==================  ==================  =====================================

(local dimensions: local_image_text_consistency, visual_perceptual_quality, text_quality,
context_coherence; global: context_awareness, helpfulness, crucial_step_recognition,
global_image_text_consistency, style_coherence.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from interleaf.bench.report import write_bench_report
from interleaf.datasets.reports import write_reports
from interleaf.datasets.viewer import render_run
from interleaf.run.reader import RunReader

from .judges import DATA, add_rules, bench, point_at, score_judge

JUDGE = "openai/bench-judge"


@pytest.fixture(scope="module")
def score_run(tmp_path_factory: pytest.TempPathFactory, simulator: Any) -> dict[str, Any]:
    """One bench run, made in three invocations: --limit 1, the rest, then again (nothing left)."""
    mp = pytest.MonkeyPatch()
    simulator.rules.clear()
    point_at(mp, simulator)
    out = tmp_path_factory.mktemp("bench-score") / "run"
    counted = add_rules(simulator, **{"bench-judge": score_judge})["bench-judge"]
    calls = []
    results = []
    try:
        for extra in (["--limit", "1"], [], []):
            before = counted.calls
            results.append(bench("intermt", str(DATA / "score.jsonl"), "--task", "score", "--judge", JUDGE,
                                 "--out", str(out), "-q", *extra))
            calls.append(counted.calls - before)
    finally:
        simulator.rules.clear()
        mp.undo()
    return {"out": out, "calls": calls, "results": results}


def test_resumed_bench_makes_no_repeated_judge_calls(score_run: dict[str, Any]) -> None:
    assert [r.exit_code for r in score_run["results"]] == [0, 0, 0], [r.output for r in score_run["results"]]
    # s1: one turn and the dialogue. Then s2 (2 turns + dialogue) and s3 (3 turns, one re-ask, dialogue);
    # s1 is not judged again. The third invocation finds everything done.
    assert score_run["calls"] == [2, 8, 0]
    assert "1 already done" in score_run["results"][1].stdout
    assert "3 already done; 0 model requests" in score_run["results"][2].stdout


def test_score_metrics_match_the_hand_computed_values(score_run: dict[str, Any]) -> None:
    out: Path = score_run["out"]
    summary = json.loads((out / "reports" / "intermt_bench.json").read_text())
    assert summary["task"] == "score" and summary["judge"] == JUDGE
    assert (summary["items"], summary["judgments"], summary["parsed"], summary["unparsed"]) == (3, 9, 8, 1)
    # 17 + 7 + 2 matches of 17 + 13 + 8 labels.
    assert summary["comparisons"] == 38 and summary["agreement"] == pytest.approx(26 / 38)
    assert summary["by_turns"] == [
        {"turns": 1, "items": 4, "comparisons": 17, "metric": 1.0},
        {"turns": 2, "items": 3, "comparisons": 13, "metric": pytest.approx(7 / 13)},
        {"turns": 3, "items": 2, "comparisons": 8, "metric": 0.25},
    ]
    assert [p["metric"] for p in summary["by_turns_by_level"]["turn"]] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert [p["metric"] for p in summary["by_turns_by_level"]["dialogue"]] == [1.0, 0.6, 0.2]
    dims = summary["dimensions"]
    lit, vpq, tq, cc = (dims[d] for d in ("local_image_text_consistency", "visual_perceptual_quality",
                                          "text_quality", "context_coherence"))
    # local_image_text_consistency: people 3 2 1 3 2 0, judge 3 2 1 3 3 2: n=6, Sxy=10/3, Sxx=41/6, Syy=10/3.
    assert lit["agreement"] == pytest.approx(4 / 6) and lit["pearson"] == pytest.approx(10 / math.sqrt(205))
    # text_quality: the unreadable s3 r3 is left out: people 3 2 1 3 2, judge 3 2 2 3 2.
    assert (tq["n"], tq["unparsed"]) == (5, 1)
    assert tq["agreement"] == pytest.approx(0.8) and tq["pearson"] == pytest.approx(4 / math.sqrt(21))
    # Constant sides have no correlation: everyone gave 2 for visual quality; the judge 3 for coherence.
    assert vpq["agreement"] == 1.0 and vpq["pearson"] is None
    assert cc["agreement"] == 0.5 and cc["pearson"] is None
    # Three dialogues: people 3 2 1 vs judge 3 2 2 -> r = sqrt(3)/2; people 2 1 0 vs judge 2 1 2 -> r = 0.
    assert dims["context_awareness"]["pearson"] == pytest.approx(math.sqrt(3) / 2)
    assert dims["crucial_step_recognition"]["pearson"] == pytest.approx(0.0)
    assert dims["style_coherence"]["pearson"] is None
    defined = [10 / math.sqrt(205), 4 / math.sqrt(21), math.sqrt(3) / 2, math.sqrt(3) / 2, 0.0, math.sqrt(3) / 2]
    assert summary["pearson"] == pytest.approx(sum(defined) / len(defined))
    assert summary["placeholders"] == {"items": 0, "images": 0}
    report = (out / "reports" / "intermt_bench.md").read_text()
    assert "9 judge answers: 8 parsed, 1 unparsed" in report and "intermt_bench_by_turns.png" in report
    assert (out / "reports" / "intermt_bench_by_turns.png").read_bytes().startswith(b"\x89PNG")


def test_interleaf_report_rebuilds_it_and_agreement_gives_the_same_numbers(score_run: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    out: Path = score_run["out"]
    written = out / "reports" / "intermt_bench.json"
    before = written.read_bytes()
    written.unlink()
    keys = write_reports(str(out))  # what `interleaf report DIR` does
    assert "reports/intermt_bench.json" in keys and written.read_bytes() == before
    # Any run with judge and people's scores: the same metrics.
    result = bench("agreement", str(out), "--out", str(tmp_path / "agreement"))
    assert result.exit_code == 0, result.output
    assert "agreement 0.684" in result.stdout
    again = json.loads((tmp_path / "agreement" / "intermt_bench.json").read_text())
    original = json.loads(before)
    assert again["task"] == "agreement" and {k: v for k, v in again.items() if k != "task"} == {
        k: v for k, v in original.items() if k != "task"}
    assert write_bench_report(str(out), "agreement", tmp_path / "again")  # the function behind it


def test_the_run_holds_people_and_judge_side_by_side(score_run: dict[str, Any], tmp_path: Path) -> None:
    out: Path = score_run["out"]
    states = {s.seed.id: s for s in RunReader.open(str(out)).dialogues()}
    node = states["s2"].nodes["v0.0"]
    assert {h.dimension: h.value for h in node.human_scores}["context_coherence"] == 3.0
    assert node.human_scores[0].origin == "import:intermt"
    assert node.scores["text_quality"].value == 2.0
    # Duplicate-content images of one round stay two references through the bench run too.
    first = states["s1"].nodes["v0.0"]
    assert len(first.user.images) == 2 and first.user.images[0].sha256 == first.user.images[1].sha256
    index = render_run(str(out), tmp_path / "view")
    page = index.read_text(encoding="utf-8")
    data = json.loads(page.split('<script type="application/json" id="run-data">', 1)[1].split("</script>", 1)[0])
    s3 = next(s for s in data["seeds"] if s["id"] == "s3")
    leaf = next(n for n in s3["nodes"] if n["id"] == "v0.0.0.0")
    s3_rows = json.loads((DATA / "score.jsonl").read_text().splitlines()[2])["conversations"]
    assert {h["dim"] for h in leaf["human_scores"]} == set(s3_rows[3]["annotations"])
    assert [s["value"] for s in leaf["scores"] if s["dim"] == "text_quality"] == [None]
    assert {h["dim"] for h in leaf["dialogue_human_scores"]} >= {"helpfulness", "style_coherence"}
    assert "compareTable" in page
