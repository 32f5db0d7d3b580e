import io
import json
from pathlib import Path

import pytest
from PIL import Image

from interleaf.errors import SpecError
from interleaf.graphs.spec import ToolSpec
from interleaf.storage.store import ObjectStore
from interleaf.tools.base import ToolContext, ToolError, build_tool
from interleaf.tools.retrieval import RetrieveImage, RetrieveImageInput


def _collection(folder: Path) -> Path:
    rows = []
    for name, colour, caption in [
        ("red.png", "red", "a red fire truck parked on a city street"),
        ("sea.png", "blue", "calm blue sea under a clear sky"),
        ("forest.png", "green", "a green pine forest in the mountains"),
    ]:
        Image.new("RGB", (12, 8), colour).save(folder / name)
        rows.append({"uri": name, "caption": caption})
    path = folder / "collection.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _tool(tmp_path: Path, **params) -> tuple[RetrieveImage, ToolContext]:
    store = ObjectStore(tmp_path / "store")
    # Relative collection paths resolve against base_dir (the graph file's folder in a run).
    tool = build_tool("retrieve", ToolSpec(kind="retrieve_image", **params), store=store, base_dir=tmp_path)
    assert isinstance(tool, RetrieveImage)
    ctx = ToolContext(dialogue_id="d", node_id="v0.0", index=0, run_seed=0, store=store)
    return tool, ctx


async def test_best_caption_wins_and_image_is_copied_into_the_store(tmp_path: Path) -> None:
    _collection(tmp_path)
    tool, ctx = _tool(tmp_path, collection="collection.jsonl", top_k=2)
    out = await tool(RetrieveImageInput(query="pine trees in a mountain forest"), ctx)
    assert out.caption.startswith("a green pine forest")
    assert out.source_uri.endswith("forest.png")
    assert (out.image.width, out.image.height, out.image.mime) == (12, 8, "image/png")
    data = ctx.store.get_bytes(ctx.store.key_of(out.image.uri))
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == (0, 128, 0)
    assert len(out.hits) == 1  # only one caption shares words with the query
    schema = tool.function_schema()
    assert schema["function"]["name"] == "retrieve" and "query" in schema["function"]["parameters"]["properties"]


async def test_no_match_is_a_tool_error(tmp_path: Path) -> None:
    _collection(tmp_path)
    tool, ctx = _tool(tmp_path, collection=str(tmp_path / "collection.jsonl"))
    with pytest.raises(ToolError, match="no image"):
        await tool(RetrieveImageInput(query="quantum chromodynamics"), ctx)


async def test_bad_collection_names_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"uri": "a.png", "caption": "ok"}\n{"uri": "b.png"}\n', encoding="utf-8")
    tool, ctx = _tool(tmp_path, collection="bad.jsonl")
    with pytest.raises(SpecError) as err:
        await tool(RetrieveImageInput(query="ok"), ctx)
    assert "bad.jsonl:2" in str(err.value) and "caption" in str(err.value)
