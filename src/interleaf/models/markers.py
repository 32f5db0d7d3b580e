"""Inline image markers in model text, as written in the InterMT data.

A model answering under the ``markers`` protocol writes ``<Image, a caption>`` where an
image belongs. Real data uses several spellings; all of these are read::

    <Image, a red bicycle>   <Image: a red bicycle>   <[Image] a red bicycle>   <image a red bicycle>

A marker whose caption asks for an edit (``<Image, edit of image 1: make it blue>``,
``<Image: Edited version of image 2 ...>``, ``<Image, edit: ...>``) becomes an edit call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MarkerAction = Literal["generate", "edit"]

# Bounded caption and no nested angle brackets keep matching linear on any input.
_MARKER = re.compile(
    r"<\s*(?:\[\s*image\s*\]|image)(?=[\s,:：\-\]>])\s*[,:：\-]?\s*(?P<caption>[^<>]{0,2000}?)\s*>",
    re.IGNORECASE,
)
_IMAGE_INDEX = re.compile(r"\bimage\s*#?\s*(?P<n>\d{1,4})\b", re.IGNORECASE)
_EDIT_OF = re.compile(
    r"^\s*(?:an?\s+|the\s+)?(?:edit(?:ed|ing)?|modif(?:y|ied|ication))\b"
    r"(?:\s+version)?(?:\s+of)?(?:\s+image\s*#?\s*\d{1,4})?\s*(?P<sep>[:,\-])?\s*",
    re.IGNORECASE,
)
_EDIT_ANYWHERE = re.compile(r"\b(?:edit(?:ed)?|modified)\s+(?:version\s+)?of\s+image\s*#?\s*\d{1,4}\b", re.IGNORECASE)


@dataclass(frozen=True)
class Marker:
    """One marker: its span in the text, the verbatim marker text and what it asks for.

    ``source`` is the ``"image N"`` reference of an edit (None: the latest image);
    ``instruction`` is the edit instruction (the caption without its "edit of image N:" lead).
    """

    start: int
    end: int
    raw: str
    caption: str
    action: MarkerAction = "generate"
    source: str | None = None
    instruction: str = ""


def _classify(caption: str) -> tuple[MarkerAction, str | None, str]:
    lead = _EDIT_OF.match(caption)
    if lead is None and not _EDIT_ANYWHERE.search(caption):
        return "generate", None, caption
    index = _IMAGE_INDEX.search(caption)
    source = f"image {int(index['n'])}" if index else None
    # "edit of image 1: make it blue" -> the part after the separator is the instruction;
    # "Edited version of image 2 with a red roof" reads best whole.
    instruction = caption[lead.end():].strip() if lead is not None and lead["sep"] else caption
    return "edit", source, instruction or caption


def parse_markers(text: str) -> list[Marker]:
    """All markers in ``text``, in order. Never raises; non-strings give ``[]``."""
    if not isinstance(text, str):
        return []
    found: list[Marker] = []
    for m in _MARKER.finditer(text):
        caption = " ".join(m["caption"].split())
        action, source, instruction = _classify(caption)
        found.append(
            Marker(start=m.start(), end=m.end(), raw=m.group(0), caption=caption, action=action,
                   source=source, instruction=instruction)
        )
    return found


def split_text(text: str, markers: list[Marker]) -> list[str | Marker]:
    """``text`` cut at ``markers``: text segments (non-empty) and markers, in order."""
    pieces: list[str | Marker] = []
    pos = 0
    for mk in markers:
        if mk.start > pos:
            pieces.append(text[pos:mk.start])
        pieces.append(mk)
        pos = mk.end
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces
