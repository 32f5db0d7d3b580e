"""consistency_check: deterministic checks short-circuit; the judge scores the rest; one re-ask."""

import re
from pathlib import Path

import pytest

from interleaf.models.judge_format import dimensions_in_prompt, render_line
from interleaf.nodes.consistency import ConsistencyCheck
from interleaf.state import ImageRef, Seed
from interleaf.storage.store import ObjectStore

from .fakes import FakeClient, FakeRuntime, fail, image_parts, make_node, put_png, text_of
from .trees import node, tree

SEED = Seed(id="s1", prompt="draw a cat")
LOCAL = ["local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence"]


def judge_reply(score: int = 2):
    def reply(messages):
        dims = dimensions_in_prompt(text_of(messages))
        return "\n".join(render_line(d.name, f"looks {score}", score) for d in dims)

    return reply


def checker(tmp_path: Path, client: FakeClient, **params) -> ConsistencyCheck:
    runtime = FakeRuntime({"judge": client}, ObjectStore(tmp_path / "store"), tmp_path)
    return make_node(ConsistencyCheck, params, runtime, ["judge"])


async def test_deterministic_checks_short_circuit(tmp_path: Path) -> None:
    client = FakeClient("judge", judge_reply(2))
    check = checker(tmp_path, client)
    store = check.ctx.runtime.store
    good = put_png(store)
    key, sha = store.put_blob(b"definitely not a png", "png")
    broken = ImageRef(uri=store.url(key), sha256=sha, width=8, height=8)
    gone = good.model_copy(update={"uri": store.url("blobs/sha256/00/missing.png"), "sha256": "0" * 64})
    nodes = tree(
        node("v0.0", "A red square.", images=[good]),
        node("v0.1", "   "),
        node("v0.2", "a  red square.", images=[good]),
        node("v0.3", "Here it is: <Image, a red square>"),
        node("v0.4", "Broken.", images=[broken]),
        node("v0.5", "Gone.", images=[gone]),
        node("v1.0", "A red square.", images=[good]),
        node("v0.0.0", "next turn, not checked now"),
    )
    out = await check.run(ConsistencyCheck.Input(seed=SEED, nodes=nodes, turn=0))
    assert set(out.nodes) == {"v0.0", "v0.1", "v0.2", "v0.3", "v0.4", "v0.5", "v1.0"}
    reasons = {k: n.reason for k, n in out.nodes.items() if n.status == "failed"}
    assert reasons["v0.1"] == "empty answer"
    assert reasons["v0.2"] == "duplicate of sibling v0.0"
    assert "<Image, a red square>" in reasons["v0.3"]
    assert "does not decode" in reasons["v0.4"]
    assert "cannot be read" in reasons["v0.5"]
    assert set(reasons) == {"v0.1", "v0.2", "v0.3", "v0.4", "v0.5"}  # v1.0 has another history
    for k in reasons:
        assert {s.value for s in out.nodes[k].scores.values()} == {0}
    # Only the two passing candidates reached the judge, each with its image.
    assert len(client.requests) == 2 and all(image_parts(r) == 1 for r in client.requests)
    good_node = out.nodes["v0.0"]
    assert good_node.status == "alive" and {s.value for s in good_node.scores.values()} == {2}
    assert list(good_node.scores) == LOCAL
    assert good_node.provenance[-1].model == "judge" and len(good_node.provenance[-1].calls) == 1


async def test_unscored_only_and_dimension_subset(tmp_path: Path) -> None:
    client = FakeClient("judge", judge_reply(3))
    check = checker(tmp_path, client, dimensions=["text_quality", "context_coherence"], checks=["empty"])
    nodes = tree(node("v0.0", scores={"text_quality": 1}), node("v0.1", "<Image, kept as text>"))
    out = await check.run(ConsistencyCheck.Input(seed=SEED, nodes=nodes, turn=0))
    assert list(out.nodes) == ["v0.1"]
    assert set(out.nodes["v0.1"].scores) == {"text_quality", "context_coherence"}
    assert re.search(r"^DIMENSIONS: text_quality\[0\.\.3\], context_coherence\[0\.\.3\]$", text_of(client.requests[0]),
                     re.MULTILINE)


async def test_one_reask_then_scores(tmp_path: Path) -> None:
    good = judge_reply(1)
    replies = iter(["I think it is fine overall.", None])
    client = FakeClient("judge", lambda m: next(replies) or good(m))
    out = await checker(tmp_path, client).run(ConsistencyCheck.Input(seed=SEED, nodes=tree(node("v0.0")), turn=0))
    scored = out.nodes["v0.0"]
    assert len(client.requests) == 2
    assert "could not be read" in text_of(client.requests[1][-1:])
    assert client.requests[1][-2] == {"role": "assistant", "content": "I think it is fine overall."}
    assert {s.value for s in scored.scores.values()} == {1} and scored.status == "alive"
    assert "judge re-asked once" in scored.provenance[-1].notes


async def test_unreadable_twice_records_missing_with_raw_text(tmp_path: Path) -> None:
    partial = render_line("text_quality", "ok", 2) + "\n[[context_coherence, too good, \\boxed{9}]]"
    client = FakeClient("judge", [partial, "still no format"])
    out = await checker(tmp_path, client).run(ConsistencyCheck.Input(seed=SEED, nodes=tree(node("v0.0")), turn=0))
    scores = out.nodes["v0.0"].scores
    assert len(client.requests) == 2
    assert scores["text_quality"].value == 2
    for dim in ("context_coherence", "local_image_text_consistency", "visual_perceptual_quality"):
        assert scores[dim].value is None
        assert scores[dim].raw is not None and "still no format" in scores[dim].raw and "boxed{9}" in scores[dim].raw
    assert out.nodes["v0.0"].status == "alive"


async def test_model_failure_marks_candidate_failed(tmp_path: Path) -> None:
    client = FakeClient("judge", [fail("rate limited for good")])
    out = await checker(tmp_path, client).run(ConsistencyCheck.Input(seed=SEED, nodes=tree(node("v0.0")), turn=0))
    n = out.nodes["v0.0"]
    assert n.status == "failed" and n.reason == "judge call failed: rate limited for good"
    assert all(s.value is None for s in n.scores.values())


def test_unknown_check_or_dimension_rejected(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from interleaf.errors import SpecError

    with pytest.raises(ValidationError):
        ConsistencyCheck.Params.model_validate({"checks": ["spelling"]})
    with pytest.raises(SpecError) as err:
        checker(tmp_path, FakeClient("judge", ["x"]), dimensions=["helpfulness"])
    assert err.value.field == "params.dimensions.0" and "turn-level" in err.value.message
