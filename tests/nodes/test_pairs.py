"""preference_pairs: local pairs among siblings, global pairs among dialogues, selection rules."""

from pathlib import Path

import pytest

from interleaf.errors import SpecError
from interleaf.nodes.pairs import PreferencePairs
from interleaf.state import Score, Seed

from .fakes import FakeRuntime, make_node
from .trees import node, tree

SEED = Seed(id="seed-1", prompt="p")
GLOBAL = ["context_awareness", "helpfulness", "crucial_step_recognition", "global_image_text_consistency",
          "style_coherence"]


def local(text: float, coherence: float, image: float = 2, visual: float = 2) -> dict[str, float]:
    return {"local_image_text_consistency": image, "visual_perceptual_quality": visual,
            "text_quality": text, "context_coherence": coherence}


def dialogue(*values: float) -> dict[str, Score]:
    return {d: Score(value=v, reason=f"{d}={v}") for d, v in zip(GLOBAL, values, strict=True)}


def pairs_node(tmp_path: Path, **params) -> PreferencePairs:
    return make_node(PreferencePairs, params, FakeRuntime({}, None, tmp_path))


async def test_local_pairs_between_siblings(tmp_path: Path) -> None:
    nodes = tree(
        node("v0.0", scores=local(3, 3)), node("v0.1", scores=local(1, 3), status="pruned"),
        node("v0.2", scores=local(0, 0), status="failed"), node("v1.0", scores=local(0, 0)),
        node("v0.0.0", scores=local(2, 2)), node("v0.0.1", scores=local(2, 3)), node("v0.0.2", scores=local(2, 2)),
    )
    out = await pairs_node(tmp_path, min_margin=1).run(PreferencePairs.Input(seed=SEED, nodes=nodes,
                                                                             dialogue_scores={}))
    by_id = {p.id: p for p in out.pairs}
    assert sorted(by_id) == ["seed-1/local/v0.0.0~v0.0.1", "seed-1/local/v0.0.1~v0.0.2", "seed-1/local/v0.0~v0.1"]
    p = by_id["seed-1/local/v0.0~v0.1"]
    assert p.level == "local" and p.turn == 0 and p.history is None
    assert p.preference == {"local_image_text_consistency": 0, "visual_perceptual_quality": 0,
                            "text_quality": 1, "context_coherence": 0}
    assert p.overall == 1 and p.margin == 2
    assert "response_1 (3)" in p.reasons["text_quality"]
    q = by_id["seed-1/local/v0.0.0~v0.0.1"]
    assert q.overall == 2 and q.history == "v0.0" and q.turn == 1
    with_failed = await pairs_node(tmp_path, min_margin=1, include_failed=True).run(
        PreferencePairs.Input(seed=SEED, nodes=nodes, dialogue_scores={}))
    assert "seed-1/local/v0.0~v0.2" in {p.id for p in with_failed.pairs}


async def test_caps_keep_largest_margins_and_ties_need_zero_margin(tmp_path: Path) -> None:
    nodes = tree(*(node(f"v0.{i}", scores=local(i % 4, 0)) for i in range(6)))
    out = await pairs_node(tmp_path, min_margin=0, max_local_pairs=3).run(
        PreferencePairs.Input(seed=SEED, nodes=nodes, dialogue_scores={}))
    # text scores 0,1,2,3,0,1: two pairs differ by 3, four by 2; ties between equal margins go by id
    assert [p.margin for p in out.pairs] == [3, 3, 2]
    assert [p.id for p in out.pairs] == ["seed-1/local/v0.0~v0.3", "seed-1/local/v0.3~v0.4", "seed-1/local/v0.0~v0.2"]
    ties = await pairs_node(tmp_path, min_margin=0).run(
        PreferencePairs.Input(seed=SEED, nodes=nodes, dialogue_scores={}))
    assert any(p.overall == 0 for p in ties.pairs)


async def test_global_pairs_same_depth_and_groups(tmp_path: Path) -> None:
    nodes = tree(node("v0.0", follow_up="x"), node("v0.0.0"), node("v0.0.1"), node("v0.1"))
    scores = {"v0.0.0": dialogue(3, 3, 3, 1, 1), "v0.0.1": dialogue(1, 1, 1, 3, -1),
              "v0.1": dialogue(0, 0, 0, 0, 0), "gone": dialogue(3, 3, 3, 3, 3)}
    out = await pairs_node(tmp_path, max_local_pairs=0).run(
        PreferencePairs.Input(seed=SEED, nodes=nodes, dialogue_scores=scores))
    assert [p.id for p in out.pairs] == ["seed-1/global/v0.0.0~v0.0.1"]
    p = out.pairs[0]
    assert p.level == "global" and p.overall == 1 and p.margin == 6  # 11 vs 5
    assert p.preference["global_image_text_consistency"] == 2 and p.preference["helpfulness"] == 1
    grouped = await pairs_node(tmp_path, max_local_pairs=0, by_group=True, min_margin=0).run(
        PreferencePairs.Input(seed=SEED, nodes=nodes, dialogue_scores=scores))
    by_id = {q.id: q for q in grouped.pairs}
    assert set(by_id) == {"seed-1/global/v0.0.0~v0.0.1/helpfulness", "seed-1/global/v0.0.0~v0.0.1/presentation"}
    assert by_id["seed-1/global/v0.0.0~v0.0.1/helpfulness"].overall == 1
    assert by_id["seed-1/global/v0.0.0~v0.0.1/presentation"].overall == 0  # 1+1 vs 3-1
    assert set(by_id["seed-1/global/v0.0.0~v0.0.1/presentation"].preference) == {
        "global_image_text_consistency", "style_coherence"}


def test_by_group_needs_groups(tmp_path: Path) -> None:
    rubric = tmp_path / "flat.yaml"
    rubric.write_text(
        "name: flat\ninstructions: judge\ndimensions:\n"
        "  - {name: overall, level: dialogue, description: all of it}\n"
        "  - {name: turn_ok, level: turn, description: one turn}\n", encoding="utf-8")
    with pytest.raises(SpecError) as err:
        pairs_node(tmp_path, rubric_global="flat.yaml", by_group=True)
    assert err.value.field == "params.by_group" and "flat" in err.value.message
    assert pairs_node(tmp_path, rubric_local="flat.yaml", rubric_global="flat.yaml").local.name == "flat"
