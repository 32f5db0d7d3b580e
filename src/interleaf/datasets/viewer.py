"""``interleaf view``: a static, self-contained HTML report of a run.

``out/index.html`` carries its CSS, JavaScript and data inline (nothing is fetched from the
network); the images are copied to ``out/images/``. The page shows each seed's tree (pruned
branches greyed, the reason on hover), the selected turn's interleaved text and images with its
scores (beside people's scores of the same turn or dialogue, when the run holds any: imported
labels or annotations), chosen/rejected pairs side by side (a people's pair and the judge's pair on
the same answers one above the other, each marked with who decided it), and the run's totals.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from interleaf.datasets.image_files import ImageFiles
from interleaf.datasets.outputs import prepare_out_dir, write_text
from interleaf.run.reader import RunReader
from interleaf.run.records import DialogueStatus
from interleaf.run.totals import RunTotals
from interleaf.state import DialogueState, HumanScore, ImagePart, Message, Score, TreeNode

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


def _human(scores: list[HumanScore]) -> list[dict[str, Any]]:
    """People's scores, shown beside the judge's (one entry per person and dimension)."""
    return [{"dim": s.dimension, "value": s.value, "reason": s.reason, "annotator": s.annotator, "origin": s.origin}
            for s in sorted(scores, key=lambda s: (s.dimension, s.annotator, s.origin))]


def _node(node: TreeNode, state: DialogueState, leaves: set[str], images: ImageFiles) -> dict[str, Any]:
    # The one counting rule (requests sent; cache hits apart), as everywhere else.
    calls = RunTotals.of_calls(c for p in node.provenance for c in p.calls)
    models = [p.model for p in node.provenance if p.model and p.kind != "judge"]
    tagged = node.tags.get("model")
    variant = node.id.split(".", 1)[0].lstrip("v")
    return {
        "id": node.id, "parent": node.parent, "turn": node.turn, "candidate": node.candidate,
        "variant": int(variant) if variant.isdigit() else 0, "status": node.status, "reason": node.reason,
        "model": tagged if isinstance(tagged, str) else (models[0] if models else None),
        "user": _parts(node.user, images), "assistant": _parts(node.assistant, images),
        "follow_up": _parts(node.follow_up, images), "scores": _scores(node.scores),
        "human_scores": _human(node.human_scores),
        "dialogue_scores": _scores(state.dialogue_scores.get(node.id, {})),
        "dialogue_human_scores": _human(state.human_dialogue_scores.get(node.id, [])), "leaf": node.id in leaves,
        "calls": calls.calls, "cached_calls": calls.cached_calls,
        "tokens": calls.prompt_tokens + calls.completion_tokens, "cost": calls.cost,
    }


def _seed(state: DialogueState, images: ImageFiles) -> dict[str, Any]:
    leaves = {n.id for n in state.leaves()} | set(state.dialogue_scores) | set(state.human_dialogue_scores)
    return {
        "id": state.seed.id, "prompt": state.seed.prompt, "status": state.status,
        "variants": [{"variant": p.variant, "text": p.message.text} for p in state.prompts],
        "nodes": [_node(n, state, leaves, images) for n in sorted(state.nodes.values(), key=lambda n: n.id)],
        "pairs": [
            {"id": p.id, "level": p.level, "turn": p.turn, "response_1": p.response_1, "response_2": p.response_2,
             "overall": p.overall, "margin": p.margin, "decided_by": p.decided_by,
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


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def explain_outcome(statuses: dict[str, DialogueStatus], states: list[DialogueState],
                    pending: int = 0) -> tuple[str | None, list[tuple[str, str]]]:
    """Why the report shows nothing (or not everything): a headline and the failed seeds' errors.

    The headline is None when every seed finished with a complete dialogue.

    >>> failed = DialogueStatus(seed_id="a", status="failed", reason="RuntimeError", error="RuntimeError: boom")
    >>> explain_outcome({"a": failed}, [])
    ('no dialogue finished: 1 seed failed (reasons: RuntimeError x1)', [('a', 'RuntimeError: boom')])
    >>> explain_outcome({}, [])[0]
    'no dialogue: this run has no seeds (an empty seeds file, or an import with no record)'
    """
    failed = sorted((s for s in statuses.values() if s.status == "failed"), key=lambda s: s.seed_id)
    reasons = Counter(s.reason or "failed" for s in failed)
    why = ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items()))
    errors = [(s.seed_id, s.error or s.reason or "failed (no error recorded)") for s in failed]
    complete = sum(len(s.tree().complete_ends()) for s in states)
    waiting = f"{_seeds(pending)} pending (run the same command again to finish them)" if pending else ""
    if complete == 0:
        if not failed and not waiting:
            if states:
                return "no complete dialogue: no branch reached the last turn alive", errors
            return "no dialogue: this run has no seeds (an empty seeds file, or an import with no record)", errors
        parts = [f"{_seeds(len(failed))} failed (reasons: {why})" if failed else "", waiting]
        return "no dialogue finished: " + "; ".join(p for p in parts if p), errors
    if failed or waiting:
        parts = [f"{_seeds(len(failed))} failed (reasons: {why})" if failed else "", waiting]
        return "; ".join(p for p in parts if p) + "; the finished dialogues are shown below", errors
    return None, errors


def _notice_html(headline: str | None, errors: list[tuple[str, str]], limit: int = 20) -> str:
    if headline is None:
        return ""
    items = "".join(f"<li><code>{html.escape(seed)}</code>: {html.escape(error)}</li>"
                    for seed, error in errors[:limit])
    more = f"<li>and {len(errors) - limit} more</li>" if len(errors) > limit else ""
    return f"<p>{html.escape(headline)}</p>" + (f"<ul>{items}{more}</ul>" if items else "")


def render_run(run_dir: str, out: Path) -> Path:
    """Write the report for the run at ``run_dir`` into ``out``; returns ``out/index.html``.

    A run with nothing to show (no seeds, every seed failed, an import of no record) still
    gets a page, which says why it is empty and lists the failed seeds' errors. Raises
    :class:`~interleaf.datasets.outputs.OutputError` when ``out`` cannot be written.
    """
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
    values += [h.value for s in states for n in s.nodes.values() for h in n.human_scores if h.value is not None]
    totals = reader.totals(states)
    headline, errors = explain_outcome(reader.statuses(), states, totals.pending)
    graph = (manifest.graph_name if manifest is not None else None) or "run"
    run_id = manifest.run_id if manifest is not None else "?"
    data = {
        "title": f"interleaf · {graph}",
        "subtitle": f"run {run_id} · {reader.store.uri}",
        "totals": totals.to_dict(), "counts": counts, "score_max": max(values, default=3),
        "seeds": seeds, "empty_reason": headline if not seeds else None, "notice": headline,
    }
    page = (_asset("index.html")
            .replace("/*__CSS__*/", _asset("viewer.css"))
            .replace("/*__JS__*/", _asset("viewer.js"))
            .replace("__TITLE__", html.escape(str(data["title"])))
            .replace("__NOTICE__", _notice_html(headline, errors))
            .replace("__DATA__", _script_json(data)))
    index = out / "index.html"
    write_text(index, page)
    return index
