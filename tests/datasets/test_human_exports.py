"""People's scores and who decided each pair travel with every export format."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from interleaf.datasets.export import export_run
from interleaf.state import DialogueState, HumanScore
from interleaf.storage.store import ObjectStore
from tests.datasets.sample_run import write_sample_run


def _annotate(root: Path) -> tuple[str, str]:
    """Give the first pair's first side a person's score and mark the pair decided by people."""
    store = ObjectStore(root)
    key = sorted(k for k in store.list("dialogues"))[0]
    state = DialogueState.model_validate(store.get_json(key))
    pair = sorted(state.pairs, key=lambda p: p.id)[0]
    node = state.nodes[pair.response_1]
    node.human_scores.append(HumanScore(dimension="helpfulness", value=3, reason="clear", annotator="ann-1",
                                        at=1.5, origin="label-studio:1/7"))
    pair.decided_by = "human"
    store.put_json(key, state.model_dump(mode="json"))
    return pair.id, node.id


def test_human_scores_and_decided_by_are_exported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_sample_run(run)
    pair_id, node_id = _annotate(run)

    export_run(run, "hf", tmp_path / "hf")
    pairs = datasets.load_from_disk(str(tmp_path / "hf" / "pairs"))
    row = next(r for r in pairs if r["id"] == pair_id)
    assert row["decided_by"] == "human"
    sides = [t for part in ("history", "conversation_1", "conversation_2") for t in row[part]]
    (turn,) = [t for t in sides if t["node_id"] == node_id]
    assert turn["human_scores"] == [{"dimension": "helpfulness", "value": 3.0, "reason": "clear",
                                     "annotator": "ann-1", "at": 1.5, "origin": "label-studio:1/7"}]
    assert all(r["decided_by"] == "judge" for r in pairs if r["id"] != pair_id)

    export_run(run, "align-anything", tmp_path / "aa")
    rows = json.loads((tmp_path / "aa" / "train.json").read_text())
    annotated = [r for r in rows if r["id"] == pair_id]
    for r in annotated:
        assert r["decided_by"] == "human"
        people = r["better_human_scores"] + r["worse_human_scores"]
        assert [h["annotator"] for h in people] == ["ann-1"]
    assert all(r["decided_by"] == "judge" for r in rows if r["id"] != pair_id)
