"""generate_image / edit_image end to end on tiny random-weight pipelines loaded from folders."""

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from interleaf.errors import SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph
from interleaf.imaging.pool import pipeline_pool
from interleaf.imaging.references import bind_dialogue_images
from interleaf.imaging.seeding import derive_image_seed
from interleaf.run.totals import CallLedger, using_ledger
from interleaf.runtime import Runtime
from interleaf.storage.store import ObjectStore
from interleaf.tools.base import ToolContext, ToolError, tool_kinds, validate_tool_spec
from interleaf.tools.images import (
    EditImage,
    EditImageParams,
    GenerateImage,
    GenerateImageParams,
    ImageToolOutput,
)

GRAPH = """\
name: images
tools:
  draw:
    kind: generate_image
    backend: diffusers
    pipeline: text2img
    model: "{model}"
    steps: 2
    guidance: 4.0
    size: {size}
    max_batch: 8
    max_wait_ms: 30
  retouch: {{kind: edit_image, pipeline: img2img, model: "{model}", steps: 2, size: 32, strength: 0.5}}
nodes:
  plan: {{kind: turn_planner, params: {{k: 1}}}}
edges:
  - {{from: START, to: plan}}
  - {{from: plan, to: END}}
"""


def _ctx(
    store: ObjectStore, dialogue: str = "d0", node: str = "v0.0",
    index: int = 0, run_seed: int = 11
) -> ToolContext:
    return ToolContext(dialogue_id=dialogue, node_id=node, index=index, run_seed=run_seed, store=store)


def _gen(model: Path | str, **params: object) -> GenerateImage:
    settings = {"model": str(model), "steps": 2, "size": 32, "guidance": 4.0, **params}
    return GenerateImage("draw", GenerateImageParams.model_validate(settings))


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def test_importing_the_tools_does_not_import_torch() -> None:
    code = (
        "import sys, interleaf.tools.builtin\n"
        "from interleaf.tools.base import tool_kinds\n"
        "assert {'generate_image', 'edit_image'} <= set(tool_kinds.names())\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"size": 30}, "multiple of 8"),
        ({"size": 2048}, "above max_size"),
        ({"size": [64, 12]}, "height 12"),
        ({"size": "64x"}, "not N, \\[W, H\\] or 'WxH'"),
        ({"device": "gpu"}, "device 'gpu'"),
        ({"dtype": "int8"}, "dtype"),
        ({"backend": "comfy"}, "backend"),
        ({"sampler": "euler"}, "Extra inputs are not permitted"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_bad_params_are_rejected(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GenerateImageParams.model_validate({"model": "x/y", **settings})


def test_size_forms_and_edit_strength_check() -> None:
    p = GenerateImageParams.model_validate({"model": "x/y", "size": "64x32"})
    assert (p.width, p.height) == (64, 32)
    with pytest.raises(ValidationError, match="pipeline"):
        GenerateImageParams.model_validate({"model": "x/y", "pipeline": "img2img"})
    with pytest.raises(ValidationError, match="runs no denoising step"):
        EditImageParams.model_validate({"model": "x/y", "steps": 2, "strength": 0.3})


def test_bad_size_in_yaml_names_the_line(tmp_path: Path, tiny_pipeline_dir: Path) -> None:
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(model=tiny_pipeline_dir, size=36), encoding="utf-8")
    spec, doc = load_graph(graph)
    with pytest.raises(SpecError, match=r"graph.yaml:3:\d+ \[tools.draw\].*width 36 must be a positive multiple of 8"):
        compile_graph(spec, doc)


async def test_folder_named_in_yaml_loads_and_runs(tmp_path: Path, tiny_pipeline_dir: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_pipeline_dir, target_is_directory=True)
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(model="${TINY_MODEL_DIR:-models/tiny}", size=32), encoding="utf-8")
    spec, _ = load_graph(graph)
    store = ObjectStore(tmp_path / "store")
    validate_tool_spec("draw", spec.tools["draw"])
    tool = Runtime(spec, store=store, spec_dir=graph.parent).tool("draw")
    assert isinstance(tool, GenerateImage)
    assert tool.model_path == str((tmp_path / "models" / "tiny").resolve())
    out = await tool(tool.Input(prompt="a lighthouse at dusk"), _ctx(store))
    assert isinstance(out, ImageToolOutput)
    assert out.model == "${TINY_MODEL_DIR:-models/tiny}" and out.scheduler == "DDIMScheduler"
    assert out.params["steps"] == 2 and out.params["guidance"] == 4.0 and out.params["device"] == "cpu"
    assert out.seed == derive_image_seed(11, "d0", "v0.0", 0)
    data = store.get_bytes(store.key_of(out.image.uri))
    assert (out.image.width, out.image.height) == _png_size(data) == (32, 32)
    import hashlib

    assert hashlib.sha256(data).hexdigest() == out.image.sha256
    assert out.image.uri.endswith(f"/blobs/sha256/{out.image.sha256[:2]}/{out.image.sha256}.png")


def test_model_paths_resolve_env_and_spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interleaf.tools.images import resolve_model

    (tmp_path / "m").mkdir()
    monkeypatch.setenv("MODEL_ROOT", str(tmp_path))
    assert resolve_model("${MODEL_ROOT}/m", None, "draw") == str((tmp_path / "m").resolve())
    assert resolve_model("m", tmp_path, "draw") == str((tmp_path / "m").resolve())
    assert resolve_model("stabilityai/sd-turbo", tmp_path, "draw") == "stabilityai/sd-turbo"
    with pytest.raises(SpecError, match=r"\[tools.draw.model\].*does not exist"):
        resolve_model("./missing", tmp_path, "draw")
    monkeypatch.delenv("NO_SUCH_VAR_FOR_TEST", raising=False)
    with pytest.raises(SpecError, match="'NO_SUCH_VAR_FOR_TEST' is not set"):
        resolve_model("${NO_SUCH_VAR_FOR_TEST}", tmp_path, "draw")


async def test_same_seed_gives_identical_bytes_even_after_reloading(
    tiny_pipeline_dir: Path, image_store: ObjectStore
) -> None:
    first = await _gen(tiny_pipeline_dir)(GenerateImage.Input(prompt="a red kite"), _ctx(image_store))
    pipeline_pool().clear()  # the next call loads the folder again
    again = await _gen(tiny_pipeline_dir)(GenerateImage.Input(prompt="a red kite"), _ctx(image_store))
    other = await _gen(tiny_pipeline_dir)(GenerateImage.Input(prompt="a red kite"), _ctx(image_store, dialogue="d1"))
    assert again.image == first.image and again.seed == first.seed
    assert other.image.sha256 != first.image.sha256


async def test_sixteen_dialogues_share_at_most_three_pipeline_calls(
    tiny_pipeline_dir: Path, image_store: ObjectStore
) -> None:
    tool = _gen(tiny_pipeline_dir, max_batch=8, max_wait_ms=50)
    loaded = await tool.loaded()
    before = loaded.calls
    ledger = CallLedger()
    with using_ledger(ledger):
        outs = await asyncio.gather(
            *(tool(tool.Input(prompt=f"scene {i}"), _ctx(image_store, dialogue=f"dlg-{i}")) for i in range(16))
        )
    assert loaded.calls - before <= 3
    assert len({o.image.sha256 for o in outs}) == 16
    # Every image made is counted in the run's totals (and no model call is).
    assert (ledger.totals.images, ledger.totals.calls) == (16, 0)
    assert len(image_store.list("blobs")) >= 16


async def test_long_prompt_is_truncated_with_a_note(tiny_pipeline_dir: Path, image_store: ObjectStore) -> None:
    prompt = " ".join(f"detail{i}" for i in range(80))
    out = await _gen(tiny_pipeline_dir)(GenerateImage.Input(prompt=prompt), _ctx(image_store))
    assert len(out.notes) == 1 and "token limit" in out.notes[0]
    assert prompt.startswith(out.params["prompt"]) and len(out.params["prompt"]) < len(prompt)


async def test_img2img_edits_a_stored_image(tiny_pipeline_dir: Path, image_store: ObjectStore) -> None:
    source = await _gen(tiny_pipeline_dir)(GenerateImage.Input(prompt="a house"), _ctx(image_store))
    edit = EditImage(
        "retouch",
        EditImageParams.model_validate({"model": str(tiny_pipeline_dir), "steps": 4, "size": 32, "strength": 0.5}),
    )
    ctx = _ctx(image_store, index=1)
    by_uri = await edit(edit.Input(image=source.image.uri, instruction="paint the door red"), ctx)
    with bind_dialogue_images([source.image]):
        by_ordinal = await edit(edit.Input(image="image 1", instruction="paint the door red"), ctx)
    stronger = await edit(edit.Input(image=source.image.uri, instruction="paint the door red", strength=1.0), ctx)
    assert by_uri.image == by_ordinal.image
    assert by_uri.image.sha256 != source.image.sha256 != stronger.image.sha256
    assert by_uri.image.sha256 != stronger.image.sha256
    assert by_uri.params["source_image"] == source.image.uri and by_uri.params["strength"] == 0.5
    assert by_uri.params["pipeline"] == "img2img"
    with pytest.raises(ToolError, match="not in this run's store"):
        await edit(edit.Input(image="/etc/hosts", instruction="x"), ctx)


async def test_instruct_pix2pix_edits(tiny_pix2pix_dir: Path, image_store: ObjectStore) -> None:
    key, _ = image_store.put_blob(_solid_png((90, 140, 200)), "png")
    edit = EditImage(
        "retouch",
        EditImageParams.model_validate(
            {"model": str(tiny_pix2pix_dir), "pipeline": "instruct_pix2pix", "steps": 2, "size": 32}
        ),
    )
    out = await edit(edit.Input(image=image_store.url(key), instruction="add snow"), _ctx(image_store))
    assert out.params["pipeline"] == "instruct_pix2pix" and out.params["image_guidance"] == 1.5
    assert (out.image.width, out.image.height) == (32, 32)


async def test_a_bad_request_fails_only_its_own_branch(tiny_pipeline_dir: Path, image_store: ObjectStore) -> None:
    edit = EditImage(
        "retouch",
        EditImageParams.model_validate({"model": str(tiny_pipeline_dir), "steps": 2, "size": 32, "max_wait_ms": 50}),
    )
    good, _ = image_store.put_blob(_solid_png((10, 200, 30)), "png")
    broken, _ = image_store.put_blob(b"this is text, not a picture", "png")
    loaded = await edit.loaded()
    before = loaded.calls
    refs = [good, good, broken, good]
    outcomes = await asyncio.gather(
        *(
            edit(edit.Input(image=image_store.url(ref), instruction="sharpen"), _ctx(image_store, dialogue=f"d{i}"))
            for i, ref in enumerate(refs)
        ),
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], ToolError) and "not a readable image" in str(outcomes[2])
    assert all(isinstance(o, ImageToolOutput) for i, o in enumerate(outcomes) if i != 2)
    assert loaded.calls - before == 1


def test_registered_kinds() -> None:
    assert tool_kinds.get("generate_image") is GenerateImage
    assert tool_kinds.get("edit_image") is EditImage


def _solid_png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(buf, format="PNG")
    return buf.getvalue()


def test_tiny_pipeline_cache_is_built_once(tmp_path: Path) -> None:
    from interleaf.testing.tiny_pipelines import ensure_tiny_pipeline

    first = ensure_tiny_pipeline(tmp_path)
    stamp = os.stat(first / "model_index.json").st_mtime_ns
    assert ensure_tiny_pipeline(tmp_path) == first
    assert os.stat(first / "model_index.json").st_mtime_ns == stamp
    assert (first / "unet").is_dir() and (first / "tokenizer").is_dir()
