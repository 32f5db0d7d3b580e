"""Byte-deterministic PNG encoding and bounded image decoding."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

PNG_COMPRESS_LEVEL = 6
MAX_DECODED_PIXELS = 64 * 1024 * 1024


def encode_png(image: Image) -> bytes:
    """Encode as RGB PNG with fixed options and no metadata chunks (no time, text, ICC or EXIF)."""
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # A fresh image carries no ``info`` dict, so nothing but pixels reaches the encoder.
    bare = PILImage.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


class UndecodableImageError(ValueError):
    """The bytes are not an image PIL can read, or the image is unreasonably large."""


def decode_image(data: bytes, size: tuple[int, int] | None = None) -> Image:
    """Decode to RGB, optionally resized to ``size`` (width, height) with a fixed filter."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > MAX_DECODED_PIXELS:
                raise UndecodableImageError(f"image is {width}x{height}, above the {MAX_DECODED_PIXELS}-pixel limit")
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UndecodableImageError(f"not a readable image ({len(data)} bytes): {exc}") from None
    if size is not None and image.size != size:
        image = image.resize(size, PILImage.Resampling.LANCZOS)
    return image
