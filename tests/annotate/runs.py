"""Small runs for the annotation tests.

- :func:`make_sim_run`: the ``intermt-lite`` graph (k=2, keep 1, two turns) run through the real
  engine on the offline simulator, over two seeds that carry images - a normal run with a
  manifest, statuses, the graph source, judge scores, pruned nodes and pairs.
- :func:`copy_run`: a copy of a run under a new run id, so each test gets its own Label Studio
  projects on the shared server.
- :func:`write_image_run`: a hand-made one-seed run whose answers interleave text and images
  (for the browser test), with the built-in ``intermt`` graph as its graph source.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path

from PIL import Image, ImageDraw

from interleaf import open_run
from interleaf.graphs.loading import builtin_graphs
from interleaf.graphs.rubric import load_rubric
from interleaf.nodes.pairs import PairRule, PreferencePairsParams
from interleaf.run import layout
from interleaf.run.records import DialogueStatus, RunManifest
from interleaf.state import DialogueState, ImagePart, ImageRef, Message, Prompt, Score, Seed, TextPart, TreeNode
from interleaf.storage.store import ObjectStore
from tests.faults.lite_graph import lite_graph_doc
from tests.fixtures.sim import SIM_API_KEY_REF

DATA = Path(__file__).resolve().parents[2] / "src" / "interleaf" / "testing" / "data"


async def make_sim_run(root: Path, base_url: str) -> Path:
    """Run a two-turn ``intermt-lite`` over two seeds with images on the simulator; returns the run folder."""
    root.mkdir(parents=True, exist_ok=True)
    doc = lite_graph_doc(base_url, api_key=SIM_API_KEY_REF, variants=1, k=2, max_turns=2)
    doc["name"] = "intermt-lite-review"
    graph = root / "graph.json"
    graph.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    seeds = [
        Seed(id="house", prompt="Which colours would suit this house?", images=[str(DATA / "house.png")]),
        Seed(id="flower", prompt="What flower is this, and how do I grow it?", images=[str(DATA / "flower.png")]),
    ]
    out = root / "run"
    run = open_run(graph, out)
    try:
        totals = await run.arun_seeds(seeds)
    finally:
        await run.aclose()
        run.release()
    assert totals.done == 2, totals
    return out


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of the run at ``src`` with a fresh run id (images resolve by content hash in the copy)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / layout.MANIFEST).read_text())
    manifest["run_id"] = f"test-{uuid.uuid4().hex[:12]}"
    (dst / layout.MANIFEST).write_text(json.dumps(manifest))
    return dst


def _png(color: str, size: int = 64) -> bytes:
    img = Image.new("RGB", (size, size), color)
    ImageDraw.Draw(img).ellipse([10, 10, size - 10, size - 10], fill="white")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_image_run(root: Path) -> tuple[Path, DialogueState]:
    """One seed, two candidate answers with two and one inline images, scored; returns (run folder, state)."""
    store = ObjectStore(root)

    def image(color: str) -> ImageRef:
        key, sha = store.put_blob(_png(color), "png")
        return ImageRef(uri=store.url(key), sha256=sha, width=64, height=64)

    question = Message.user("Sketch a garden with a pond, then show it in winter.", [image("#3cc1c9")])
    answers = [
        Message(role="assistant", parts=[
            TextPart(text="Here is the garden with its round pond: "),
            ImagePart(image=image("#52b36b"), caption="garden with a pond", marker="<Image, garden with a pond>"),
            TextPart(text=" and the same garden under snow: "),
            ImagePart(image=image("#dddddd"), caption="the garden in winter"),
        ]),
        Message(role="assistant", parts=[
            TextPart(text="A pond garden <in winter> & summer: "),
            ImagePart(image=image("#d94f4f"), caption=None),
        ]),
    ]
    scores = {"local_image_text_consistency": 2, "visual_perceptual_quality": 2, "text_quality": 3,
              "context_coherence": 2}
    nodes = {f"v0.{i}": TreeNode(id=f"v0.{i}", candidate=i, user=question, assistant=a,
                                 scores={k: Score(value=v - i, reason="judge") for k, v in scores.items()})
             for i, a in enumerate(answers)}
    state = DialogueState(seed=Seed(id="garden", prompt=question.text), prompts=[Prompt(variant=0, message=question)],
                          nodes=nodes, status="done")
    # The judge's pair, made by the graph's own rule (v0.0 scores one more on every dimension).
    rule = PairRule.from_params(PreferencePairsParams(), load_rubric("intermt-local"), load_rubric("intermt-global"))
    state.pairs = rule.pairs(state.seed, state.nodes, state.dialogue_scores)
    store.put_json(layout.dialogue_key("garden"), state.model_dump(mode="json"))
    DialogueStatus(seed_id="garden", status="done", complete=2).save(store)
    RunManifest(run_id=f"test-{uuid.uuid4().hex[:12]}", graph_name="intermt", graph_hash="").save(store)
    store.put_bytes(layout.GRAPH, builtin_graphs()["intermt"].read_bytes())
    return root, state
