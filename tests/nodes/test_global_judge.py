"""global_judge: every complete root-to-leaf dialogue scored on the dialogue-level rubric."""

from pathlib import Path

from interleaf.models.judge_format import dimensions_in_prompt, render_line
from interleaf.nodes.global_judge import GlobalJudge
from interleaf.state import Seed

from .fakes import FakeClient, FakeRuntime, make_node, text_of
from .trees import node, tree

SEED = Seed(id="s", prompt="p")


def reply_with(style: int):
    def reply(messages):
        dims = dimensions_in_prompt(text_of(messages))
        return "\n".join(render_line(d.name, "r", style if d.name == "style_coherence" else 2) for d in dims)

    return reply


def judge(tmp_path: Path, client: FakeClient, **params) -> GlobalJudge:
    return make_node(GlobalJudge, params, FakeRuntime({"judge": client}, None, tmp_path), ["judge"], name="rate")


def sample_tree():
    return tree(
        node("v0.0", follow_up="more"), node("v0.1", status="pruned"), node("v0.2"),
        node("v0.0.0", "turn two A"), node("v0.0.1", "turn two B"), node("v0.0.2", status="failed"),
    )


async def test_scores_deepest_complete_dialogues(tmp_path: Path) -> None:
    client = FakeClient("judge", reply_with(-1))
    out = await judge(tmp_path, client).run(GlobalJudge.Input(seed=SEED, nodes=sample_tree()))
    assert sorted(out.dialogue_scores) == ["v0.0.0", "v0.0.1"]
    scores = out.dialogue_scores["v0.0.0"]
    assert list(scores) == ["context_awareness", "helpfulness", "crucial_step_recognition",
                            "global_image_text_consistency", "style_coherence"]
    assert scores["style_coherence"].value == -1 and scores["helpfulness"].value == 2
    prompts = sorted(text_of(r) for r in client.requests)
    assert "question for v0.0" in prompts[0] and "turn two A" in prompts[0] and "turn two B" not in prompts[0]
    assert "style_coherence[-1..3]" in prompts[0]
    assert set(out.records["rate"]) == {"v0.0.0", "v0.0.1"}


async def test_minus_one_only_where_the_rubric_allows(tmp_path: Path) -> None:
    def reply(messages):
        dims = dimensions_in_prompt(text_of(messages))
        return "\n".join(render_line(d.name, "r", -1) for d in dims)

    client = FakeClient("judge", reply)
    out = await judge(tmp_path, client, leaves="all").run(GlobalJudge.Input(seed=SEED, nodes=sample_tree()))
    assert sorted(out.dialogue_scores) == ["v0.0.0", "v0.0.1", "v0.2"]
    s = out.dialogue_scores["v0.2"]
    assert s["style_coherence"].value == -1
    assert s["helpfulness"].value is None and s["helpfulness"].raw is not None
    assert len(client.requests) == 6  # one re-ask per dialogue
