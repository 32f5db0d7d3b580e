"""How ``edit_image`` finds the image it edits.

An image reference is one of

* a URI inside the run's object store (what an :class:`~interleaf.state.ImageRef` holds),
* a store key (``blobs/sha256/ab/<sha>.png``),
* ``image N`` (also ``image #N``, ``<image N>``): the N-th image, 1-based, of the dialogue
  so far. The caller that knows the dialogue binds its images for the duration of the
  call with :func:`bind_dialogue_images`; the binding is a context variable, so concurrent
  dialogues on one event loop each see their own list.

Anything else (other URIs, local paths) is refused: the reference usually comes from a
model's output and must not reach files outside the run's store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from interleaf.errors import StoreKeyError
from interleaf.state import ImageRef
from interleaf.storage.store import check_key

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore

_DIALOGUE_IMAGES: ContextVar[tuple[ImageRef, ...] | None] = ContextVar("interleaf_dialogue_images", default=None)
_ORDINAL = re.compile(r"^<?\s*image\s*#?\s*(\d+)\s*>?$", re.IGNORECASE)


class ImageReferenceError(ValueError):
    """An image reference names no image this call may read."""


@contextmanager
def bind_dialogue_images(images: Sequence[ImageRef]) -> Iterator[None]:
    """Bind the dialogue's images (in order) so ``image N`` references resolve to them."""
    token = _DIALOGUE_IMAGES.set(tuple(images))
    try:
        yield
    finally:
        _DIALOGUE_IMAGES.reset(token)


def resolve_image_key(reference: str, store: ObjectStore) -> str:
    """The store key a reference points at; raises :class:`ImageReferenceError`."""
    text = reference.strip()
    match = _ORDINAL.match(text)
    if match:
        images = _DIALOGUE_IMAGES.get()
        if images is None:
            raise ImageReferenceError(
                f"{reference!r} refers to the dialogue's images, but none are bound here; pass the image's URI"
            )
        number = int(match.group(1))
        if not 1 <= number <= len(images):
            raise ImageReferenceError(f"{reference!r}: the dialogue has {len(images)} image(s) so far (1-based)")
        text = images[number - 1].uri
    try:
        if "://" in text:
            return store.key_of(text)
        return check_key(text)
    except StoreKeyError as exc:
        raise ImageReferenceError(f"image reference {reference!r} is not in this run's store: {exc}") from None


async def load_image_reference(reference: str, store: ObjectStore) -> bytes:
    """The stored bytes a reference points at."""
    key = resolve_image_key(reference, store)
    try:
        return await store.aget_bytes(key)
    except FileNotFoundError:
        raise ImageReferenceError(f"image reference {reference!r}: no such object in the store") from None
