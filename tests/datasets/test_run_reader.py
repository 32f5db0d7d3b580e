"""Finding a run (folder, run.json pointer, store URI), moved runs, totals and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from interleaf.datasets.export import export_run
from interleaf.errors import InterleafError
from interleaf.run.reader import RunDataError, RunNotFoundError, RunReader
from interleaf.state import DialogueState


def test_pointer_uri_and_moved_run(sample_run: tuple[Path, list[DialogueState]], tmp_path: Path) -> None:
    root, states = sample_run
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"store": f"file://{root}", "run_id": "run-1"}))
    assert [s.seed.id for s in RunReader.open(str(out)).dialogues()] == sorted(s.seed.id for s in states)
    assert RunReader.open(f"file://{root}").manifest().run_id == "run-1"  # type: ignore[union-attr]
    # A copied run still finds its images: URIs point at the old place, blobs are found by hash.
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    reader = RunReader.open(str(moved))
    ref = states[0].nodes["v0.0"].assistant.images[0]  # type: ignore[union-attr]
    assert not ref.uri.startswith(reader.store.uri)
    assert reader.image_bytes(ref) == RunReader.open(str(root)).image_bytes(ref)


def test_totals_come_from_status_files(sample_run: tuple[Path, list[DialogueState]]) -> None:
    root, states = sample_run
    totals = RunReader.open(str(root)).totals()
    calls = [c for s in states for n in s.nodes.values() for p in n.provenance for c in p.calls]
    assert totals.calls == len(calls) and totals.seeds == 2 and totals.done == 2
    assert totals.prompt_tokens == sum(c.prompt_tokens or 0 for c in calls)
    assert totals.seconds == pytest.approx(12.5 + 13.5)


def test_bad_inputs(tmp_path: Path, sample_run: tuple[Path, list[DialogueState]]) -> None:
    with pytest.raises(RunNotFoundError):
        RunReader.open(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunNotFoundError, match="not a run"):
        RunReader.open(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    (bad / "dialogues").mkdir(parents=True)
    (bad / "dialogues" / "x.json").write_text('{"seed": {"id": "x", "prompt": "p"}, "nodes": {"a": 1}}')
    with pytest.raises(RunDataError, match=r"x\.json \[nodes\.a\]"):
        list(RunReader.open(str(bad)).dialogues())
    with pytest.raises(InterleafError, match="unknown export format"):
        export_run(str(sample_run[0]), "csv", tmp_path / "o", None)
    with pytest.raises(InterleafError, match="only for --format hf"):
        export_run(str(sample_run[0]), "jsonl", tmp_path / "o", "me/data")
