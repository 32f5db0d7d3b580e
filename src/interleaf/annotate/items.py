"""Review items - tree nodes, dialogues, candidate pairs - and the Label Studio tasks that show them.

An item is found again on ``pull`` by what its task records under ``data["interleaf"]``: the
run id, seed, kind, item id, the tree nodes it scores (``sides``) and a fingerprint of exactly
what the annotator saw (texts and image hashes). A task whose item is gone from the run, or
whose content changed since the push, is therefore never pulled onto the wrong thing.

Tasks show the conversation as HTML with every image inline, uploaded into the Label Studio
project (``/data/upload/...``, which the annotator's logged-in browser loads from Label Studio
itself): no path or URI of the machine that pushed ends up in Label Studio. (Label Studio's
HTML sanitizer drops ``data:`` URIs, so images cannot travel inside the task.) Tasks never
show the judge's scores, the node's status or pruning reason, so people score blind.

Example:
    >>> from interleaf.state import DialogueState, Message, Seed, TreeNode
    >>> node = TreeNode(id="v0.0", user=Message.user("hi"), assistant=Message(role="assistant"))
    >>> state = DialogueState(seed=Seed(id="s1", prompt="hi"), nodes={"v0.0": node})
    >>> [(i.item, i.sides) for i in review_items([state], "turns")]
    [('v0.0', ('v0.0',))]
"""

from __future__ import annotations

import hashlib
import html
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from interleaf.annotate.config import ItemKind, is_pair
from interleaf.state import DialogueState, ImagePart, ImageRef, Message, TextPart, TreeNode

Only = Literal["pruned", "alive", "all"]

#: The key under a task's ``data`` where interleaf keeps what the task is about.
META = "interleaf"


@dataclass(frozen=True)
class ReviewItem:
    """One thing people score: a node (``turns``), a dialogue end (``dialogues``) or two of them (pairs)."""

    kind: ItemKind
    seed_id: str
    item: str
    sides: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.seed_id}/{self.item}"


def _content(messages: Iterable[Message]) -> list[Any]:
    """What an annotator sees of messages: texts and image hashes (never URIs, which change when a run moves)."""
    out: list[Any] = []
    for m in messages:
        parts: list[Any] = []
        for p in m.parts:
            if isinstance(p, TextPart):
                parts.append(["t", p.text])
            else:
                parts.append(["i", p.image.sha256, p.caption or ""])
        out.append([m.role, parts])
    return out


def _candidate_messages(state: DialogueState, node_id: str) -> list[Message]:
    node = state.nodes[node_id]
    msgs = [*state.tree().history(node.parent), node.user]
    if node.assistant is not None:
        msgs.append(node.assistant)
    return msgs


def item_messages(state: DialogueState, item: ReviewItem) -> list[list[Message]]:
    """The messages each side of ``item`` shows (one list for single items, two for pairs)."""
    if item.kind in ("turns", "local-pairs"):
        return [_candidate_messages(state, s) for s in item.sides]
    return [state.tree().history(s) for s in item.sides]


def fingerprint(state: DialogueState, item: ReviewItem) -> str:
    """A hash of what the annotator of ``item`` sees (raises ``KeyError`` when a side is gone)."""
    blob = json.dumps([item.kind, list(item.sides), [_content(m) for m in item_messages(state, item)]],
                      ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _status_ok(statuses: Sequence[str], only: Only) -> bool:
    if only == "all":
        return True
    if only == "pruned":
        return any(s == "pruned" for s in statuses)
    return all(s == "alive" for s in statuses)


def review_items(states: Iterable[DialogueState], kind: ItemKind, only: Only = "all") -> list[ReviewItem]:
    """Every item of ``kind`` in the run's dialogues, filtered by the status of its nodes, sorted."""
    out: list[ReviewItem] = []
    for state in states:
        nodes = state.nodes
        if kind == "turns":
            for n in sorted(nodes.values(), key=lambda n: n.id):
                if n.assistant is not None and _status_ok([n.status], only):
                    out.append(ReviewItem(kind, state.seed.id, n.id, (n.id,)))
        elif kind == "dialogues":
            for end in state.dialogue_ends():
                if nodes[end].assistant is not None and _status_ok([nodes[end].status], only):
                    out.append(ReviewItem(kind, state.seed.id, end, (end,)))
        else:
            level = "local" if kind == "local-pairs" else "global"
            seen: set[tuple[str, str]] = set()
            for p in state.pairs:
                sides = (p.response_1, p.response_2)
                if p.level != level or sides in seen or not all(s in nodes for s in sides):
                    continue
                seen.add(sides)
                if _status_ok([nodes[s].status for s in sides], only):
                    out.append(ReviewItem(kind, state.seed.id, f"{level}/{sides[0]}~{sides[1]}", sides))
    return sorted(out, key=lambda i: (i.seed_id, i.item))


def sample_items(items: Sequence[ReviewItem], n: int | None, salt: str) -> list[ReviewItem]:
    """``n`` items drawn with a seed made from ``salt`` (the same draw on every push), in item order."""
    if n is None or n >= len(items):
        return list(items)
    rng = random.Random(hashlib.sha256(salt.encode("utf-8")).hexdigest())
    return sorted(rng.sample(list(items), n), key=lambda i: (i.seed_id, i.item))


# -- rendering ---------------------------------------------------------------------------------

_BOX = "border-radius: 6px; padding: 0.6em 0.8em; margin: 0.5em 0;"
_STYLE = {
    "user": f"{_BOX} background: #eef3fb; border: 1px solid #c9d7ee;",
    "assistant": f"{_BOX} background: #f6f6f6; border: 1px solid #dddddd;",
    "candidate": f"{_BOX} background: #fffaf0; border: 2px solid #e0a23c;",
}


def item_images(state: DialogueState, item: ReviewItem) -> list[ImageRef]:
    """Every image ``item``'s task shows, once each, in order."""
    seen: dict[str, ImageRef] = {}
    for msgs in item_messages(state, item):
        for m in msgs:
            for ref in m.images:
                seen.setdefault(ref.sha256, ref)
    return list(seen.values())


def upload_name(ref: ImageRef) -> str:
    """The file name an image is uploaded under: its content hash (so re-pushes can tell it is there)."""
    ext = {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(ref.mime, "png")
    return f"{ref.sha256}.{ext}"


def _message_html(m: Message, label: str, style: str, image_src: Callable[[ImageRef], str]) -> str:
    chunks = [f'<div class="il-msg il-{m.role}" style="{style}">',
              f'<div style="font-weight: 600; margin-bottom: 0.3em">{html.escape(label)}</div>']
    for p in m.parts:
        if isinstance(p, TextPart):
            if p.text.strip():
                chunks.append(f'<div class="il-text" style="white-space: pre-wrap">{html.escape(p.text)}</div>')
        elif isinstance(p, ImagePart):
            alt = p.caption or p.marker or f"image {p.image.sha256[:12]}"
            chunks.append(
                '<figure class="il-figure" style="margin: 0.4em 0">'
                f'<img class="il-image" src="{image_src(p.image)}" alt="{html.escape(alt, quote=True)}" '
                f'data-sha256="{p.image.sha256}" width="{p.image.width}" height="{p.image.height}" '
                'style="max-width: 100%; height: auto; max-height: 420px; border: 1px solid #ccc"/>'
                + (f'<figcaption style="font-size: 0.85em; color: #555">{html.escape(p.caption)}</figcaption>'
                   if p.caption else "")
                + "</figure>"
            )
    chunks.append("</div>")
    return "".join(chunks)


def conversation_html(messages: Sequence[Message], image_src: Callable[[ImageRef], str], *,
                      highlight_last: bool = False) -> str:
    """Messages as HTML (turn numbers on user messages); ``highlight_last`` marks the candidate answer."""
    out = ['<div class="il-dialogue" style="font-family: sans-serif; line-height: 1.45; max-width: 60em">']
    turn = 0
    for i, m in enumerate(messages):
        last = i == len(messages) - 1
        if m.role == "user":
            turn += 1
            label, style = f"User - turn {turn}", _STYLE["user"]
        elif highlight_last and last:
            label, style = "Candidate answer (score this)", _STYLE["candidate"]
        else:
            label, style = "Assistant", _STYLE["assistant"]
        out.append(_message_html(m, label, style, image_src))
    out.append("</div>")
    return "".join(out)


def task_data(
    state: DialogueState, item: ReviewItem, run_id: str, image_src: Callable[[ImageRef], str]
) -> dict[str, Any]:
    """The ``data`` of the Label Studio task for ``item``: HTML fields the interface shows, plus :data:`META`."""
    sides = item_messages(state, item)
    meta = {"run": run_id, "seed": item.seed_id, "kind": item.kind, "item": item.item,
            "sides": list(item.sides), "fingerprint": fingerprint(state, item),
            "images": {ref.sha256: image_src(ref) for ref in item_images(state, item)}}
    if not is_pair(item.kind):
        what = "answer" if item.kind == "turns" else "dialogue"
        return {
            "title": f"Seed {item.seed_id} - {what} {item.item}",
            "dialogue": conversation_html(sides[0], image_src, highlight_last=item.kind == "turns"),
            META: meta,
        }
    if item.kind == "local-pairs":
        node: TreeNode = state.nodes[item.sides[0]]
        context_msgs = [*state.tree().history(node.parent), node.user]
        responses = [[m[-1]] if m and m[-1].role == "assistant" else [] for m in sides]
        context = conversation_html(context_msgs, image_src)
        titles = "two answers to the same conversation"
    else:
        responses = sides
        context = ('<div class="il-dialogue" style="font-family: sans-serif">'
                   f"Two complete dialogues that start from seed {html.escape(item.seed_id)}.</div>")
        titles = "two complete dialogues"
    columns = "".join(
        f'<div class="il-side" style="flex: 1; min-width: 0"><div style="font-size: 1.15em; font-weight: 700">'
        f"Response {n}</div>{conversation_html(r, image_src)}</div>"
        for n, r in enumerate(responses, start=1)
    )
    return {
        "title": f"Seed {item.seed_id} - {titles} ({item.item})",
        "pair": f'{context}<div class="il-pair" style="display: flex; gap: 1.5em; align-items: flex-start">'
                f"{columns}</div>",
        META: meta,
    }
