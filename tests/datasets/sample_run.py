"""A small but realistic finished run, written in the run layout by hand.

Seed ``trip`` has two prompt variants, three candidates per variant at turn 0, pruned and failed
nodes with reasons, a second turn, images in questions, answers and follow-ups, the nine InterMT
scores, and local and global pairs (one a tie). Seed ``doc/b 2`` (an id that needs escaping) is
a one-turn tree.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from interleaf.datasets.intermt import GLOBAL_DIMENSIONS, LOCAL_DIMENSIONS
from interleaf.run.records import DialogueStatus
from interleaf.run.totals import RunTotals
from interleaf.state import (
    DialogueState,
    ImagePart,
    ImageRef,
    Message,
    ModelCall,
    PreferencePair,
    Prompt,
    Provenance,
    Score,
    Seed,
    TextPart,
    TreeNode,
)
from interleaf.storage.store import ObjectStore, safe_segment

COLORS = ["#d94f4f", "#4f8fd9", "#52b36b", "#e0b23c", "#8a5cd1", "#3cc1c9", "#c9663c", "#777777"]


def png(index: int, size: int = 48) -> bytes:
    """A small distinct PNG: a coloured field with a shape."""
    img = Image.new("RGB", (size, size), COLORS[index % len(COLORS)])
    draw = ImageDraw.Draw(img)
    inset = 6 + index % 5
    draw.ellipse([inset, inset, size - inset, size - inset], fill="white")
    draw.rectangle([size // 3, size // 3, size // 3 + 8 + index, size // 3 + 8], fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class RunBuilder:
    def __init__(self, root: Path):
        self.store = ObjectStore(root)
        self.images = 0

    def image(self) -> ImageRef:
        data = png(self.images)
        self.images += 1
        key, sha = self.store.put_blob(data, "png")
        return ImageRef(uri=self.store.url(key), sha256=sha, width=48, height=48)

    def write(self, state: DialogueState, seconds: float) -> None:
        seg = safe_segment(state.seed.id)
        self.store.put_json(f"dialogues/{seg}.json", state.model_dump(mode="json"))
        calls = [c for n in state.nodes.values() for p in n.provenance for c in p.calls]
        totals = RunTotals.of_calls(calls).merge(RunTotals(seeds=1, done=1, seconds=seconds))
        DialogueStatus(seed_id=state.seed.id, status="done", run_id="run-1",
                       complete=len(state.tree().complete_ends()), totals=totals).save(self.store)


def answer(text_before: str, images: Sequence[tuple[ImageRef, str | None, str | None]],
           text_after: str = "") -> Message:
    """An assistant message: text, then each (image, marker, caption), then more text."""
    parts: list[TextPart | ImagePart] = [TextPart(text=text_before)]
    for n, (ref, marker, caption) in enumerate(images):
        parts.append(ImagePart(image=ref, marker=marker, caption=caption))
        parts.append(TextPart(text=f" (figure {n + 1}) "))
    if text_after:
        parts.append(TextPart(text=text_after))
    return Message(role="assistant", parts=parts)


def scores(base: float, dims: tuple[str, ...]) -> dict[str, Score]:
    return {d: Score(value=float(max(0, min(3, base - (i % 2)))), reason=f"{d} looks {base}", raw=f"[[{d}]]")
            for i, d in enumerate(dims)}


def provenance(node_id: str, model: str) -> list[Provenance]:
    return [Provenance(node="answer", kind="assistant_turn", model=model, seconds=1.5, calls=[
        ModelCall(model=model, provider_model=f"openai/{model}", prompt_tokens=120, completion_tokens=80,
                  cost=0.002, latency_s=1.2),
    ]), Provenance(node="judge", kind="judge", model="judge-1", seconds=0.5, calls=[
        ModelCall(model="judge-1", provider_model="openai/judge-1", prompt_tokens=300, completion_tokens=40,
                  cost=0.001, latency_s=0.4),
    ])]


def build_trip(b: RunBuilder) -> DialogueState:
    seed_image = b.image()
    seed = Seed(id="trip", prompt="Plan a two-day bike trip along the coast.", images=[seed_image.uri])
    variants = [
        Message.user("Plan a two-day bike trip along the coast, with a route sketch.", [seed_image]),
        Message.user("I want to cycle the coast for two days. What route would you draw?", [seed_image]),
    ]
    nodes: dict[str, TreeNode] = {}

    def add(node_id: str, user: Message, assistant: Message | None, status: str = "alive",
            reason: str | None = None, base: float = 2, follow_up: Message | None = None) -> TreeNode:
        parts = node_id.split(".")
        node = TreeNode(
            id=node_id, parent=".".join(parts[:-1]) if len(parts) > 2 else None, turn=len(parts) - 2,
            candidate=int(parts[-1]), user=user, assistant=assistant, status=status,  # type: ignore[arg-type]
            reason=reason, scores=scores(base, LOCAL_DIMENSIONS) if assistant is not None else {},
            follow_up=follow_up, provenance=provenance(node_id, "model-a" if parts[-1] != "1" else "model-b"),
            tags={"model": "model-a" if parts[-1] != "1" else "model-b"},
        )
        nodes[node_id] = node
        return node

    fu_map = Message.user("Nice. Can you mark the campsite on the map?")
    fu_photo = Message.user("Here is a photo of my bike; will it cope with gravel?", [b.image()])
    add("v0.0", variants[0], answer("Day 1 rides north along the cliffs. ",
                                     [(b.image(), "<Image, route map day 1>", "route map day 1")],
                                     "Day 2 returns inland."), base=3, follow_up=fu_map)
    add("v0.1", variants[0], answer("Start at the harbour and keep the sea on your left. ",
                                     [(b.image(), None, "a harbour at dawn")]), base=2, follow_up=fu_photo)
    add("v0.2", variants[0], answer("Bikes are fun.", []), status="pruned",
        reason="text_quality 0 < threshold 1", base=0)
    add("v1.0", variants[1], answer("I'd draw a loop: <Image: coastal loop> then back. ",
                                     [(b.image(), "<Image: coastal loop>", "coastal loop")]), base=2,
        follow_up=fu_map)
    add("v1.1", variants[1], None, status="failed", reason="tool generate_image failed: pipeline OOM")
    add("v1.2", variants[1], answer("Take the train instead.", []), status="pruned",
        reason="context_coherence 0 < threshold 1", base=0)
    add("v0.0.0", fu_map, answer("The campsite sits above the bay. ",
                                  [(b.image(), "<Image, campsite marked>", "campsite marked")]), base=3)
    add("v0.0.1", fu_map, answer("Camp anywhere.", []), base=1)
    add("v0.0.2", fu_map, answer("I cannot see the map.", []), status="pruned",
        reason="local_image_text_consistency 0 < threshold 1", base=0)
    add("v0.1.0", fu_photo, answer("Yes: those tyres handle gravel. ",
                                    [(b.image(), None, "the tyres close up"), (b.image(), "", None)]), base=2)
    add("v1.0.0", fu_map, answer("Here: ", [(b.image(), "<Image, loop with tent>", "loop with tent")]), base=2)
    add("v1.0.1", fu_map, answer("Near the lighthouse.", []), base=2)
    state = DialogueState(
        seed=seed, prompts=[Prompt(variant=i, message=m) for i, m in enumerate(variants)], nodes=nodes,
        turn=1, status="done",
    )
    for leaf, base in (("v0.0.0", 3), ("v0.0.1", 1), ("v0.1.0", 2), ("v1.0.0", 2), ("v1.0.1", 2)):
        state.dialogue_scores[leaf] = scores(base, GLOBAL_DIMENSIONS)

    def pair(level: str, a: str, b_: str, overall: int, turn: int | None = None) -> PreferencePair:
        dims = LOCAL_DIMENSIONS if level == "local" else GLOBAL_DIMENSIONS
        return PreferencePair(
            id=f"trip/{level}/{a}~{b_}", level=level, turn=turn,  # type: ignore[arg-type]
            history=nodes[a].parent if level == "local" else None, response_1=a, response_2=b_,
            preference={d: overall for d in dims}, overall=overall, margin=1.5 if overall else 0.0,
            reasons={d: f"{d}: side {overall or 'neither'} is better" for d in dims},
        )

    state.pairs = [
        pair("local", "v0.0", "v0.1", 1, 0),
        pair("local", "v0.0.0", "v0.0.1", 1, 1),
        pair("local", "v1.0.0", "v1.0.1", 0, 1),
        pair("global", "v0.0.0", "v0.1.0", 1),
        pair("global", "v0.0.1", "v0.0.0", 2),
        pair("global", "v0.0.0", "v1.0.0", 1),
    ]
    return state


def build_doc(b: RunBuilder) -> DialogueState:
    question = Message.user("Draw a diagram of a water cycle.")
    seed = Seed(id="doc/b 2", prompt="Draw a diagram of a water cycle.")
    nodes = {}
    for cand, text in enumerate(["Evaporation rises, clouds form, rain falls. ", "Water goes up and down."]):
        images = [(b.image(), "<Image, water cycle diagram>", "water cycle diagram")] if cand == 0 else []
        nodes[f"v0.{cand}"] = TreeNode(
            id=f"v0.{cand}", turn=0, candidate=cand, user=question, assistant=answer(text, images),
            scores=scores(3 - cand, LOCAL_DIMENSIONS), provenance=provenance(f"v0.{cand}", "model-a"),
        )
    state = DialogueState(seed=seed, prompts=[Prompt(variant=0, message=question)], nodes=nodes, status="done")
    state.dialogue_scores = {"v0.0": scores(3, GLOBAL_DIMENSIONS), "v0.1": scores(1, GLOBAL_DIMENSIONS)}
    state.pairs = [PreferencePair(id="doc/b 2/local/v0.0~v0.1", level="local", turn=0, response_1="v0.0",
                                  response_2="v0.1", preference=dict.fromkeys(LOCAL_DIMENSIONS, 1), overall=1,
                                  margin=4.0, reasons={})]
    return state


def write_sample_run(root: Path) -> list[DialogueState]:
    """Write the sample run under ``root``; returns its dialogue states."""
    b = RunBuilder(root)
    states = [build_trip(b), build_doc(b)]
    for n, state in enumerate(states):
        b.write(state, seconds=12.5 + n)
    b.store.put_json("manifest.json", {
        "run_id": "run-1", "graph_name": "intermt", "graph_hash": "ab" * 32, "package_version": "0.1.0",
        "params": {"k": 3}, "created_at": 1.0, "updated_at": 2.0, "counts": {"done": 2, "failed": 0},
        "invocations": [],
    })
    b.store.put_bytes("graph.yaml", b"name: intermt\n# a graph\n")
    return states
