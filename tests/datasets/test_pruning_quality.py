"""The pruning-quality report on hand-built trees whose answers carry the simulator's signature."""

from __future__ import annotations

from pathlib import Path

from interleaf.datasets.pruning_quality import JSON_KEY, MD_KEY, pruning_quality, write_pruning_quality
from interleaf.datasets.sim_truth import OFF_TOPIC, sign
from interleaf.run import layout
from interleaf.state import DialogueState, Message, PreferencePair, Seed, TreeNode
from interleaf.storage.store import ObjectStore

CLEAN = "I would go with sage green and cream for it. Tell me what you would like to change next."
LATER = "As before, it stays in sage green and cream. Let me know which part to refine next."
ANSWERS = {
    "v0.0": CLEAN,
    "v0.1": CLEAN.replace("for it", "for the door"),
    "v0.2": f"{CLEAN.split('. ')[0]}. {OFF_TOPIC[0]} Tell me what you would like to change next.",
    "v0.0.0": LATER,
    "v0.0.1": "Like I said before, deep navy and brass was the plan all along. What would you like to try next?",
    "v0.0.2": "As before, it stays in sage green and cream. Once this step looks right, the next",
}
STATUS = {"v0.2": "pruned", "v0.0.1": "pruned", "v0.1": "alive", "v0.0.2": "alive"}


def _node(node_id: str, text: str) -> TreeNode:
    parent = node_id.rsplit(".", 1)[0] if node_id.count(".") > 1 else None
    return TreeNode(id=node_id, parent=parent, turn=node_id.count(".") - 1, user=Message.user("Paint the door."),
                    assistant=Message(role="assistant", parts=[{"type": "text", "text": sign("painting the door",
                                                                                              text)}]),
                    status=STATUS.get(node_id, "alive"))  # type: ignore[arg-type]


def _pair(level: str, a: str, b: str, overall: int) -> PreferencePair:
    return PreferencePair(id=f"s/{level}/{a}~{b}", level=level, response_1=a, response_2=b,  # type: ignore[arg-type]
                          preference={"text_quality": overall}, overall=overall, margin=1.0)


def _state(seed: str = "s") -> DialogueState:
    nodes = {k: _node(k, v) for k, v in ANSWERS.items()}
    pairs = [
        _pair("local", "v0.0", "v0.2", 1),      # clean chosen over off-topic: right
        _pair("local", "v0.0.1", "v0.0.2", 1),  # different defects: no cleaner side, not counted
        _pair("local", "v0.0.0", "v0.0.1", 2),  # the contradiction chosen: wrong
        _pair("global", "v0.0.0", "v0.0.2", 1),  # a clean path over one with a cut-off answer: right
    ]
    return DialogueState(seed=Seed(id=seed, prompt="Paint the door."), nodes=nodes, pairs=pairs)


def test_counts_follow_the_planted_truth_and_the_statuses() -> None:
    report = pruning_quality([_state()])
    assert report.simulated and (report.candidates, report.unrecognized_candidates) == (6, 0)
    assert (report.defective_candidates, report.defective_pruned) == (3, 2)
    # v0: one removal, one defective; v0.0: one removal, two defective -> at most 2 could go.
    assert report.defective_prunable == 2
    assert (report.clean_candidates, report.clean_kept) == (3, 3)
    assert (report.pairs, report.pairs_cleaner_chosen, report.pairs_incomparable) == (3, 2, 1)
    assert report.by_level["local"] == {"pairs": 2, "cleaner_chosen": 1, "incomparable": 1}
    assert report.by_level["global"] == {"pairs": 1, "cleaner_chosen": 1, "incomparable": 0}
    assert report.by_defect["off_topic"] == {"candidates": 1, "pruned": 1}
    assert report.by_defect["context_contradiction"] == {"candidates": 1, "pruned": 1}
    assert report.by_defect["truncated"] == {"candidates": 1, "pruned": 0}
    assert report.by_defect["unsafe"] == {"candidates": 0, "pruned": 0}
    assert report.shares()["pairs_cleaner_chosen"] == round(2 / 3, 4)


def _store_with(tmp_path: Path, *states: DialogueState) -> ObjectStore:
    store = ObjectStore(tmp_path / "run")
    for state in states:
        store.put_json(layout.dialogue_key(state.seed.id), state.model_dump(mode="json"))
    return store


def test_report_files_are_written_for_a_simulator_run(tmp_path: Path) -> None:
    store = _store_with(tmp_path, _state("a"), _state("b"))
    assert write_pruning_quality(store) == [JSON_KEY, MD_KEY]
    data = store.get_json(JSON_KEY)
    assert (data["defective_candidates"], data["defective_pruned"], data["pairs"], data["pairs_cleaner_chosen"]) == (
        6, 4, 6, 4)
    assert all(isinstance(data[k], int) for k in ("clean_candidates", "clean_kept", "pairs"))
    assert data["by_defect"]["truncated"] == {"candidates": 2, "pruned": 0}
    md = store.get_bytes(MD_KEY).decode()
    assert "| defective candidates pruned | 4 | 6 | 66.7 % |" in md
    assert "| pairs with the cleaner side chosen | 4 | 6 | 66.7 % |" in md
    assert "| truncated | 2 | 0 | 0.0 % |" in md


def test_runs_the_simulator_did_not_answer_get_no_report(tmp_path: Path) -> None:
    other = _state("real")
    for node in other.nodes.values():
        node.assistant = Message(role="assistant", parts=[{"type": "text", "text": "A real model's answer."}])  # type: ignore[list-item]
    store = _store_with(tmp_path, other)
    assert write_pruning_quality(store) == []
    assert not store.exists(JSON_KEY) and not store.exists(MD_KEY)
    # A signed answer whose body was changed afterwards no longer counts as the simulator's.
    tampered = _state("tampered")
    node = tampered.nodes["v0.0"]
    assert node.assistant is not None
    text = node.assistant.text.replace("sage green", "sage-green")
    node.assistant = Message(role="assistant", parts=[{"type": "text", "text": text}])  # type: ignore[list-item]
    report = pruning_quality([tampered])
    assert (report.candidates, report.unrecognized_candidates) == (5, 1)
