"""prompt_expansion with ``levels``: one prompt per level of a hierarchy, tagged and ordered."""

from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from interleaf.nodes.expansion import PromptExpansion
from interleaf.state import Seed
from interleaf.storage.store import ObjectStore

from .fakes import FakeClient, FakeRuntime, fail, image_parts, make_node, text_of

LEVELS = [
    {"name": "plain"},
    {"name": "incomplete", "instruction": "Ask about something the image does not show.", "images": False},
    {"name": "misleading", "instruction": "Rest the question on a false premise.", "tags": {"premise": "false"}},
]


def _seed(tmp_path: Path) -> Seed:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "red.png")
    return Seed(id="s1", prompt="What colour is the car?", images=[str(tmp_path / "red.png")])


async def test_levels_make_one_tagged_prompt_each(tmp_path: Path) -> None:
    def reply(messages):
        text = text_of(messages)
        level = text.split("Level ")[1].split(" ")[0]
        return f"Rewritten at level {level}: why is the car blue?"

    client = FakeClient("expander", reply)
    runtime = FakeRuntime({"expander": client}, ObjectStore(tmp_path / "store"), tmp_path)
    node = make_node(PromptExpansion, {"levels": LEVELS}, runtime, ["expander"], name="expand")
    out = await node.run(PromptExpansion.Input(seed=_seed(tmp_path)))

    assert [p.tags["level"] for p in out.prompts] == [1, 2, 3]
    assert [p.tags["level_name"] for p in out.prompts] == ["plain", "incomplete", "misleading"]
    assert [p.variant for p in out.prompts] == [0, 1, 2]
    plain, incomplete, misleading = out.prompts
    # Level 1 has no instruction: the seed question goes out verbatim, image attached, no model call.
    assert plain.message.text == "What colour is the car?" and len(plain.message.images) == 1
    assert plain.tags["expansion"] == "seed"
    assert incomplete.message.text == "Rewritten at level 2: why is the car blue?"
    assert incomplete.message.images == [] and incomplete.tags["expansion"] == "model"
    assert len(misleading.message.images) == 1 and misleading.tags["premise"] == "false"
    # Two rewrites; each saw the level's instruction and the seed image (even the level that drops it).
    assert len(client.requests) == 2 and len(out.records["expand"]["calls"]) == 2
    asked = sorted(text_of(r) for r in client.requests)
    assert "Level 2 of 3 (incomplete): Ask about something the image does not show." in asked[0]
    assert "Level 3 of 3 (misleading): Rest the question on a false premise." in asked[1]
    assert all(image_parts(r) == 1 for r in client.requests)
    assert len(set(client.cache_tags)) == 2


async def test_levels_without_a_model_or_after_failure_keep_the_seed(tmp_path: Path) -> None:
    seed = Seed(id="s", prompt="How many birds?")
    bare = make_node(PromptExpansion, {"levels": LEVELS}, FakeRuntime({}, None, tmp_path))
    out = await bare.run(PromptExpansion.Input(seed=seed))
    assert [p.message.text for p in out.prompts] == ["How many birds?"] * 3 and out.records == {}

    client = FakeClient("expander", [fail("down"), ""])
    node = make_node(PromptExpansion, {"levels": LEVELS}, FakeRuntime({"expander": client}, None, tmp_path),
                     ["expander"])
    out = await node.run(PromptExpansion.Input(seed=seed))
    assert [p.message.text for p in out.prompts] == ["How many birds?"] * 3
    assert {p.tags["expansion"] for p in out.prompts[1:]} == {"fallback: down", "fallback: empty expansion"}


def test_level_params_are_checked() -> None:
    with pytest.raises(ValidationError, match="not both"):
        PromptExpansion.Params.model_validate({"levels": LEVELS, "variants": 2})
    with pytest.raises(ValidationError, match="at least 1"):
        PromptExpansion.Params.model_validate({"levels": []})
    with pytest.raises(ValidationError, match="unknown placeholder"):
        PromptExpansion.Params.model_validate({"levels": LEVELS, "level_prompt": "{situation}"})
    with pytest.raises(ValidationError, match="instructions"):
        PromptExpansion.Params.model_validate({"levels": [{"name": "a", "instructions": "typo"}]})
    assert PromptExpansion.Params.model_validate({}).levels is None
