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
    HUMAN_ANNOTATOR,
    HUMAN_ORIGIN,
    LOCAL_DIMENSIONS,
    PLACEHOLDER_TAG,
    PLACEHOLDERS_KEY,
    InterMTFormatError,
    MissingImagesError,
    import_intermt,
    is_placeholder,
)
from interleaf.run.reader import RunReader
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
    rows: list[dict[str, Any]] = [
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


# -- confined image reads ----------------------------------------------------------------------


def one_dialogue(image: str) -> str:
    return json.dumps({"id": "d1", "conversations": [
        {"round": 1, "prompt": "Look.", "prompt_images": [image], "response": "Seen."}]}) + "\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A data folder with a picture inside it and a "secret" picture beside it."""
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    (tmp_path / "data" / "imgs" / "in.png").write_bytes(png(0))
    (tmp_path / "secret.png").write_bytes(png(1))
    return tmp_path


@pytest.mark.parametrize("name", ["../secret.png", "imgs/../../secret.png", "ABSOLUTE", "link.png"])
def test_images_outside_the_root_are_refused(outside: Path, name: str) -> None:
    (outside / "data" / "link.png").symlink_to(outside / "secret.png")
    if name == "ABSOLUTE":
        name = str(outside / "secret.png")
    src = outside / "data" / "rows.jsonl"
    src.write_text(one_dialogue(name))
    with pytest.raises(InterMTFormatError) as err:
        import_intermt(src, outside / "run")
    message = str(err.value)
    assert f"{src}:1 [conversations[0].prompt_images[0]]" in message
    assert repr(name) in message and str(outside / "data") in message and "--allow-outside-root" in message
    # Allowed explicitly, the same file imports, and the image is the one outside.
    import_intermt(src, outside / "allowed", allow_outside_root=True)
    state = next(RunReader.open(str(outside / "allowed")).dialogues())
    assert state.nodes["v0.0"].user.images[0].sha256 == hashlib.sha256(png(1)).hexdigest()


def test_images_root_folder_and_uri(outside: Path) -> None:
    src = outside / "data" / "rows.jsonl"
    src.write_text(one_dialogue("in.png"))
    with pytest.raises(InterMTFormatError, match=r"image file 'in\.png' not found"):
        import_intermt(src, outside / "run-default")  # the default root is the file's folder
    roots: list[str | Path] = [outside / "data" / "imgs", f"file://{outside / 'data' / 'imgs'}"]
    for n, root in enumerate(roots):
        import_intermt(src, outside / f"run{n}", images_root=root)
        state = next(RunReader.open(str(outside / f"run{n}")).dialogues())
        assert state.nodes["v0.0"].user.images[0].sha256 == hashlib.sha256(png(0)).hexdigest()


def test_store_root_refuses_dot_dot_even_when_allowed(outside: Path) -> None:
    """A non-local store root (fsspec's memory://) reads keys under it; '..' cannot leave it."""
    from interleaf.storage.store import ObjectStore

    ObjectStore("memory://bench-images").put_bytes("imgs/in.png", png(2))
    src = outside / "data" / "rows.jsonl"
    src.write_text(one_dialogue("imgs/in.png"))
    import_intermt(src, outside / "run", images_root="memory://bench-images")
    state = next(RunReader.open(str(outside / "run")).dialogues())
    assert state.nodes["v0.0"].user.images[0].sha256 == hashlib.sha256(png(2)).hexdigest()
    src.write_text(one_dialogue("../other/x.png"))
    with pytest.raises(InterMTFormatError, match=r"keys of a store root cannot use '\.\.'"):
        import_intermt(src, outside / "run2", images_root="memory://bench-images", allow_outside_root=True)


def bomb_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of ``width`` x ``height``: a few kB that decode to ``width * height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (20_000, 20_000)])
def test_decompression_bombs_are_a_row_error(tmp_path: Path, width: int, height: int) -> None:
    """Over MAX_IMAGE_PIXELS Pillow warns, over twice it raises: both are the row's error."""
    from PIL import Image

    assert width * height > Image.MAX_IMAGE_PIXELS  # type: ignore[operator]
    (tmp_path / "big.png").write_bytes(bomb_png(width, height))
    rows = [{"id": "fine", "conversations": [{"prompt": "q", "response": "a"}]},
            {"id": "bomb", "conversations": [{"prompt": "q", "response": "a", "response_images": ["big.png"]}]}]
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(rows))
    with pytest.raises(InterMTFormatError) as err:
        import_intermt(src, tmp_path / "run")
    message = str(err.value)
    assert f"{src} [[1].conversations[0].response_images[0]]" in message
    assert f"has {width * height:,} pixels, over the limit of {Image.MAX_IMAGE_PIXELS:,}" in message


def test_import_into_a_file_is_an_output_error(tmp_path: Path) -> None:
    from interleaf.datasets.outputs import OutputError

    src = tmp_path / "rows.json"
    src.write_text("[]")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a regular file is in the way"):
        import_intermt(src, tmp_path / "file" / "run")


def test_released_annotations_become_human_scores(tmp_path: Path) -> None:
    """People's annotation objects of a released file become HumanScore records (not judge scores)."""
    row = {"id": "d1", "annotation": {"helpfulness": 3, "context_awareness": {"score": 2, "reason": "ok"}},
           "conversations": [
               {"round": 1, "prompt": "q1", "response": "a1",
                "annotation": {"text_quality": "2", "visual_perceptual_quality": {"rating": 1}, "note": "blurry"}},
               {"round": 2, "prompt": "q2", "response": "a2", "annotations": {"text_quality": 3}},
           ]}
    src = tmp_path / "bench.jsonl"
    src.write_text(json.dumps(row) + "\n")
    report = import_intermt(src, tmp_path / "run")
    assert "imported 1 dialogues, 0 score records" in report
    state = next(RunReader.open(str(tmp_path / "run")).dialogues())
    first, second = state.nodes["v0.0"], state.nodes["v0.0.0"]
    assert first.user.text == "q1" and second.assistant is not None and second.assistant.text == "a2"
    assert first.scores == {} and second.scores == {}
    assert {h.dimension: h.value for h in first.human_scores} == {"text_quality": 2.0, "visual_perceptual_quality": 1.0}
    assert {(h.annotator, h.origin) for h in first.human_scores} == {(HUMAN_ANNOTATOR, HUMAN_ORIGIN)}
    assert [h.value for h in second.human_scores] == [3.0]
    overall = {h.dimension: h for h in state.human_dialogue_scores["v0.0.0"]}
    assert overall["helpfulness"].value == 3.0 and overall["context_awareness"].reason == "ok"
    # Exported again: the record comes back as read, and the labels are InterMT-Bench score records.
    export_run(str(tmp_path / "run"), "intermt", tmp_path / "out", None)
    (dialogue,) = json.loads((tmp_path / "out" / "dialogues.json").read_text())
    assert dialogue["annotation"] == row["annotation"]
    assert dialogue["conversations"][0]["annotation"]["note"] == "blurry"
    (scores,) = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert "scored_by" not in scores  # people's labels
    assert scores["conversations"][0]["annotations"] == {"context_awareness": 2, "helpfulness": 3}
    assert scores["conversations"][1]["annotations"] == {"text_quality": 2, "visual_perceptual_quality": 1}


# -- lossless import of the released InterMT-Bench shapes ----------------------------------------

BENCH_DATA = Path(__file__).resolve().parents[1] / "bench_intermt" / "data"


def assert_keeps(read: Any, written: Any, where: str = "") -> None:
    """Every key of ``read`` is in ``written`` with an equal value (extra keys in ``written`` allowed)."""
    if isinstance(read, dict):
        assert isinstance(written, dict), where
        for key, value in read.items():
            assert key in written, f"{where}.{key} lost"
            assert_keeps(value, written[key], f"{where}.{key}")
    elif isinstance(read, list):
        assert isinstance(written, list) and len(written) == len(read), where
        for i, (a, b) in enumerate(zip(read, written, strict=True)):
            assert_keeps(a, b, f"{where}[{i}]")
    else:
        assert read == written, f"{where}: {read!r} != {written!r}"


def _image_names(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in (
            ([v] if isinstance(v, str) else v) if k.endswith("_images") else _image_names(v)) if n]
    if isinstance(value, list):
        return [n for v in value for n in _image_names(v)]
    return []


@pytest.mark.parametrize(("source", "written"), [
    ("score.jsonl", {"score.jsonl": "scores.json"}),
    ("pairs", {"pairs/local_pairs.json": "local_pairs.json", "pairs/global_pairs.json": "global_pairs.json"}),
    ("crucial.json", {"crucial.json": "dialogues.json"}),
])
def test_released_shapes_import_and_export_key_by_key(tmp_path: Path, source: str, written: dict[str, str]) -> None:
    import_intermt(BENCH_DATA / source, tmp_path / "run", images_root=BENCH_DATA)
    export_run(str(tmp_path / "run"), "intermt", tmp_path / "out", None)
    for read_name, out_name in written.items():
        text = (BENCH_DATA / read_name).read_text()
        read = [json.loads(line) for line in text.splitlines()] if read_name.endswith(".jsonl") else json.loads(text)
        exported = json.loads((tmp_path / "out" / out_name).read_text())
        assert len(exported) == len(read)
        by_id = {r["id"]: r for r in exported}
        for index, record in enumerate(read):
            # Records without an id (the released pair files) get the file's name and position.
            key = record.get("id", f"{Path(read_name).stem}-{index}")
            assert_keeps(record, by_id[key], key)
            # Each image name comes back with the bytes it named.
            for name in _image_names(record):
                assert (tmp_path / "out" / name).read_bytes() == (BENCH_DATA / name).read_bytes(), name


def test_duplicate_content_images_stay_separate_references(tmp_path: Path) -> None:
    import_intermt(BENCH_DATA / "score.jsonl", tmp_path / "run", images_root=BENCH_DATA)
    state = next(s for s in RunReader.open(str(tmp_path / "run")).dialogues() if s.seed.id == "s1")
    images = state.nodes["v0.0"].user.images
    assert len(images) == 2 and images[0].sha256 == images[1].sha256  # one blob, two references
    export_run(str(tmp_path / "run"), "intermt", tmp_path / "out", None)
    scores = {r["id"]: r for r in json.loads((tmp_path / "out" / "scores.json").read_text())}
    assert scores["s1"]["conversations"][1]["round_conversations"]["prompt_images"] == [
        "images/red.png", "images/red-copy.png"]
    dialogues = {r["id"]: r for r in json.loads((tmp_path / "out" / "dialogues.json").read_text())}
    # The derived dialogue record names the two references too (not one).
    assert len(dialogues["s1"]["conversations"][0]["prompt_images"]) == 2


def test_missing_images_error_placeholder_skip(tmp_path: Path) -> None:
    empty_root = tmp_path / "nothing-here"
    empty_root.mkdir()
    src = BENCH_DATA / "score.jsonl"
    with pytest.raises(MissingImagesError) as err:
        import_intermt(src, tmp_path / "refused", images_root=empty_root)
    message = str(err.value)
    assert f"{src}:1 [conversations[1].round_conversations.prompt_images[0]]: image file 'images/red.png'" in message
    assert "5 image file(s) missing in 3 record(s)" in message and (err.value.count, err.value.records) == (5, 3)
    assert not (tmp_path / "refused" / "manifest.json").exists()

    report = import_intermt(src, tmp_path / "placeholders", images_root=empty_root, missing_images="placeholder")
    assert "7 missing image(s) replaced by placeholders in 3 record(s)" in report
    states = {s.seed.id: s for s in RunReader.open(str(tmp_path / "placeholders")).dialogues()}
    first = states["s1"].nodes["v0.0"]
    assert first.tags[PLACEHOLDER_TAG] == ["images/red.png", "images/red-copy.png", "images/blue.png"]
    assert all(is_placeholder(i) for i in first.user.images) and states["s1"].seed.metadata[PLACEHOLDERS_KEY] == 3
    # The names come back in an export; no made-up bytes are written under them.
    export_run(str(tmp_path / "placeholders"), "intermt", tmp_path / "out", None)
    scores = {r["id"]: r for r in json.loads((tmp_path / "out" / "scores.json").read_text())}
    assert scores["s1"]["conversations"][1]["round_conversations"]["response_images"] == ["images/blue.png"]
    assert not (tmp_path / "out" / "images" / "blue.png").exists()

    # Only s1 and s2 name images under images/red.png and images/green.png; keep those, lose s3's.
    partial = tmp_path / "partial" / "images"
    partial.mkdir(parents=True)
    for name in ("red.png", "red-copy.png", "blue.png", "green.png"):
        (partial / name).write_bytes((BENCH_DATA / "images" / name).read_bytes())
    report = import_intermt(src, tmp_path / "skipped", images_root=partial.parent, missing_images="skip")
    assert "imported 0 dialogues, 2 score records" in report and "1 record(s) skipped for missing images" in report
    assert [s.seed.id for s in RunReader.open(str(tmp_path / "skipped")).dialogues()] == ["s1", "s2"]


def test_images_root_any_fsspec_uri_with_placeholders(tmp_path: Path) -> None:
    """A store root (fsspec's memory:// here, s3:// or hf:// alike) holding only some of the images."""
    from interleaf.storage.store import ObjectStore

    store = ObjectStore("memory://bench-released")
    store.put_bytes("images/yellow.png", (BENCH_DATA / "images" / "yellow.png").read_bytes())
    import_intermt(BENCH_DATA / "crucial.json", tmp_path / "run", images_root="memory://bench-released")
    state = next(s for s in RunReader.open(str(tmp_path / "run")).dialogues() if s.seed.id == "c2")
    assert not is_placeholder(state.nodes["v0.0.0"].user.images[0])
    assert state.human_dialogue_scores["v0.0.0"][0].reason.startswith("c2 reference")
