"""``interleaf bench intermt --task crucial``, with an image missing: refused, then judged with a placeholder.

People (data/crucial.json): c1 (1 round) 3, c2 (2 rounds) 2, c3 (3 rounds) 1, each with a reason.
The judge scores 3, 3 and breaks the format for c3 (its raw text is graded); the grader grades
5, 3 and 1: mean 3.0, one of each, by turns 1: 5, 2: 3, 3: 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from interleaf.datasets.intermt import PLACEHOLDER_TAG, is_placeholder
from interleaf.run.reader import RunReader

from .judges import DATA, add_rules, bench, crucial_judge, grader, point_at


def test_crucial_step_grades_and_placeholders(sim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    point_at(monkeypatch, sim)
    counted = add_rules(sim, **{"bench-judge": crucial_judge, "bench-grader": grader})
    # The images are published apart from the file; here the root lacks c2's image.
    shutil.copy(DATA / "crucial.json", tmp_path / "crucial.json")
    (tmp_path / "imgs").mkdir()
    args = ["intermt", str(tmp_path / "crucial.json"), "--task", "crucial", "--judge", "openai/bench-judge",
            "--grader", "openai/bench-grader", "--images-root", str(tmp_path / "imgs"), "--out", str(tmp_path / "run"),
            "-q"]
    refused = bench(*args)
    assert refused.exit_code == 2
    assert "[[1].conversations[1].prompt_images[0]]: image file 'images/yellow.png' not found" in refused.stderr
    assert "1 image file(s) missing in 1 record(s)" in refused.stderr and "--missing-images" in refused.stderr
    assert counted["bench-judge"].calls == 0

    result = bench(*args, "--missing-images", "placeholder")
    assert result.exit_code == 0, result.output
    assert "1 items will be judged without their images" in result.stderr
    assert (counted["bench-judge"].calls, counted["bench-grader"].calls) == (4, 3)  # c3's answer is re-asked once
    summary = json.loads((tmp_path / "run" / "reports" / "intermt_bench.json").read_text())
    assert (summary["judge"], summary["grader"]) == ("openai/bench-judge", "openai/bench-grader")
    assert (summary["items"], summary["parsed"], summary["unparsed"], summary["graded"]) == (3, 2, 1, 3)
    assert summary["mean_score"] == 3.0
    assert summary["distribution"] == {"1": 1, "2": 0, "3": 1, "4": 0, "5": 1}
    assert summary["by_turns"] == [{"turns": 1, "items": 1, "metric": 5.0}, {"turns": 2, "items": 1, "metric": 3.0},
                                   {"turns": 3, "items": 1, "metric": 1.0}]
    assert summary["score_agreement"] == {"n": 2, "agreement": 0.5}  # c1 3 = 3, c2 3 != 2
    assert summary["placeholders"] == {"items": 1, "images": 1}
    assert "**1 items judged without their images**" in (tmp_path / "run" / "reports" / "intermt_bench.md").read_text()
    # Marked in the run too: the node's tag names the missing file; the image is the placeholder.
    state = next(s for s in RunReader.open(str(tmp_path / "run")).dialogues() if s.seed.id == "c2")
    node = state.nodes["v0.0.0"]
    assert node.tags[PLACEHOLDER_TAG] == ["images/yellow.png"] and is_placeholder(node.user.images[0])
    record = state.records["recognise"]["v0.0.0"]
    assert record["grade"] == 3 and "c2 reference" in record["reference"] and record["answer_parsed"] is True
