"""Interleaved messages as flat text plus an image list, and back.

Dataset formats keep a message as one string with image markers where images stand
(``<Image, a red bicycle>`` in InterMT, ``<image>`` in align-anything) and the image files in
order beside it. :class:`~interleaf.state.ImagePart.marker` says what an image replaced in the
text: the verbatim marker, ``""`` for an image placed by no marker (listed, not inlined), or
None for an image the engine made without one (a marker is then written from its caption).
"""

from __future__ import annotations

from typing import Literal

from interleaf.models.markers import parse_markers
from interleaf.state import ImagePart, ImageRef, Message, TextPart

#: Marker text meaning "this image was listed with the message but stood nowhere in its text".
UNPLACED = ""


def synthesized_marker(caption: str | None) -> str:
    """An InterMT marker for an image that has none; angle brackets in the caption are dropped."""
    clean = " ".join((caption or "").replace("<", " ").replace(">", " ").split())
    return f"<Image, {clean}>" if clean else "<Image>"


def marked_text(message: Message, *, synthesize: bool) -> tuple[str, list[ImageRef]]:
    """The message as text with its image markers inline, and its images in order.

    ``synthesize``: write a marker for images that have none (assistant answers); without it
    such images are listed only (user attachments, which InterMT keeps out of the prompt text).
    """
    out: list[str] = []
    images: list[ImageRef] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            out.append(part.text)
            continue
        images.append(part.image)
        if part.marker:
            out.append(part.marker)
        elif part.marker is None and synthesize:
            out.append(synthesized_marker(part.caption))
    return "".join(out), images


def placeholder_text(messages: list[Message], placeholder: str = "<image>", *,
                     separator: str = "\n") -> tuple[str, list[ImageRef]]:
    """Messages as text with ``placeholder`` where each image stands (markers replaced), images in order."""
    chunks: list[str] = []
    images: list[ImageRef] = []
    for message in messages:
        pieces: list[str] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            else:
                images.append(part.image)
                pieces.append(placeholder)
        chunks.append("".join(pieces))
    return separator.join(chunks), images


def message_from_marked_text(role: Literal["user", "assistant"], text: str, images: list[ImageRef]) -> Message:
    """Inverse of :func:`marked_text`: the k-th marker becomes the k-th image.

    Markers beyond the images stay in the text; images beyond the markers are appended as
    unplaced parts. ``marked_text`` of the result gives back ``text`` and ``images`` exactly.
    """
    parts: list[TextPart | ImagePart] = []
    pos = 0
    markers = parse_markers(text)[: len(images)]
    for marker, image in zip(markers, images, strict=False):
        if marker.start > pos:
            parts.append(TextPart(text=text[pos:marker.start]))
        parts.append(ImagePart(image=image, caption=marker.caption or None, marker=marker.raw))
        pos = marker.end
    if pos < len(text):
        parts.append(TextPart(text=text[pos:]))
    for image in images[len(markers):]:
        parts.append(ImagePart(image=image, marker=UNPLACED))
    if not parts:
        parts.append(TextPart(text=""))
    return Message(role=role, parts=list(parts))
