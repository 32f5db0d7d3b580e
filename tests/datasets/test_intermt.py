"""InterMT export and import: the released loaders' field access, and lossless round trips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from interleaf.datasets.export import export_run
from interleaf.datasets.intermt import (
    EXPORT_FILES,
    GLOBAL_DIMENSIONS,
    LOCAL_DIMENSIONS,
    InterMTFormatError,
    import_intermt,
)
from interleaf.datasets.run_reader import RunReader
from interleaf.state import DialogueState
from tests.datasets.sample_run import png


def bench_pair_conversation(sample: dict[str, Any], base: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
    """InterMT-Bench's pair loader, re-implemented: the content list it builds and the images it opens."""
    content: list[dict[str, Any]] = []
    for turn in sample["front_convs"]:
        for key, label in (("prompt", "Question"), ("response", "Response")):
            images = turn[f"{key}_images"] if f"{key}_images" in turn else []
            for image in images:
                if image == "":
                    continue
                content.append({"type": "image", "image": image})
            content.append({"type": "text", "text": f"Round {turn['round']} {label}: {turn[key]}"})
    pair = sample["paired_convs"]
    for image in pair["prompt_images"] if "prompt_images" in pair else []:
        if image != "":
            content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": f"Round {pair['round']} Question: {pair['prompt']}"})
    for side, label in ((1, "ResponseA"), (2, "ResponseB")):
        images = pair[f"response_{side}_images"] if f"response_{side}_images" in pair else []
        for image in images:
            if image != "":
                content.append({"type": "image", "image": image})
        content.append({"type": "text", "text": f"{label}: {pair[f'response_{side}']}"})
    opened = [(base / c["image"]).read_bytes() for c in content if c["type"] == "image"]
    return content, opened


def bench_score_conversation(sample: dict[str, Any], base: Path) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """InterMT-Bench's score loader: rounds after 0, ground truth from each round's annotations."""
    images = []
    for turn in sample["conversations"]:
        if turn["round"] == 0:
            continue
        rc = turn["round_conversations"]
        for image in (rc["prompt_images"] if "prompt_images" in rc else []) + rc["response_images"]:
            images.append((base / image).read_bytes())
    total_rounds = len(sample["conversations"]) - 1
    global_gt = {c: sample["conversations"][0]["annotations"][c] for c in GLOBAL_DIMENSIONS}
    local_gt = [{c: sample["conversations"][r]["annotations"].get(c, -1) for c in LOCAL_DIMENSIONS}
                for r in range(1, total_rounds + 1)]
    assert all(images)
    return total_rounds, global_gt, local_gt


@pytest.fixture(scope="module")
def exported(sample_run: tuple[Path, list[DialogueState]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("intermt")
    export_run(str(sample_run[0]), "intermt", out, None)
    return out


def test_pairs_load_with_the_released_loader(exported: Path, sample_run: tuple[Path, list[DialogueState]]) -> None:
    states = {s.seed.id: s for s in sample_run[1]}
    local = json.loads((exported / "local_pairs.json").read_text())
    global_ = json.loads((exported / "global_pairs.json").read_text())
    assert len(local) == sum(p.level == "local" for s in states.values() for p in s.pairs)
    assert len(global_) == sum(p.level == "global" for s in states.values() for p in s.pairs)
    for sample in local:
        content, opened = bench_pair_conversation(sample, exported)
        assert set(sample["local_overall_preference"]) == set(LOCAL_DIMENSIONS)
        assert all(v in (0, 1, 2) for v in sample["local_overall_preference"].values())
        assert content[-1]["text"].startswith("ResponseB: ")
        assert len(opened) == sum(1 for c in content if c["type"] == "image")
    pair = next(p for p in local if p["id"] == "trip/local/v0.0.0~v0.0.1")
    trip = states["trip"]
    assert [t["round"] for t in pair["front_convs"]] == [1]
    assert pair["front_convs"][0]["response"].startswith("Day 1 rides north along the cliffs. <Image, route map day 1>")
    assert pair["paired_convs"]["round"] == 2
    assert pair["paired_convs"]["response_2"] == "Camp anywhere."
    assert pair["paired_convs"]["prompt_images"] == [""]
    content, opened = bench_pair_conversation(pair, exported)
    expected = [trip.nodes["v0.0"].user.images[0], trip.nodes["v0.0"].assistant.images[0],  # type: ignore[union-attr]
                trip.nodes["v0.0.0"].assistant.images[0]]  # type: ignore[union-attr]
    assert [hashlib.sha256(b).hexdigest() for b in opened] == [r.sha256 for r in expected]
    for sample in global_:
        bench_pair_conversation(sample, exported)
        assert set(sample["overall_preference"]) == set(GLOBAL_DIMENSIONS)
    shared = next(p for p in global_ if p["id"] == "trip/global/v0.0.1~v0.0.0")
    assert [t["round"] for t in shared["front_convs"]] == [1]
    assert shared["overall_preference"]["helpfulness"] == 2


def test_dialogues_and_scores_shapes(exported: Path, sample_run: tuple[Path, list[DialogueState]]) -> None:
    dialogues = json.loads((exported / "dialogues.json").read_text())
    leaves = {f"{s.seed.id}/{leaf.id}" for s in sample_run[1] for leaf in s.leaves()}
    assert {d["id"] for d in dialogues} == leaves
    keys = {"round", "prompt", "prompt_images", "prompt_uuid", "response", "response_images", "response_uuid"}
    for d in dialogues:
        for turn in d["conversations"]:
            assert set(turn) == keys
            assert turn["prompt_images"] == [""] or all((exported / p).is_file() for p in turn["prompt_images"])
            assert all(p.startswith("images/") and (exported / p).is_file() for p in turn["response_images"])
    harbour = next(d for d in dialogues if d["id"] == "trip/v0.1.0")
    # Markers: verbatim when the run kept one, written from the caption when it had none,
    # and an image placed by no marker is listed only.
    assert "<Image, a harbour at dawn>" in harbour["conversations"][0]["response"]
    last = harbour["conversations"][1]
    assert last["response"].count("<Image") == 1 and len(last["response_images"]) == 2
    assert len(last["prompt_images"]) == 1 and last["prompt_images"][0].startswith("images/")
    scores = json.loads((exported / "scores.json").read_text())
    for sample in scores:
        rounds, global_gt, local_gt = bench_score_conversation(sample, exported)
        assert rounds == len(next(d for d in dialogues if d["id"] == sample["id"])["conversations"])
        assert set(global_gt) == set(GLOBAL_DIMENSIONS)
        assert all(-1 not in gt.values() for gt in local_gt)
    trip = next(s for s in sample_run[1] if s.seed.id == "trip")
    sample = next(s for s in scores if s["id"] == "trip/v0.0.1")
    assert sample["conversations"][2]["annotations"] == {
        k: int(v.value) for k, v in trip.nodes["v0.0.1"].scores.items()  # type: ignore[arg-type]
    }


def _normalised(folder: Path, name: str) -> Any:
    """The file's JSON with every image path replaced by the hash of the file it names."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and value.startswith("images/"):
            return "sha256:" + hashlib.sha256((folder / value).read_bytes()).hexdigest()
        return value
    return walk(json.loads((folder / name).read_text(encoding="utf-8")))


def test_export_import_export_is_lossless(exported: Path, tmp_path: Path) -> None:
    report = import_intermt(exported, tmp_path / "imported")
    assert "7 dialogues" in report and "4 local pairs" in report and "3 global pairs" in report
    again = tmp_path / "again"
    export_run(str(tmp_path / "imported"), "intermt", again, None)
    for name in EXPORT_FILES:
        assert (again / name).read_bytes() == (exported / name).read_bytes(), name
        assert _normalised(again, name) == _normalised(exported, name)
    # Each dialogue became a single-path tree that the run reader opens like any run.
    states = list(RunReader.open(str(tmp_path / "imported")).dialogues())
    single = [s for s in states if s.seed.metadata["intermt_record"] == "dialogue"]
    assert len(single) == 7 and all(len(s.leaves()) == 1 for s in single)
    trip = next(s for s in single if s.seed.id == "trip/v0.0.0")
    assert [n.id for n in trip.path(trip.leaves()[0].id)] == ["v0.0", "v0.0.0"]
    assert trip.nodes["v0.0"].follow_up == trip.nodes["v0.0.0"].user
    assert trip.nodes["v0.0.0"].scores["text_quality"].value == 3.0
    assert set(trip.dialogue_scores["v0.0.0"]) == set(GLOBAL_DIMENSIONS)


def test_import_released_shapes(tmp_path: Path) -> None:
    """Released-style data: JSONL, markers inline, "" for no prompt image, paths with other names."""
    (tmp_path / "imgs").mkdir()
    for n in range(3):
        (tmp_path / "imgs" / f"pic{n}.png").write_bytes(png(n))
    rows = [
        {"id": "d1", "conversations": [
            {"round": 1, "prompt": "Show me a lamp.", "prompt_images": [""], "prompt_uuid": "p-1",
             "response": "Here it is <Image, a brass lamp> and a second view <Image: lamp from above>.",
             "response_images": ["imgs/pic0.png", "imgs/pic1.png"], "response_uuid": "r-1"},
            {"round": 2, "prompt": "Make it green.", "prompt_images": "imgs/pic2.png",
             "response": "Done: <Image, edit of image 1: green lamp> <Image, unused marker>",
             "response_images": ["imgs/pic2.png"]},
        ]},
    ]
    src = tmp_path / "released.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    import_intermt(src, tmp_path / "run")
    state = next(RunReader.open(str(tmp_path / "run")).dialogues())
    first = state.nodes["v0.0"]
    assert first.assistant is not None and len(first.assistant.images) == 2
    assert [getattr(p, "marker", None) for p in first.assistant.parts][1] == "<Image, a brass lamp>"
    assert first.user.images == [] and first.tags["prompt_uuid"] == "p-1"
    second = state.nodes["v0.0.0"]
    assert len(second.user.images) == 1 and second.assistant is not None
    assert "<Image, unused marker>" in second.assistant.text
    out = tmp_path / "out"
    export_run(str(tmp_path / "run"), "intermt", out, None)
    (dialogue,) = json.loads((out / "dialogues.json").read_text())
    assert dialogue["id"] == "d1"
    for got, want in zip(dialogue["conversations"], rows[0]["conversations"], strict=True):
        assert got["prompt"] == want["prompt"] and got["response"] == want["response"]
        assert len(got["response_images"]) == len(want["response_images"])
    assert dialogue["conversations"][0]["prompt_uuid"] == "p-1"


@pytest.mark.parametrize(("content", "where"), [
    ('[{"id": "x", "conversations": [{"round": 1, "prompt": 5, "response": ""}]}]', "[0].conversations[0].prompt"),
    ('{"id": "x", "conversations": [{"prompt": "q"}]}\n{"id": "y", "conversations": [{"prompt": "q", '
     '"response_images": ["missing.png"]}]}\n', ":2 [conversations[0].response_images[0]]"),
    ('{"id": "x", "front_convs": [], "paired_convs": {"prompt": "q", "response_1": "a", "response_2": "b"}, '
     '"local_overall_preference": {"text_quality": 3}}\n', ":1 [local_overall_preference.text_quality]"),
    ('{"hello": 1}\n', ":1: not an InterMT record"),
    ('[{"id": "x", "conversations": []}]', "[0].conversations]: a dialogue needs at least one round"),
    ('[{"id": "x", "conversations": [}]', ":1:"),
])
def test_import_errors_name_the_place(tmp_path: Path, content: str, where: str) -> None:
    src = tmp_path / "bad.json"
    src.write_text(content)
    with pytest.raises(InterMTFormatError) as err:
        import_intermt(src, tmp_path / "run")
    assert str(src) in str(err.value) and where in str(err.value)
