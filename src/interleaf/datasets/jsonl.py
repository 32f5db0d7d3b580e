"""The engine's own lossless export: every dialogue tree as one JSON line, with its images.

``dialogues.jsonl`` holds one ``DialogueState.model_dump(mode="json")`` per line: pruned and
failed branches with their reasons, every score, pair, follow-up and model call. Image URIs are
kept verbatim; each image's bytes are copied to the same ``blobs/sha256/..`` key under the export
folder, so :func:`read_jsonl` plus that folder is the whole run. ``manifest.json`` and
``graph.yaml`` are copied when the run has them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from interleaf.datasets.outputs import prepare_out_dir, write_bytes, write_text
from interleaf.errors import LocatedError, Location
from interleaf.run import layout
from interleaf.run.reader import RunReader, images_of
from interleaf.state import DialogueState

DIALOGUES_JSONL = "dialogues.jsonl"


class JsonlFormatError(LocatedError):
    """A line of a ``dialogues.jsonl`` file is not a dialogue state."""


def export_jsonl(reader: RunReader, out: Path) -> str:
    """Write ``dialogues.jsonl``, the images under ``blobs/`` and the run's manifest and graph.

    A run with no stored dialogue (empty, or every seed failed before finishing) gives an
    empty ``dialogues.jsonl``. Raises :class:`~interleaf.datasets.outputs.OutputError` when
    ``out`` cannot be written; files already there are replaced only by complete new ones.
    """
    out = prepare_out_dir(out)
    lines: list[str] = []
    blobs: set[str] = set()
    for state in reader.dialogues():
        lines.append(json.dumps(state.model_dump(mode="json"), ensure_ascii=False, sort_keys=True))
        for ref in images_of(state):
            key = reader.image_key(ref)
            if key not in blobs:
                write_bytes(out / key, reader.image_bytes(ref))
                blobs.add(key)
    write_text(out / DIALOGUES_JSONL, "".join(line + "\n" for line in lines))
    for key in (layout.MANIFEST, layout.GRAPH):
        data = reader.store.get_bytes_or_none(key)
        if data is not None:
            write_bytes(out / key, data)
    return f"jsonl: {len(lines)} dialogue trees, {len(blobs)} images -> {out / DIALOGUES_JSONL}"


def read_jsonl(path: Path) -> list[DialogueState]:
    """Read a ``dialogues.jsonl`` back; errors name the line and field."""
    states: list[DialogueState] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                states.append(DialogueState.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or None
                raise JsonlFormatError(first["msg"], Location(str(path), lineno), field=where) from None
    return states
