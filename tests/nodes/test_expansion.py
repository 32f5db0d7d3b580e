"""prompt_expansion: seed -> tagged first questions; passes the seed through without a model."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from interleaf.nodes.expansion import DEFAULT_SITUATIONS, PromptExpansion, match_situation, parse_expansion
from interleaf.state import Seed

from .fakes import FakeClient, FakeRuntime, fail, make_node, text_of

SITS = list(DEFAULT_SITUATIONS)


def test_parse_and_match() -> None:
    q, tag = parse_expansion("Question: How do I start?\n\n**SITUATION:** stepwise incremental\n")
    assert q == "How do I start?" and tag == "stepwise incremental"
    assert match_situation("Stepwise incremental tasks.", SITS) == "stepwise incremental tasks"
    assert match_situation("cross-modal", SITS) == "cross-modal mismatch or integrated reasoning"
    assert match_situation("weather", SITS) is None
    assert parse_expansion("no tag here") == ("no tag here", None)


async def test_without_model_the_seed_passes_through(tmp_path: Path) -> None:
    node = make_node(PromptExpansion, {"variants": 4}, FakeRuntime({}, None, tmp_path))
    seed = Seed(id="s", prompt="Explain tides.", situation="Unclear user understanding")
    out = await node.run(PromptExpansion.Input(seed=seed))
    assert len(out.prompts) == 1
    p = out.prompts[0]
    assert p.variant == 0 and p.message.role == "user" and p.message.text == "Explain tides."
    assert p.situation == "unclear user understanding" and p.tags["expansion"] == "seed"


async def test_variants_are_tagged(tmp_path: Path) -> None:
    def reply(messages):
        variant = text_of(messages).split("Write variant ")[1].split(" ")[0]
        tag = "stepwise incremental" if variant == "1" else "astrology"
        return f"Rewritten question {variant} about tides?\nSITUATION: {tag}"

    client = FakeClient("expander", reply)
    node = make_node(PromptExpansion, {"variants": 3}, FakeRuntime({"expander": client}, None, tmp_path),
                     ["expander"], name="expand")
    out = await node.run(PromptExpansion.Input(seed=Seed(id="s", prompt="Explain tides.")))
    assert [p.variant for p in out.prompts] == [0, 1, 2]
    assert out.prompts[0].message.text == "Rewritten question 1 about tides?"
    assert out.prompts[0].situation == "stepwise incremental tasks"
    assert out.prompts[1].situation is None and out.prompts[1].tags["situation_raw"] == "astrology"
    assert len(set(client.cache_tags)) == 3
    system = client.requests[0][0]["content"]
    assert "SITUATIONS: unclear user understanding | repeated attempts" in system
    assert len(out.records["expand"]["calls"]) == 3


async def test_failure_and_empty_answer_fall_back_to_seed(tmp_path: Path) -> None:
    client = FakeClient("expander", [fail("down"), "SITUATION: open-ended companion chat"])
    node = make_node(PromptExpansion, {"variants": 2}, FakeRuntime({"expander": client}, None, tmp_path),
                     ["expander"])
    out = await node.run(PromptExpansion.Input(seed=Seed(id="s", prompt="Hi there")))
    assert [p.message.text for p in out.prompts] == ["Hi there", "Hi there"]
    assert {p.tags["expansion"] for p in out.prompts} == {"fallback: down", "fallback: empty expansion"}


async def test_seed_images_go_into_the_first_message(tmp_path: Path) -> None:
    seeds = pytest.importorskip("interleaf.seeds")
    if not hasattr(seeds, "load_seed_images"):
        pytest.skip("interleaf.seeds.load_seed_images is not written yet")
    from PIL import Image

    from interleaf.storage.store import ObjectStore

    Image.new("RGB", (8, 8), (0, 90, 0)).save(tmp_path / "leaf.png")
    node = make_node(PromptExpansion, {}, FakeRuntime({}, ObjectStore(tmp_path / "store"), tmp_path))
    seed = Seed(id="s", prompt="What plant is this?", images=[str(tmp_path / "leaf.png")])
    out = await node.run(PromptExpansion.Input(seed=seed))
    msg = out.prompts[0].message
    assert len(msg.images) == 1 and msg.images[0].width == 8 and msg.text == "What plant is this?"


def test_template_placeholders_are_checked() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \{topic\}"):
        PromptExpansion.Params.model_validate({"system_prompt": "Write about {topic}"})
    with pytest.raises(ValidationError):
        PromptExpansion.Params.model_validate({"variants": 0})
    ok = PromptExpansion.Params.model_validate({"situations": ["a", {"name": "b", "description": "bee"}]})
    assert [s.name for s in ok.situations] == ["a", "b"]
