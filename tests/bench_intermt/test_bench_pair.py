"""``interleaf bench intermt --task pair`` on the released local and global pair shapes.

People (data/pairs/) and the scripted judge (judges.JUDGE_PAIRS), as response 1 / 2 (0 = tie):

==============  ======  ================  ==================  ======================================
pair            turns   people            judge               compared (people's ties left out)
==============  ======  ================  ==================  ======================================
local_pairs-0   1       1 2 1 0           1 2 1 1             3/3
local_pairs-1   2       2 2 1 1           2 1 1 2             2/4
local_pairs-2   3       1 1 2 2           2 1 ? tie           1/3 (text_quality unreadable; a judge tie is wrong)
global_pairs-0  2       1 1 2 0 1         1 2 2 1 1           3/4
==============  ======  ================  ==================  ======================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from interleaf.datasets.export import export_run
from interleaf.nodes.pair_judge import swapped
from interleaf.run.reader import RunReader

from .judges import DATA, JUDGE_PAIRS, add_rules, bench, pair_judge, point_at


def test_pair_accuracy_ties_and_position(sim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    point_at(monkeypatch, sim)
    counted = add_rules(sim, **{"bench-judge": pair_judge})["bench-judge"]
    out = tmp_path / "run"
    result = bench("intermt", str(DATA / "pairs"), "--task", "pair", "--judge", "openai/bench-judge",
                   "--images-root", str(DATA), "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert counted.calls == 5  # four pairs, one re-ask for the unreadable text_quality
    summary = json.loads((out / "reports" / "intermt_bench.json").read_text())
    assert (summary["items"], summary["parsed"], summary["unparsed"]) == (4, 3, 1)
    assert summary["accuracy"] == pytest.approx(9 / 14) and summary["comparisons"] == 14
    assert (summary["ties_excluded"], summary["judge_ties"]) == (2, 1)
    assert summary["by_turns"] == [
        {"turns": 1, "items": 1, "comparisons": 3, "metric": 1.0},
        {"turns": 2, "items": 2, "comparisons": 8, "metric": 0.625},
        {"turns": 3, "items": 1, "comparisons": 3, "metric": pytest.approx(1 / 3)},
    ]
    dims = summary["dimensions"]
    assert {d: (v["n"], v["accuracy"]) for d, v in dims.items()} == {
        "local_image_text_consistency": (3, pytest.approx(2 / 3)),
        "visual_perceptual_quality": (3, pytest.approx(2 / 3)),
        "text_quality": (2, 1.0), "context_coherence": (2, 0.0), "context_awareness": (1, 1.0),
        "helpfulness": (1, 0.0), "crucial_step_recognition": (1, 1.0), "global_image_text_consistency": (0, None),
        "style_coherence": (1, 1.0),
    }
    assert dims["text_quality"]["unparsed"] == 1 and dims["context_coherence"]["judge_ties"] == 1
    # Position: of the judge's non-tie choices, the share that picked the side shown first.
    first = shown = 0
    for pid, item in (("local_pairs-0", "lp0"), ("local_pairs-1", "lp1"), ("local_pairs-2", "lp2"),
                      ("global_pairs-0", "gp0")):
        for choice in JUDGE_PAIRS[item].values():
            if choice in (1, 2):
                shown += 1
                first += choice == (2 if swapped(pid) else 1)
    assert summary["first_position_rate"] == pytest.approx(first / shown)

    # The run holds both verdicts on the same answers; an export writes both, each saying who decided.
    states = {s.seed.id: s for s in RunReader.open(str(out)).dialogues()}
    pairs = {p.id: p for p in states["local_pairs-1"].pairs}
    assert pairs["local_pairs-1"].decided_by == "human" and pairs["local_pairs-1/judge"].decided_by == "judge"
    assert pairs["local_pairs-1/judge"].preference == {"context_coherence": 2, "local_image_text_consistency": 2,
                                                       "text_quality": 1, "visual_perceptual_quality": 1}
    export_run(str(out), "intermt", tmp_path / "export", None)
    local = {r["id"]: r for r in json.loads((tmp_path / "export" / "local_pairs.json").read_text())}
    assert local["local_pairs-0"]["decided_by"] == "human" and local["local_pairs-0/judge"]["decided_by"] == "judge"
    assert local["local_pairs-0"]["category"] == "travel"  # a key the run does not model, kept
