"""align-anything rows: what its ``ti2ti_preference`` template builds from them, and the
interleaved fields read back into the pairs' messages they came from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from interleaf.datasets.align_anything import IMAGE_KEYS, IMAGE_PLACEHOLDER, LITERAL_PLACEHOLDER, split_pair
from interleaf.datasets.export import export_run
from interleaf.state import DialogueState, ImagePart, Message, PreferencePair, Prompt, Seed, TextPart, TreeNode
from tests.datasets.sample_run import RunBuilder

SIDES = ("input", "better", "worse")


def ti2ti_side(text: str, images: list[str]) -> str:
    """align-anything's ``insert_img_token`` for a list of images: every image token first."""
    return IMAGE_PLACEHOLDER * len(images) + text


def read_back(text: str, paths: list[str], base: Path) -> list[str | bytes]:
    """A row's text and images as one interleaved list (what a loader rebuilds from placeholders)."""
    pieces = text.split(IMAGE_PLACEHOLDER)
    assert len(pieces) == len(paths) + 1, "one image per placeholder"
    out: list[str | bytes] = [pieces[0]]
    for path, piece in zip(paths, pieces[1:], strict=True):
        out += [(base / path).read_bytes(), piece]
    return out


def expected(messages: list[Message], labels: bool) -> list[str | bytes]:
    """The same interleaving from the run's messages (image bytes by their content hash)."""
    out: list[str | bytes] = []
    text = ""
    for n, m in enumerate(messages):
        if n:
            text += "\n"
        if labels:
            text += {"user": "USER: ", "assistant": "ASSISTANT: "}[m.role]
        for part in m.parts:
            if isinstance(part, TextPart):
                text += part.text
            elif isinstance(part, ImagePart):
                out += [text, part.image.sha256.encode()]
                text = ""
    return [*out, text]


def hashed(items: list[str | bytes]) -> list[str | bytes]:
    return [hashlib.sha256(i).hexdigest().encode() if isinstance(i, bytes) else i for i in items]


def test_rows_round_trip_to_the_pairs(sample_run: tuple[Path, list[DialogueState]], tmp_path: Path) -> None:
    root, states = sample_run
    report = export_run(str(root), "align-anything", tmp_path, None)
    rows = json.loads((tmp_path / "train.json").read_text())
    pairs = {p.id: (s, p) for s in states for p in s.pairs}
    decisive = [p for _, p in pairs.values() if p.overall in (1, 2)]
    unshared = [p for s, p in pairs.values() if p.overall in (1, 2) and split_pair(s, p) is None]
    assert len(rows) == len(decisive) - len(unshared) and unshared
    assert f"{len(rows)} preference rows" in report
    for row in rows:
        assert set(row) >= {"input_text", "input_image", "better_text", "better_img", "worse_text", "worse_img"}
        state, pair = pairs[row["id"]]
        split = split_pair(state, pair)
        assert split is not None
        head, side_1, side_2 = split
        better, worse = (side_1, side_2) if pair.overall == 1 else (side_2, side_1)
        assert hashed(read_back(row["input_text_interleaved"], row["input_image"], tmp_path)) == expected(head, True)
        assert hashed(read_back(row["better_text_interleaved"], row["better_img"], tmp_path)) == expected(
            better, len(better) > 1)
        assert hashed(read_back(row["worse_text_interleaved"], row["worse_img"], tmp_path)) == expected(
            worse, len(worse) > 1)
    local = next(r for r in rows if r["id"] == "trip/local/v0.0.0~v0.0.1")
    assert local["input_text_interleaved"].startswith("USER: <image>Plan a two-day bike trip")
    assert local["input_text"].startswith("USER: Plan a two-day bike trip")
    assert local["input_text"].endswith("USER: Nice. Can you mark the campsite on the map?")
    assert local["better_text_interleaved"].startswith("The campsite sits above the bay. <image>")
    assert local["better_text"].startswith("The campsite sits above the bay.  (figure 1)")
    assert local["worse_text"] == "Camp anywhere." and local["worse_img"] == []


def test_ti2ti_template_gets_one_token_per_image(sample_run: tuple[Path, list[DialogueState]],
                                                 tmp_path: Path) -> None:
    """Issue #21: the template prepends one ``<image>`` per image, so texts must hold none."""
    root, states = sample_run
    export_run(str(root), "align-anything", tmp_path, None)
    rows = json.loads((tmp_path / "train.json").read_text())
    pairs = {p.id: (s, p) for s in states for p in s.pairs}
    sides_with_images = 0
    for row in rows:
        state, pair = pairs[row["id"]]
        split = split_pair(state, pair)
        assert split is not None
        head, side_1, side_2 = split
        better, worse = (side_1, side_2) if pair.overall == 1 else (side_2, side_1)
        for side, messages in zip(SIDES, (head, better, worse), strict=True):
            text, images = row[f"{side}_text"], row[IMAGE_KEYS[side]]
            formatted = ti2ti_side(text, images)
            assert formatted.count(IMAGE_PLACEHOLDER) == len(images), (row["id"], side)
            assert IMAGE_PLACEHOLDER not in text
            # The plain text is the interleaved one without its placeholders, images in the same order.
            interleaved = row[f"{side}_text_interleaved"]
            assert interleaved.count(IMAGE_PLACEHOLDER) == len(images)
            assert interleaved.replace(IMAGE_PLACEHOLDER, "") == text
            in_order = [p.image.sha256 for m in messages for p in m.parts if isinstance(p, ImagePart)]
            assert [hashlib.sha256((tmp_path / i).read_bytes()).hexdigest() for i in images] == in_order
            sides_with_images += len(images) > 1
    assert sides_with_images, "the sample run has sides with several images (order is checked)"


def test_literal_placeholder_in_text_is_escaped(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path / "run")
    picture = b.image()
    question = Message.user("What does the tag <image> mean here?", [picture])
    nodes = {f"v0.{c}": TreeNode(id=f"v0.{c}", turn=0, candidate=c, user=question,
                                 assistant=Message(role="assistant", parts=[TextPart(text=text)]))
             for c, text in enumerate(["It marks where <image> goes.", "No idea."])}
    state = DialogueState(seed=Seed(id="s", prompt="q"), prompts=[Prompt(variant=0, message=question)], nodes=nodes,
                          status="done", pairs=[PreferencePair(id="s/local", level="local", turn=0, response_1="v0.0",
                                                               response_2="v0.1", overall=1)])
    b.write(state, seconds=1.0)
    export_run(str(tmp_path / "run"), "align-anything", tmp_path / "out", None)
    (row,) = json.loads((tmp_path / "out" / "train.json").read_text())
    assert row["input_text"] == f"USER: What does the tag {LITERAL_PLACEHOLDER} mean here?"
    assert row["input_text_interleaved"] == (
        f"USER: {IMAGE_PLACEHOLDER}What does the tag {LITERAL_PLACEHOLDER} mean here?")
    assert row["better_text"] == f"It marks where {LITERAL_PLACEHOLDER} goes."
    for side in SIDES:
        assert ti2ti_side(row[f"{side}_text"], row[IMAGE_KEYS[side]]).count(IMAGE_PLACEHOLDER) == len(
            row[IMAGE_KEYS[side]])
