import io
import struct

import pytest
from PIL import Image

from interleaf.imaging.png import UndecodableImageError, decode_image, encode_png


def _chunks(png: bytes) -> list[bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out.append(png[pos + 4 : pos + 8])
        pos += 12 + length
    return out


def _gradient(mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", (24, 16))
    img.putdata([(x * 10, y * 15, (x + y) * 5) for y in range(16) for x in range(24)])
    return img.convert(mode)


def test_png_is_byte_deterministic_and_carries_only_pixels() -> None:
    plain = encode_png(_gradient())
    tagged = _gradient()
    tagged.info.update({"dpi": (300, 300), "icc_profile": b"not-a-profile", "comment": "hello"})
    assert encode_png(tagged) == plain
    assert set(_chunks(plain)) == {b"IHDR", b"IDAT", b"IEND"}


def test_png_converts_to_rgb() -> None:
    png = encode_png(_gradient("RGBA"))
    with Image.open(io.BytesIO(png)) as img:
        assert img.mode == "RGB" and img.size == (24, 16)


def test_decode_resizes_and_rejects_garbage() -> None:
    img = decode_image(encode_png(_gradient()), (32, 32))
    assert img.size == (32, 32) and img.mode == "RGB"
    with pytest.raises(UndecodableImageError, match="not a readable image"):
        decode_image(b"definitely not an image")
