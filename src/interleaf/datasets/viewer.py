"""``interleaf view``: a static, self-contained HTML report of a run.

``out/index.html`` carries its CSS, JavaScript and data inline (nothing is fetched from the
network); the images are copied to ``out/images/``. The page shows each seed's tree (pruned
branches greyed, the reason on hover), the selected turn's interleaved text and images with its
scores, chosen/rejected pairs side by side, and the run's totals.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from interleaf.datasets.image_files import ImageFiles
from interleaf.datasets.run_reader import RunReader, prepare_out_dir
from interleaf.state import DialogueState, ImagePart, Message, Score, TreeNode

ASSETS = "viewer_assets"


def _parts(message: Message | None, images: ImageFiles) -> list[dict[str, Any]] | None:
    if message is None:
        return None
    out: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ImagePart):
            out.append({"t": "image", "src": images.path(part.image), "caption": part.caption or ""})
        elif part.text:
            out.append({"t": "text", "text": part.text})
    return out


def _scores(scores: dict[str, Score]) -> list[dict[str, Any]]:
    return [{"dim": k, "value": s.value, "reason": s.reason} for k, s in sorted(scores.items())]


def _node(node: TreeNode, state: DialogueState, leaves: set[str], images: ImageFiles) -> dict[str, Any]:
    calls = [c for p in node.provenance for c in p.calls]
    models = [p.model for p in node.provenance if p.model and p.kind != "judge"]
    tagged = node.tags.get("model")
    variant = node.id.split(".", 1)[0].lstrip("v")
    return {
        "id": node.id, "parent": node.parent, "turn": node.turn, "candidate": node.candidate,
        "variant": int(variant) if variant.isdigit() else 0, "status": node.status, "reason": node.reason,
        "model": tagged if isinstance(tagged, str) else (models[0] if models else None),
        "user": _parts(node.user, images), "assistant": _parts(node.assistant, images),
        "follow_up": _parts(node.follow_up, images), "scores": _scores(node.scores),
        "dialogue_scores": _scores(state.dialogue_scores.get(node.id, {})), "leaf": node.id in leaves,
        "calls": len(calls), "tokens": sum((c.prompt_tokens or 0) + (c.completion_tokens or 0) for c in calls),
        "cost": _known_sum(c.cost for c in calls),
    }


def _seed(state: DialogueState, images: ImageFiles) -> dict[str, Any]:
    leaves = {n.id for n in state.leaves()} | set(state.dialogue_scores)
    return {
        "id": state.seed.id, "prompt": state.seed.prompt, "status": state.status,
        "variants": [{"variant": p.variant, "text": p.message.text} for p in state.prompts],
        "nodes": [_node(n, state, leaves, images) for n in sorted(state.nodes.values(), key=lambda n: n.id)],
        "pairs": [
            {"id": p.id, "level": p.level, "turn": p.turn, "response_1": p.response_1, "response_2": p.response_2,
             "overall": p.overall, "margin": p.margin,
             "preference": [{"dim": k, "pref": v, "reason": p.reasons.get(k, "")}
                            for k, v in sorted(p.preference.items())]}
            for p in sorted(state.pairs, key=lambda p: (p.level != "local", p.id))
        ],
    }


def _asset(name: str) -> str:
    return resources.files("interleaf.datasets").joinpath(ASSETS, name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    # Inside <script>, "</" could close the element and "<!--" open a comment; escape both.
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_run(run_dir: str, out: Path) -> Path:
    """Write the report for the run at ``run_dir`` into ``out``; returns ``out/index.html``."""
    reader = RunReader.open(run_dir)
    out = prepare_out_dir(Path(out))
    images = ImageFiles(reader, out)
    states = list(reader.dialogues())
    manifest = reader.manifest()
    seeds = [_seed(s, images) for s in states]
    counts = {status: sum(n.status == status for s in states for n in s.nodes.values())
              for status in ("alive", "pruned", "failed")}
    counts["pairs"] = sum(len(s.pairs) for s in states)
    values = [sc.value for s in states for n in s.nodes.values() for sc in n.scores.values() if sc.value is not None]
    values += [sc.value for s in states for d in s.dialogue_scores.values() for sc in d.values()
               if sc.value is not None]
    graph = manifest.get("graph_name") or "run"
    data = {
        "title": f"interleaf · {graph}",
        "subtitle": f"run {manifest.get('run_id', '?')} · {reader.store.uri}",
        "totals": reader.totals(states).as_dict(), "counts": counts, "score_max": max(values, default=3),
        "seeds": seeds,
    }
    page = (_asset("index.html")
            .replace("/*__CSS__*/", _asset("viewer.css"))
            .replace("/*__JS__*/", _asset("viewer.js"))
            .replace("__TITLE__", html.escape(str(data["title"])))
            .replace("__DATA__", _script_json(data)))
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _known_sum(values: Iterable[float | None]) -> float | None:
    """Sum of the known values; None when none is known (an unpriced model is not free)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None
