"""align-anything's text-image-to-text-image preference rows (template ``ti2ti_preference``).

``train.json`` is a JSON list of rows::

    {"input_text", "input_image", "better_text", "better_img", "worse_text", "worse_img",
     "input_text_interleaved", "better_text_interleaved", "worse_text_interleaved",
     "id", "level", "seed_id", "preference"}

align-anything's ``ti2ti_preference`` template builds each side as ``"<image>" * len(images)
+ text``: every image goes *first*, and the text must hold no ``<image>`` of its own (an
inline one would give more image tokens than images, which Chameleon/Janus/Anole-style
processors reject or misalign). So ``input_text``, ``better_text`` and ``worse_text`` are the
plain text with no placeholder, and ``input_image``/``better_img``/``worse_img`` list the
image files (``images/<uuid>.png``, relative to the export folder) in the order they appear.
The ``*_interleaved`` fields keep the same text with ``<image>`` where each image stood, for
loaders that place images inline (the k-th ``<image>`` is the k-th listed file). A literal
``<image>`` in a message's own words is written ``[image]``, so the counts always match. The
other keys are ignored by align-anything's loaders.

The history is flattened as ``USER: ...`` / ``ASSISTANT: ...`` lines ending with the question;
a single answer is written bare, a multi-turn remainder keeps its role labels. Ties (overall
preference 0) give no row. A global pair compares two whole dialogues: the input is the
history both share up to their first different answer, the better/worse text the rest of
each dialogue. Dialogues that start from different prompts share no input and are left out
(the report counts them). A run with no decisive pair gives ``[]``.

Example (what the template does with one side of a row)::

    row = {"better_text": "The campsite sits above the bay.  (figure 1) ", "better_img": ["images/1.png"],
           "better_text_interleaved": "The campsite sits above the bay. <image> (figure 1) "}
    "<image>" * len(row["better_img"]) + row["better_text"]
    # '<image>The campsite sits above the bay.  (figure 1) '
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interleaf.datasets.image_files import ImageFiles
from interleaf.datasets.interleaved import placeholder_text
from interleaf.datasets.outputs import prepare_out_dir, write_text
from interleaf.errors import Location
from interleaf.run import layout
from interleaf.run.reader import RunDataError, RunReader
from interleaf.state import DialogueState, Message, PreferencePair, TextPart, TreeNode

ALIGN_ANYTHING_FILE = "train.json"
IMAGE_PLACEHOLDER = "<image>"
#: What a literal ``<image>`` inside a message's own text is written as.
LITERAL_PLACEHOLDER = "[image]"
#: The image-list key of each side, as align-anything's loaders spell them.
IMAGE_KEYS = {"input": "input_image", "better": "better_img", "worse": "worse_img"}
_ROLE_LABEL = {"user": "USER: ", "assistant": "ASSISTANT: ", "system": "SYSTEM: "}


def _escaped(messages: list[Message]) -> list[Message]:
    """Messages whose own text says ``<image>`` literally get ``[image]`` there instead.

    Otherwise a loader would count one image token more than there are images.
    """
    out = []
    for m in messages:
        parts = [TextPart(text=p.text.replace(IMAGE_PLACEHOLDER, LITERAL_PLACEHOLDER)) if isinstance(p, TextPart)
                 else p for p in m.parts]
        out.append(m.model_copy(update={"parts": parts}))
    return out


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
                               Location(layout.dialogue_key(state.seed.id)), field="pairs")
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
            # A single answer is written bare; a multi-turn remainder keeps its role labels.
            sides = {"input": _labelled(head),
                     "better": better if len(better) == 1 else _labelled(better),
                     "worse": worse if len(worse) == 1 else _labelled(worse)}
            row: dict[str, Any] = {"id": pair.id, "seed_id": state.seed.id, "level": pair.level}
            for side, messages in sides.items():
                messages = _escaped(messages)
                interleaved, refs = placeholder_text(messages, IMAGE_PLACEHOLDER)
                plain, _ = placeholder_text(messages, "")
                row[f"{side}_text"] = plain
                row[IMAGE_KEYS[side]] = images.paths(refs)
                row[f"{side}_text_interleaved"] = interleaved
            row["preference"] = dict(sorted(pair.preference.items()))
            # Whose scores decided it (people's annotations or the model judge); loaders ignore extra keys.
            row["decided_by"] = pair.decided_by
            better_id, worse_id = ((pair.response_1, pair.response_2) if pair.overall == 1
                                   else (pair.response_2, pair.response_1))
            for side, node_id in (("better", better_id), ("worse", worse_id)):
                row[f"{side}_human_scores"] = [h.model_dump(mode="json") for h in state.nodes[node_id].human_scores]
            rows.append(row)
    rows.sort(key=lambda r: r["id"])
    write_text(out / ALIGN_ANYTHING_FILE, json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    return (f"align-anything: {len(rows)} preference rows ({ties} ties and {unshared} pairs without a shared "
            f"question left out), {images.count} images -> {out / ALIGN_ANYTHING_FILE}")
