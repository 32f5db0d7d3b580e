"""``interleaf demo``: the built-in ``intermt`` graph, end to end, on one offline machine.

The graph runs unchanged through the normal run engine; only its endpoints are
local: every model points at the scripted simulator on 127.0.0.1, and the image
tools at tiny random-weight diffusers pipelines built in code (so the images are
noise-like, but every byte goes through the real diffusers code path). The image
size and step count are lowered in a copy of the graph so a CPU finishes in minutes.

The outcome's summary says so (:data:`DEMO_NOTE`): the texts are scripted templates, some
with planted defects, and the images are noise from random-weight pipelines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from interleaf.graphs.loading import resolve_graph_path
from interleaf.launch import RunOptions, run_from_cli
from interleaf.runner import RunOutcome
from interleaf.testing.simulator import Simulator
from interleaf.testing.tiny_pipelines import ensure_tiny_pipeline

DEMO_SEEDS = Path(__file__).parent / "data" / "demo_seeds.jsonl"
#: The line the demo adds to its summary, so nobody mistakes its output for a model's.
DEMO_NOTE = (
    "demo data: the texts are scripted by the offline simulator (templates, some with planted defects "
    "that its judge scores), and the images come from random-weight pipelines (noise)"
)

#: Simulator roles are chosen by model name (see ``interleaf.testing.simulator``).
_DEMO_MODELS = {
    "INTERLEAF_EXPANDER_MODEL": "openai/sim-expand",
    "INTERLEAF_ASSISTANT_MODEL": "openai/sim-assistant",
    "INTERLEAF_JUDGE_MODEL": "openai/sim-judge",
    "INTERLEAF_USER_SIM_MODEL": "openai/sim-user",
}


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def demo_graph(graph: str, dest: Path, *, image_size: int, steps: int) -> Path:
    """Copy a graph YAML to ``dest`` with its image tools shrunk for a CPU."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    data: Any = yaml.load(resolve_graph_path(graph).read_text(encoding="utf-8"))
    for tool in (data.get("tools") or {}).values():
        if tool.get("backend") == "diffusers":
            tool["size"] = image_size
            tool["steps"] = steps
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    return dest


def run_demo(
    out: Path,
    *,
    graph: str = "intermt",
    seeds: Path | None = None,
    image_size: int = 64,
    steps: int = 2,
    progress: bool = True,
) -> RunOutcome:
    """Run ``graph`` over the bundled demo seeds against local stand-ins; rerun resumes."""
    out = Path(out)
    models_dir = out / "demo-models"
    t2i = ensure_tiny_pipeline(models_dir, kind="text2img")
    pix2pix = ensure_tiny_pipeline(models_dir, kind="instruct_pix2pix")
    graph_path = demo_graph(graph, out / "demo-graph" / f"{Path(graph).stem}.yaml", image_size=image_size, steps=steps)

    with Simulator(seed=0) as sim:
        env = {
            **_DEMO_MODELS,
            "INTERLEAF_API_BASE": sim.base_url,
            # A placeholder key: the demo never talks to a real provider.
            "OPENAI_API_KEY": "sk-interleaf-demo",
            "INTERLEAF_T2I_MODEL": str(t2i),
            "INTERLEAF_EDIT_MODEL": str(pix2pix),
        }
        with _environ(env):
            outcome = run_from_cli(
                RunOptions(graph=str(graph_path), seeds=seeds or DEMO_SEEDS, out=out, progress=progress)
            )
    outcome.notes.append(DEMO_NOTE)
    return outcome
