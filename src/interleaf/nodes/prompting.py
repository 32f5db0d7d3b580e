"""Prompt building shared by the model-calling node kinds of the InterMT workflow.

Judges and the user simulator read a dialogue as one *transcript* in a single user message:
role headers, text and images in order, so "image 2" means the same image to every reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from interleaf.graphs.spec import ModelSpec
from interleaf.models.messages import to_openai_messages
from interleaf.state import ImagePart, Message, TextPart

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore

_ROLE_HEADER = {"system": "System", "user": "User", "assistant": "Assistant"}


def transcript_parts(history: Sequence[Message], headers: dict[str, str] | None = None) -> list[TextPart | ImagePart]:
    """``history`` as interleaved parts under role headers; an image's caption follows it.

    Sent as one user message, the images are numbered ``image 1..N`` in this order by
    :func:`interleaf.models.messages.to_openai_messages`.
    """
    names = {**_ROLE_HEADER, **(headers or {})}
    parts: list[TextPart | ImagePart] = []
    for msg in history:
        parts.append(TextPart(text=f"\n[{names[msg.role]}]\n"))
        for p in msg.parts:
            parts.append(p)
            if isinstance(p, ImagePart) and p.caption:
                parts.append(TextPart(text=f"\n(caption: {p.caption})\n"))
    return merge_text(parts)


def merge_text(parts: Sequence[TextPart | ImagePart]) -> list[TextPart | ImagePart]:
    """Join adjacent text parts (fewer, larger content blocks for the model)."""
    out: list[TextPart | ImagePart] = []
    for p in parts:
        if isinstance(p, TextPart) and out and isinstance(out[-1], TextPart):
            out[-1] = TextPart(text=out[-1].text + p.text)
        else:
            out.append(p)
    return out


async def chat_messages(client: Any, messages: Sequence[Message], store: ObjectStore | None) -> list[dict[str, Any]]:
    """OpenAI-format messages for ``client.complete``, images sent as the client's model spec says."""
    spec = getattr(client, "spec", None)
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec(model="unknown")
    return await to_openai_messages(
        list(messages), store, max_side=spec.max_image_side, transport=spec.image_transport
    )
