"""assistant_turn against the simulator over real HTTP, with small real image tools."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from pydantic import BaseModel

from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph
from interleaf.nodes.assistant_turn import AssistantTurn, AssistantTurnInput
from interleaf.nodes.base import NodeContext, NodeIO, NodeKind
from interleaf.runtime import Runtime
from interleaf.state import (
    CandidateTask,
    DialogueState,
    ImagePart,
    ImageRef,
    Message,
    Prompt,
    Seed,
    TextPart,
    TreeNode,
)
from interleaf.storage.store import ObjectStore
from interleaf.testing.simulator import Rule, SimAnswer, Simulator
from interleaf.tools.base import Tool, ToolContext, ToolError, tool_kinds
from tests.fixtures.sim import write_sim_graph


async def _store_png(store: ObjectStore, img: Image.Image) -> ImageRef:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    key, sha = await store.aput_blob(buf.getvalue(), "png")
    return ImageRef(uri=store.url(key), sha256=sha, width=img.width, height=img.height)


class PaintInput(BaseModel):
    prompt: str


class ImageOutput(BaseModel):
    image: ImageRef


class EditInput(BaseModel):
    image: str
    instruction: str


@tool_kinds.register("test_paint")
class Paint(Tool[Any, PaintInput, ImageOutput]):
    kind = "test_paint"
    description = "Paint a small flat-colour picture for a caption."
    Input = PaintInput
    Output = ImageOutput

    async def __call__(self, inp: PaintInput, ctx: ToolContext) -> ImageOutput:
        rgb = hashlib.sha256(f"{inp.prompt}|{ctx.node_id}|{ctx.index}".encode()).digest()[:3]
        return ImageOutput(image=await _store_png(ctx.store, Image.new("RGB", (16, 16), tuple(rgb))))


@tool_kinds.register("test_invert")
class Invert(Tool[Any, EditInput, ImageOutput]):
    kind = "test_invert"
    description = "Edit an image (inverts its colours)."
    Input = EditInput
    Output = ImageOutput

    async def __call__(self, inp: EditInput, ctx: ToolContext) -> ImageOutput:
        data = await ctx.store.aget_bytes(ctx.store.key_of(inp.image))
        img = ImageOps.invert(Image.open(io.BytesIO(data)).convert("RGB"))
        return ImageOutput(image=await _store_png(ctx.store, img))


@tool_kinds.register("test_broken")
class Broken(Tool[Any, PaintInput, ImageOutput]):
    kind = "test_broken"
    description = "A tool whose backend is down."
    Input = PaintInput
    Output = ImageOutput

    async def __call__(self, inp: PaintInput, ctx: ToolContext) -> ImageOutput:
        raise ToolError("backend unavailable")


TOOLS = {"paint": {"kind": "test_paint"}, "invert": {"kind": "test_invert"}, "broken": {"kind": "test_broken"}}


def _node(tmp_path: Path, sim: Simulator, *, models: dict[str, Any], node: dict[str, Any]) -> AssistantTurn:
    path = write_sim_graph(tmp_path / "graph.yaml", sim.base_url, models=models, tools=TOOLS,
                           nodes={"answer": {"kind": "assistant_turn", **node}},
                           edges=[{"from": "START", "to": "answer"}, {"from": "answer", "to": "END"}])
    spec, _ = load_graph(path)
    runtime = Runtime(spec, store=ObjectStore(tmp_path / "store"), spec_dir=tmp_path)
    nspec = spec.nodes["answer"]
    ctx = NodeContext(name="answer", spec=nspec, runtime=runtime, model_names=nspec.model_names(),
                      tool_names=list(nspec.tools))
    return AssistantTurn(ctx, AssistantTurn.Params.model_validate(nspec.params))


def _input(text: str = "Show me a lighthouse", *, candidate: int = 0, images: list[ImageRef] | None = None,
           ) -> AssistantTurnInput:
    task = CandidateTask(node_id=f"v0.{candidate}", parent=None, turn=0, candidate=candidate,
                         user=Message.user(text, images=images))
    return AssistantTurnInput.model_construct(seed=Seed(id="s1", prompt=text), nodes={}, task=task)


async def _run(node: AssistantTurn, inp: AssistantTurnInput) -> TreeNode:
    out = await node.run(inp)
    (tree_node,) = out.nodes.values()
    return tree_node


def _fixed(text: str) -> Rule:
    return Rule(model="scripted", reply=lambda req: SimAnswer(content=text))


async def test_two_inline_markers_become_two_images_in_order(sim: Simulator, tmp_path: Path) -> None:
    sim.add_rule(_fixed("Intro <Image, a red square> middle <[Image] a blue circle> end."))
    node = _node(tmp_path, sim, models={"m": "scripted"},
                 node={"model": "m", "tools": ["paint"], "params": {"image_tool": "paint"}})
    result = await _run(node, _input())
    assert result.status == "alive" and result.assistant is not None
    parts = result.assistant.parts
    assert [type(p).__name__ for p in parts] == ["TextPart", "ImagePart", "TextPart", "ImagePart", "TextPart"]
    images = [p for p in parts if isinstance(p, ImagePart)]
    assert [(p.caption, p.marker) for p in images] == [("a red square", "<Image, a red square>"),
                                                      ("a blue circle", "<[Image] a blue circle>")]
    assert images[0].image.sha256 != images[1].image.sha256
    store = node.ctx.runtime.require_store()
    assert all(store.exists(store.key_of(p.image.uri)) for p in images)
    (prov,) = result.provenance
    assert [t.arguments for t in prov.tool_calls] == [{"prompt": "a red square"}, {"prompt": "a blue circle"}]
    assert prov.model == "m" and len(prov.calls) == 1 and sim.requests == 1
    assert result.id == "v0.0" and result.user.text == "Show me a lighthouse"


async def test_edit_marker_calls_the_edit_tool_on_the_referenced_image(sim: Simulator, tmp_path: Path) -> None:
    sim.add_rule(_fixed("Done: <Image, edit of image 1: invert the colours>"))
    node = _node(tmp_path, sim, models={"m": "scripted"},
                 node={"model": "m", "tools": ["paint", "invert"],
                       "params": {"image_tool": "paint", "edit_tool": "invert"}})
    source = await _store_png(node.ctx.runtime.require_store(), Image.new("RGB", (8, 8), (10, 20, 30)))
    result = await _run(node, _input("Invert image 1", images=[source]))
    assert result.status == "alive" and result.assistant is not None
    (edited,) = result.assistant.images
    store = node.ctx.runtime.require_store()
    pixel = Image.open(io.BytesIO(store.get_bytes(store.key_of(edited.uri)))).getpixel((0, 0))
    assert pixel == (245, 235, 225)
    (call,) = result.provenance[0].tool_calls
    assert call.tool == "invert" and call.arguments == {"image": "image 1", "instruction": "invert the colours"}


async def test_marker_tool_failure_is_shown_to_the_model_and_bounded(sim: Simulator, tmp_path: Path) -> None:
    sim.add_rule(_fixed("Look: <Image, a cat>"))
    node = _node(tmp_path, sim, models={"m": "scripted"},
                 node={"model": "m", "tools": ["broken"], "params": {"image_tool": "broken", "max_steps": 2}})
    result = await _run(node, _input())
    assert result.status == "failed" and "backend unavailable" in (result.reason or "")
    assert sim.requests == 2
    told = sim.recent[-1]["messages"][-1]["content"]
    assert "could not be made" in told and "<Image, a cat>" in told


async def test_native_tool_calls_with_one_failing_tool(sim: Simulator, tmp_path: Path) -> None:
    node = _node(tmp_path, sim, models={"m": "tool"},
                 node={"model": "m", "tools": ["paint", "broken"], "params": {"protocol": "native"}})
    result = await _run(node, _input())
    assert result.status == "alive" and result.assistant is not None
    calls = result.provenance[0].tool_calls
    assert [(c.tool, c.ok) for c in calls] == [("paint", True), ("broken", False)]
    assert "backend unavailable" in (calls[1].error or "")
    (image,) = [p for p in result.assistant.parts if isinstance(p, ImagePart)]
    assert image.marker == "[image 1]"
    text = result.assistant.text
    assert "[image 1]" not in text and "failed" in text
    assert len(result.provenance[0].calls) == 2


async def test_malformed_tool_json_is_repaired_once(sim: Simulator, tmp_path: Path) -> None:
    node = _node(tmp_path, sim, models={"m": "malformed"},
                 node={"model": "m", "tools": ["paint"], "params": {"protocol": "native"}})
    result = await _run(node, _input())
    assert result.status == "alive", result.reason
    prov = result.provenance[0]
    assert [c.ok for c in prov.tool_calls] == [False, True]
    assert any(n.startswith("repair round") for n in prov.notes)
    assert len(prov.calls) == 3 and result.assistant is not None and result.assistant.images


async def test_unrepairable_tool_json_fails_the_branch(sim: Simulator, tmp_path: Path) -> None:
    node = _node(tmp_path, sim, models={"m": "malformed-always"},
                 node={"model": "m", "tools": ["paint"], "params": {"protocol": "native"}})
    result = await _run(node, _input())
    assert result.status == "failed"
    assert "after one repair attempt" in (result.reason or "") and "not valid JSON" in (result.reason or "")
    assert sim.requests == 2


async def test_candidates_rotate_over_models_and_differ(sim: Simulator, tmp_path: Path) -> None:
    node = _node(tmp_path, sim, models={"a": "assistant-a", "b": "assistant-b"},
                 node={"models": ["a", "b"], "tools": ["paint"],
                       "params": {"image_tool": "paint", "temperatures": [0.2, 0.9]}})
    results = [await _run(node, _input("Tell me about owls", candidate=c)) for c in range(4)]
    assert [r.provenance[0].model for r in results] == ["a", "b", "a", "b"]
    assert sim.requests_by_model == {"assistant-a": 2, "assistant-b": 2}
    assert len({r.provenance[0].seed for r in results}) == 4


async def test_cached_rerun_makes_no_http_calls(sim: Simulator, tmp_path: Path) -> None:
    node = _node(tmp_path, sim, models={"m": {"role": "assistant", "cache": True}},
                 node={"model": "m", "tools": ["paint"], "params": {"image_tool": "paint"}})
    first = await _run(node, _input("Draw a windmill"))
    assert sim.requests == 1
    sim.reset_counters()
    again = await _run(node, _input("Draw a windmill"))
    assert sim.requests == 0
    assert again.assistant == first.assistant and again.provenance[0].calls[0].cached


async def test_model_failure_marks_node_failed(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(fault_rate=1.0, faults=["500"])
    node = _node(tmp_path, sim, models={"m": {"role": "assistant", "max_retries": 0}},
                 node={"model": "m", "tools": ["paint"], "params": {"image_tool": "paint"}})
    result = await _run(node, _input())
    assert result.status == "failed" and (result.reason or "").startswith("model call failed")
    assert result.assistant is None


class SeedPromptsOutput(NodeIO):
    prompts: list[Prompt]
    nodes: dict[str, TreeNode]
    turn: int


class SeedPrompts(NodeKind[Any, SeedPromptsOutput, Any]):
    """The seed prompt as the only prompt variant (stands in for prompt expansion here)."""

    kind = "seed_prompts"

    class Input(NodeIO):
        seed: Seed

    Output = SeedPromptsOutput

    async def run(self, inp: Any) -> SeedPromptsOutput:
        return SeedPromptsOutput(prompts=[Prompt(variant=0, message=Message.user(inp.seed.prompt))], nodes={}, turn=0)


async def test_graph_with_30_percent_faults_completes_every_turn(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(fault_rate=0.3, faults=["429", "500"])
    path = write_sim_graph(
        tmp_path / "graph.yaml", sim.base_url,
        models={"m": {"role": "assistant", "max_retries": 10, "max_concurrency": 4}},
        tools=TOOLS,
        nodes={
            "start": {"kind": "tests.nodes.test_assistant_turn:SeedPrompts"},
            "plan": {"kind": "turn_planner", "params": {"k": 3}},
            "answer": {"kind": "assistant_turn", "model": "m", "tools": ["paint"], "params": {"image_tool": "paint"}},
        },
        edges=[{"from": "START", "to": "start"}, {"from": "start", "to": "plan"},
               {"from": "plan", "fan_out": "tasks", "to": "answer"}, {"from": "answer", "to": "END"}],
    )
    spec, doc = load_graph(path)
    runtime = Runtime(spec, store=ObjectStore(tmp_path / "store"), spec_dir=tmp_path)
    runtime.model("m").backoff = type(runtime.model("m").backoff)(initial=0.01, maximum=0.05)
    graph = compile_graph(spec, doc, runtime).build()
    seeds = [Seed(id=f"s{i}", prompt=f"Explain topic number {i} with pictures") for i in range(4)]
    finals = await asyncio.gather(*(graph.ainvoke(DialogueState(seed=s)) for s in seeds))
    for final in finals:
        nodes = final["nodes"]
        assert sorted(nodes) == ["v0.0", "v0.1", "v0.2"]
        assert all(n.status == "alive" and n.assistant is not None for n in nodes.values())
        assert all(isinstance(p, TextPart | ImagePart) for n in nodes.values() for p in n.assistant.parts)
    assert sum(sim.faults_injected.values()) > 0
    assert sim.peak_concurrency <= 4
    # 12 model calls (3 candidates x 4 seeds), every attempt counted.
    made = [c for final in finals for n in final["nodes"].values() for p in n.provenance for c in p.calls]
    assert len(made) == 12 and sum(c.attempts for c in made) == sim.requests
    totals = runtime.model("m").ledger.totals
    assert totals.calls == sim.requests and totals.failed_calls == 0 and totals.cached_calls == 0
