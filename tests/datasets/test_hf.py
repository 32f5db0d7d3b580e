"""The Hugging Face export loads with load_from_disk (and from its Parquet files) and its images decode."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

import datasets
from interleaf.datasets.export import export_run
from interleaf.datasets.intermt import GLOBAL_DIMENSIONS, LOCAL_DIMENSIONS
from interleaf.run.reader import RunReader
from interleaf.state import DialogueState


def test_hf_export_loads_and_decodes(sample_run: tuple[Path, list[DialogueState]], tmp_path: Path) -> None:
    root, states = sample_run
    export_run(str(root), "hf", tmp_path, None)
    loaded = datasets.load_from_disk(str(tmp_path))
    assert set(loaded) == {"dialogues", "pairs"}
    dialogues, pairs = loaded["dialogues"], loaded["pairs"]
    assert dialogues.num_rows == sum(len(s.leaves()) for s in states)
    assert pairs.num_rows == sum(len(s.pairs) for s in states)
    assert isinstance(dialogues.features["turns"].feature["response_images"].feature, datasets.Image)

    reader = RunReader.open(str(root))
    by_id = {s.seed.id: s for s in states}
    row = next(r for r in dialogues if r["id"] == "trip/v0.1.0")
    path = by_id["trip"].path("v0.1.0")
    assert [t["node_id"] for t in row["turns"]] == [n.id for n in path]
    for turn, node in zip(row["turns"], path, strict=True):
        for decoded, ref in zip(turn["response_images"], node.assistant.images, strict=True):  # type: ignore[union-attr]
            assert isinstance(decoded, Image.Image) and decoded.size == (ref.width, ref.height)
            original = Image.open(io.BytesIO(reader.image_bytes(ref))).convert("RGB")
            assert list(decoded.convert("RGB").getdata()) == list(original.getdata())
    assert {s["dimension"] for s in row["dialogue_scores"]} == set(GLOBAL_DIMENSIONS)
    assert {s["dimension"] for s in row["turns"][0]["scores"]} == set(LOCAL_DIMENSIONS)

    pair = next(p for p in pairs if p["id"] == "trip/global/v0.0.1~v0.0.0")
    assert [t["node_id"] for t in pair["history"]] == ["v0.0"]
    assert [t["node_id"] for t in pair["conversation_1"]] == ["v0.0.1"]
    assert pair["overall"] == 2 and {p["preference"] for p in pair["preference"]} == {2}

    card = (tmp_path / "README.md").read_text()
    for needle in ("intermt", "model-a", "model-b", "judge-1", "| pairs | 7 |", *LOCAL_DIMENSIONS, *GLOBAL_DIMENSIONS):
        assert needle in card
    from_parquet = datasets.load_dataset(str(tmp_path), "pairs", split="train")
    assert from_parquet.num_rows == pairs.num_rows
    decoded = [img for row in from_parquet for turn in row["conversation_1"] for img in turn["response_images"]]
    assert decoded and all(isinstance(img, Image.Image) and img.size == (48, 48) for img in decoded)
