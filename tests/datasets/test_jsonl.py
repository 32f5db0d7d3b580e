"""The lossless jsonl export: every tree (pruned branches, reasons, calls) and its images, read back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from interleaf.datasets.export import export_run
from interleaf.datasets.jsonl import DIALOGUES_JSONL, JsonlFormatError, read_jsonl
from interleaf.run.reader import RunReader, images_of
from interleaf.state import DialogueState


def test_jsonl_round_trip(sample_run: tuple[Path, list[DialogueState]], tmp_path: Path) -> None:
    root, states = sample_run
    export_run(str(root), "jsonl", tmp_path, None)
    back = read_jsonl(tmp_path / DIALOGUES_JSONL)
    assert sorted(back, key=lambda s: s.seed.id) == sorted(states, key=lambda s: s.seed.id)
    trip = next(s for s in back if s.seed.id == "trip")
    assert trip.nodes["v1.1"].status == "failed" and "OOM" in (trip.nodes["v1.1"].reason or "")
    assert trip.nodes["v0.2"].reason == "text_quality 0 < threshold 1"
    # The export folder is itself a blob store for every image the trees refer to.
    folder = RunReader.open(str(tmp_path))
    for state in back:
        for ref in images_of(state):
            assert hashlib.sha256(folder.image_bytes(ref)).hexdigest() == ref.sha256
    assert (tmp_path / "manifest.json").is_file() and (tmp_path / "graph.yaml").is_file()


def test_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / DIALOGUES_JSONL
    path.write_text('{"seed": {"id": "a", "prompt": "p"}}\n{"seed": {"id": "b"}}\n')
    with pytest.raises(JsonlFormatError, match=r"dialogues\.jsonl:2 \[seed\.prompt\]"):
        read_jsonl(path)
