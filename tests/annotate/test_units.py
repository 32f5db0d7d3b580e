"""The pure parts of the review round trip, without a Label Studio server."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from interleaf.annotate.agreement import agreement_report, cohen_kappa, pearson
from interleaf.annotate.apply import apply_to_state, reprune
from interleaf.annotate.config import ITEM_KINDS, label_config, read_control, same_config
from interleaf.annotate.items import fingerprint, review_items, sample_items
from interleaf.annotate.setup import review_setup
from interleaf.graphs.loading import load_graph
from interleaf.state import HumanScore
from tests.annotate.runs import write_image_run


def test_label_configs_from_rubrics() -> None:
    setup = review_setup(load_graph("intermt")[0], None)
    for kind in ITEM_KINDS:
        dims = setup.dims(kind)
        xml = label_config(kind, dims)
        root = ET.fromstring(xml)
        choices = {c.get("name"): c for c in root.iter("Choices")}
        sides = ("-1", "-2") if "pairs" in kind else ("",)
        assert set(choices) == {f"{d.name}{s}" for d in dims for s in sides}
        first = dims[0]
        values = [c.get("alias") for c in choices[f"{first.name}{sides[0]}"].iter("Choice")]
        assert values == [str(v) for v in range(first.scale.high, first.scale.low - 1, -1)]
        assert all(c.get("hint") for c in root.iter("Choice"))  # criteria text as hints
        assert {t.get("name") for t in root.iter("TextArea")} == {f"{d.name}-reason" for d in dims}
        assert same_config(xml, xml.replace("\n  ", "\n    "))  # indentation is not an edit
        assert not same_config(xml, xml.replace('alias="0"', 'alias="zero"', 1))
    assert read_control("helpfulness-2", "global-pairs", ["helpfulness"]).side == 2
    assert read_control("helpfulness", "global-pairs", ["helpfulness"]) is None
    assert read_control("other", "turns", ["helpfulness"]) is None


def test_kappa_and_pearson() -> None:
    assert cohen_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    assert cohen_kappa([0, 3], [1, 3]) == 0.333333
    assert cohen_kappa([3, 3], [3, 3]) is None
    assert pearson([1, 2, 3], [2, 4, 6]) == 1.0
    assert pearson([1, 1], [2, 3]) is None


def test_apply_without_people_changes_nothing_and_people_flip_the_pair(tmp_path: Path) -> None:
    _, state = write_image_run(tmp_path / "run")
    setup = review_setup(load_graph("intermt")[0], None)
    assert apply_to_state(state, setup.prune, setup.pairs) == state
    [judge_pair] = state.pairs
    assert (judge_pair.overall, judge_pair.decided_by) == (1, "judge")
    people = state.model_copy(deep=True)
    for node_id, value in (("v0.0", 0), ("v0.1", 3)):
        people.nodes[node_id].human_scores = [
            HumanScore(dimension=d, value=value, annotator=who, at=1.0)
            for d in people.nodes[node_id].scores for who in ("a", "b")
        ]
    [pair] = apply_to_state(people, setup.prune, setup.pairs).pairs
    assert (pair.overall, pair.decided_by, pair.margin) == (2, "human", 12.0)
    [judged] = apply_to_state(people, setup.prune, setup.pairs.__class__(
        setup.pairs.params.model_copy(update={"prefer": "judge"}), setup.pairs.local, setup.pairs.global_)).pairs
    assert judged == judge_pair
    imported = judge_pair.model_copy(update={"id": "record-17", "decided_by": "human", "overall": 2})
    verdict = judge_pair.model_copy(update={"id": f"{judge_pair.id}/judge"})
    people.pairs = [judge_pair, imported, verdict]
    assert [p.id for p in apply_to_state(people, setup.prune, setup.pairs).pairs] == [
        judge_pair.id, "record-17", f"{judge_pair.id}/judge"]  # the rule's pair re-made, the others kept
    report = agreement_report([people], setup)
    assert (report.human_pairs, report.pairs_compared, report.pair_accuracy) == (1, 1, 0.0)


def test_reprune_cuts_below_a_node_people_reject(tmp_path: Path) -> None:
    _, state = write_image_run(tmp_path / "run")
    setup = review_setup(load_graph("intermt-lite")[0], None)  # keep 1
    nodes = reprune(state.nodes, setup.prune)
    assert [nodes[k].status for k in ("v0.0", "v0.1")] == ["alive", "pruned"]
    child = state.nodes["v0.0"].model_copy(update={"id": "v0.0.0", "parent": "v0.0", "turn": 1})
    tree = {**state.nodes, "v0.0.0": child}
    tree["v0.0"] = tree["v0.0"].model_copy(update={"human_scores": [
        HumanScore(dimension="text_quality", value=0, annotator="a")]})
    out = reprune(tree, setup.prune)
    assert out["v0.0"].status == "pruned" and out["v0.1"].status == "alive"
    assert (out["v0.0.0"].status, out["v0.0.0"].reason) == ("pruned", "ancestor v0.0 pruned")


def test_items_sampling_and_fingerprints(tmp_path: Path) -> None:
    _, state = write_image_run(tmp_path / "run")
    items = review_items([state], "turns")
    assert [i.item for i in items] == ["v0.0", "v0.1"]
    assert [i.item for i in review_items([state], "local-pairs")] == ["local/v0.0~v0.1"]
    assert review_items([state], "turns", "pruned") == []
    assert sample_items(items, 1, "x") == sample_items(items, 1, "x")
    fp = fingerprint(state, items[0])
    moved = state.model_copy(deep=True)
    for part in moved.nodes["v0.0"].assistant.parts:  # type: ignore[union-attr]
        if part.type == "image":
            part.image.uri = "s3://elsewhere/" + part.image.sha256  # a moved run: same content
    assert fingerprint(moved, items[0]) == fp
    moved.nodes["v0.0"].assistant.parts[0].text = "changed"  # type: ignore[union-attr]
    assert fingerprint(moved, items[0]) != fp
