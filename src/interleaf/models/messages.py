"""Interleaved history -> OpenAI-style chat messages (what litellm takes for every provider).

Images are referenced in state (:class:`~interleaf.state.ImageRef`); here they are loaded
from the store, shrunk to ``max_side`` and sent either inline as a data URL or as a URL the
provider fetches itself (HTTP(S) as is, object-store images presigned). Every image is
labelled ``[image N]`` (N counts the dialogue's images from 1) so a user or a model can
refer to it, e.g. to ask for an edit.

OpenAI-compatible APIs accept images only in user messages, so the images of an assistant
answer are shown in a user message right after it; its text keeps the original markers.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

from interleaf.state import ImagePart, ImageRef, Message, TextPart

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore

Transport = Literal["data_url", "url", "auto"]

#: Under ``auto``, images up to this many pixels go inline; larger ones by URL when one exists.
AUTO_INLINE_PIXELS = 512 * 512
#: Presigned URLs stay valid this long (seconds).
PRESIGN_SECONDS = 3600

_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
_data_urls: OrderedDict[tuple[str, int], str] = OrderedDict()
_DATA_URL_CACHE_SIZE = 256


def image_label(index: int) -> str:
    """How the ``index``-th image (1-based) of a dialogue is named to models and tools."""
    return f"image {index}"


async def load_image_bytes(ref: ImageRef, store: ObjectStore | None) -> bytes:
    """The bytes of ``ref``: through ``store`` when it lives there, else through fsspec."""
    if store is not None and ref.uri.startswith(store.uri + "/"):
        return await store.aget_bytes(store.key_of(ref.uri))
    return await asyncio.to_thread(_read_uri, ref.uri)


def _read_uri(uri: str) -> bytes:
    import fsspec

    with fsspec.open(uri, "rb") as fh:
        return fh.read()  # type: ignore[no-any-return]


def _shrink(data: bytes, mime: str, max_side: int) -> tuple[bytes, str]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if max(img.size) <= max_side and mime in _FORMATS:
            return data, mime
        img.thumbnail((max_side, max_side))
        out = io.BytesIO()
        if mime == "image/jpeg":
            img.convert("RGB").save(out, format="JPEG", quality=90)
            return out.getvalue(), "image/jpeg"
        img.save(out, format="PNG")
        return out.getvalue(), "image/png"


async def image_data_url(ref: ImageRef, store: ObjectStore | None, max_side: int) -> str:
    """``data:`` URL of ``ref`` shrunk to ``max_side`` (memoised by content hash)."""
    key = (ref.sha256, max_side)
    cached = _data_urls.get(key)
    if cached is not None:
        _data_urls.move_to_end(key)
        return cached
    data = await load_image_bytes(ref, store)
    data, mime = await asyncio.to_thread(_shrink, data, ref.mime, max_side)
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    _data_urls[key] = url
    if len(_data_urls) > _DATA_URL_CACHE_SIZE:
        _data_urls.popitem(last=False)
    return url


def fetchable_url(ref: ImageRef, store: ObjectStore | None) -> str | None:
    """A URL a remote provider can fetch for ``ref``, or None (local files have none)."""
    if ref.uri.startswith(("http://", "https://")):
        return ref.uri
    protocol = ref.uri.split("://", 1)[0] if "://" in ref.uri else "file"
    if protocol in ("file", "local", "memory"):
        return None
    try:
        if store is not None and ref.uri.startswith(store.uri + "/"):
            fs, path = store.fs, store.path(store.key_of(ref.uri))
        else:
            import fsspec

            fs, path = fsspec.core.url_to_fs(ref.uri)
        return str(fs.sign(path, expiration=PRESIGN_SECONDS))
    except (NotImplementedError, AttributeError, ValueError):
        return None


async def image_content_part(
    ref: ImageRef, store: ObjectStore | None, *, max_side: int, transport: Transport
) -> dict[str, Any]:
    """One ``image_url`` content part for ``ref``."""
    url: str | None = None
    if transport == "url" or (transport == "auto" and ref.width * ref.height > AUTO_INLINE_PIXELS):
        url = fetchable_url(ref, store)
    if url is None:
        url = await image_data_url(ref, store, max_side)
    return {"type": "image_url", "image_url": {"url": url}}


async def to_openai_messages(
    history: list[Message],
    store: ObjectStore | None,
    *,
    max_side: int,
    transport: str,
    system: str | None = None,
) -> list[dict[str, Any]]:
    """OpenAI chat messages for ``history`` (optionally after a ``system`` message)."""
    if transport not in ("data_url", "url", "auto"):
        raise ValueError(f"image transport must be data_url, url or auto, not {transport!r}")
    mode: Transport = transport  # type: ignore[assignment]
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    counter = 0
    for msg in history:
        if msg.role == "system":
            out.append({"role": "system", "content": msg.text})
            continue
        if msg.role == "assistant":
            text = "".join(p.text if isinstance(p, TextPart) else (p.marker or _marker_for(p)) for p in msg.parts)
            out.append({"role": "assistant", "content": text})
            images = [p for p in msg.parts if isinstance(p, ImagePart)]
            if images:
                content: list[dict[str, Any]] = [{"type": "text", "text": "Images in your previous answer:"}]
                for part in images:
                    counter += 1
                    content.append({"type": "text", "text": f"[{image_label(counter)}]"})
                    content.append(await image_content_part(part.image, store, max_side=max_side, transport=mode))
                out.append({"role": "user", "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for p in msg.parts:
            if isinstance(p, TextPart):
                if p.text:
                    parts.append({"type": "text", "text": p.text})
            else:
                counter += 1
                parts.append({"type": "text", "text": f"[{image_label(counter)}]"})
                parts.append(await image_content_part(p.image, store, max_side=max_side, transport=mode))
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _marker_for(part: ImagePart) -> str:
    return f"<Image, {part.caption}>" if part.caption else "<Image>"


def dialogue_images(history: list[Message]) -> list[ImageRef]:
    """All images of ``history`` in the order they are numbered (``image 1`` first)."""
    return [p.image for m in history if m.role != "system" for p in m.parts if isinstance(p, ImagePart)]
