"""align-anything rows read back into the pairs' messages they came from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from interleaf.datasets.align_anything import IMAGE_PLACEHOLDER, split_pair
from interleaf.datasets.export import export_run
from interleaf.state import DialogueState, ImagePart, Message, TextPart


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
    out: list[str | bytes] = [""]
    for n, m in enumerate(messages):
        if n:
            out[-1] += "\n"
        if labels:
            out[-1] += {"user": "USER: ", "assistant": "ASSISTANT: "}[m.role]
        for part in m.parts:
            if isinstance(part, TextPart):
                out[-1] += part.text
            elif isinstance(part, ImagePart):
                out += [part.image.sha256.encode(), ""]
    return out


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
        assert hashed(read_back(row["input_text"], row["input_image"], tmp_path)) == expected(head, True)
        assert hashed(read_back(row["better_text"], row["better_img"], tmp_path)) == expected(better, len(better) > 1)
        assert hashed(read_back(row["worse_text"], row["worse_img"], tmp_path)) == expected(worse, len(worse) > 1)
    local = next(r for r in rows if r["id"] == "trip/local/v0.0.0~v0.0.1")
    assert local["input_text"].startswith("USER: <image>Plan a two-day bike trip")
    assert local["input_text"].endswith("USER: Nice. Can you mark the campsite on the map?")
    assert local["better_text"].startswith("The campsite sits above the bay. <image>")
    assert local["worse_text"] == "Camp anywhere." and local["worse_img"] == []
