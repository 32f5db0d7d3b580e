"""align-anything's text-image-to-text-image preference rows.

``train.json`` is a JSON list of ``{input_text, input_image, better_text, better_img, worse_text,
worse_img}`` rows (plus ``id``, ``level``, ``seed_id`` and the per-dimension ``preference``, which
its loaders ignore). The history is flattened into ``input_text`` as ``USER: ...`` /
``ASSISTANT: ...`` lines ending with the question; ``<image>`` stands where each image stood, and
the ``*_image``/``*_img`` lists hold the image files (``images/<uuid>.png``, relative to the
export folder) in placeholder order. Ties (overall preference 0) give no row.

A global pair compares two whole dialogues: the input is the history both share up to their
first different answer, the better/worse text the rest of each dialogue. Dialogues that start
from different prompts share no input and are left out (the report counts them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interleaf.datasets.image_files import ImageFiles
from interleaf.datasets.interleaved import placeholder_text
from interleaf.datasets.run_reader import RunDataError, RunReader, prepare_out_dir
from interleaf.errors import Location
from interleaf.state import DialogueState, Message, PreferencePair, TreeNode

ALIGN_ANYTHING_FILE = "train.json"
IMAGE_PLACEHOLDER = "<image>"
_ROLE_LABEL = {"user": "USER: ", "assistant": "ASSISTANT: ", "system": "SYSTEM: "}


def _labelled(messages: list[Message]) -> list[Message]:
    """Messages with their role label prepended as text, so flattening keeps who said what."""
    out = []
    for m in messages:
        label = {"type": "text", "text": _ROLE_LABEL[m.role]}
        out.append(Message.model_validate({"role": m.role, "parts": [label, *[p.model_dump() for p in m.parts]]}))
    return out


def _messages(nodes: list[TreeNode]) -> list[Message]:
    msgs: list[Message] = []
    for n in nodes:
        msgs.append(n.user)
        if n.assistant is not None:
            msgs.append(n.assistant)
    return msgs


def split_pair(state: DialogueState, pair: PreferencePair) -> tuple[list[Message], list[Message], list[Message]] | None:
    """(shared input, side 1, side 2) as messages; None when the two sides share no question."""
    nodes = []
    for side in (pair.response_1, pair.response_2):
        node = state.nodes.get(side)
        if node is None:
            raise RunDataError(f"pair {pair.id!r} names node {side!r}, which is not in the tree",
                               Location(f"dialogues/{state.seed.id}"), field="pairs")
        nodes.append(node)
    path_1, path_2 = state.path(nodes[0].id), state.path(nodes[1].id)
    shared = 0
    while shared < min(len(path_1), len(path_2)) - 1 and path_1[shared].id == path_2[shared].id:
        shared += 1
    tail_1, tail_2 = path_1[shared:], path_2[shared:]
    if tail_1[0].user != tail_2[0].user:
        return None
    head = [*_messages(path_1[:shared]), tail_1[0].user]
    side_1 = _messages(tail_1)[1:]
    side_2 = _messages(tail_2)[1:]
    return head, side_1, side_2


def export_align_anything(reader: RunReader, out: Path) -> str:
    """Write ``train.json`` and ``images/`` under ``out``; returns a one-line report."""
    out = prepare_out_dir(out)
    images = ImageFiles(reader, out)
    rows: list[dict[str, Any]] = []
    ties = unshared = 0
    for state in reader.dialogues():
        for pair in sorted(state.pairs, key=lambda p: p.id):
            if pair.overall not in (1, 2):
                ties += 1
                continue
            split = split_pair(state, pair)
            if split is None:
                unshared += 1
                continue
            head, side_1, side_2 = split
            better, worse = (side_1, side_2) if pair.overall == 1 else (side_2, side_1)
            input_text, input_images = placeholder_text(_labelled(head), IMAGE_PLACEHOLDER)
            # A single answer is written bare; a multi-turn remainder keeps its role labels.
            better_text, better_images = placeholder_text(better if len(better) == 1 else _labelled(better))
            worse_text, worse_images = placeholder_text(worse if len(worse) == 1 else _labelled(worse))
            rows.append({
                "id": pair.id, "seed_id": state.seed.id, "level": pair.level,
                "input_text": input_text, "input_image": images.paths(input_images),
                "better_text": better_text, "better_img": images.paths(better_images),
                "worse_text": worse_text, "worse_img": images.paths(worse_images),
                "preference": dict(sorted(pair.preference.items())),
            })
    rows.sort(key=lambda r: r["id"])
    (out / ALIGN_ANYTHING_FILE).write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return (f"align-anything: {len(rows)} preference rows ({ties} ties and {unshared} pairs without a shared "
            f"question left out), {images.count} images -> {out / ALIGN_ANYTHING_FILE}")
