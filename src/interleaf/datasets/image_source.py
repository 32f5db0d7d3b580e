"""Image files named inside imported records, read only from under one root.

An imported file is data from elsewhere: its image paths must not make the importer read
``/etc/...`` or ``../../secrets``. :class:`ImageSource` resolves each name against a root
folder (or an object-store URI) and refuses names that leave it, unless the user said
``allow_outside_root``. :func:`pixel_problem` refuses images whose pixel count is over
Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) before anything decodes
them.

The rules, for a local root (a path or ``file://`` URI):

- a relative name is looked up under the root; after resolving ``..`` and symbolic links it
  must still be inside the root;
- an absolute path or a URI (``s3://...``) is outside the root.

For a store root (``s3://bucket/prefix`` or any fsspec URI), a name is an object key under
the root (read through :class:`~interleaf.storage.store.ObjectStore`, with its retries and
credentials); ``..`` can never leave it (keys have no ``..``), absolute local paths and full
URIs are outside the root.

``allow_outside_root=True`` reads names outside the root as given (absolute paths from the
local disk, URIs through fsspec); ``..`` under a store root stays refused.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "a.png").write_bytes(b"png")
    >>> ImageSource(root).read("a.png")[1]
    b'png'
    >>> ImageSource(root).read("../a.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    interleaf.datasets.image_source.ImageRefused: image path '../a.png' leaves the images root ...
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import warnings
from pathlib import Path

from interleaf.errors import InterleafError
from interleaf.storage.store import ObjectStore

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ImageSourceError(Exception):
    """A named image cannot be used; the importer reports it at the record and field."""


class ImageRefused(ImageSourceError):
    """The name leaves the images root (absolute, ``..`` or a link out) and that is not allowed."""


class ImageMissing(ImageSourceError):
    """Nothing can be read at the name."""


def _is_local_root(root: str) -> bool:
    return not _URI.match(root) or root.startswith("file://")


class ImageSource:
    """Reads the image files an imported file names, confined to ``root``.

    ``root`` is a folder (``Path`` or ``str``, ``file://`` allowed) or an fsspec URI such as
    ``s3://bucket/images``. :meth:`read` returns ``(where, bytes)``: ``where`` is the
    resolved location (for messages and de-duplication).
    """

    def __init__(self, root: str | Path, *, allow_outside_root: bool = False):
        text = str(root)
        self.allow_outside_root = allow_outside_root
        self.local = _is_local_root(text)
        if self.local:
            folder = text[len("file://"):] if text.startswith("file://") else text
            self.root = os.path.realpath(folder)
            self.uri = self.root
            self._store: ObjectStore | None = None
        else:
            self._store = ObjectStore(text)
            self.uri = self._store.uri
            self.root = self.uri

    def _refuse(self, name: str, absolute: bool, how: str = "") -> ImageRefused:
        what = "is absolute, outside" if absolute else "leaves"
        return ImageRefused(
            f"image path {name!r} {what} the images root {self.uri}{how}; images are read only under it "
            "(pass --images-root to choose it, or --allow-outside-root to read such paths as given)"
        )

    def read(self, name: str) -> tuple[str, bytes]:
        """``(where, data)`` for ``name``; raises :class:`ImageRefused` or :class:`ImageMissing`."""
        outside = bool(_URI.match(name)) or os.path.isabs(name) or name.startswith("~")
        if outside:
            if not self.allow_outside_root:
                raise self._refuse(name, True)
            return self._read_as_given(name)
        if self.local:
            where = os.path.realpath(os.path.join(self.root, name))
            if os.path.commonpath([where, self.root]) != self.root:
                if not self.allow_outside_root:
                    raise self._refuse(name, False, " (through '..' or a symbolic link)")
            return where, self._read_local(name, where)
        key = posixpath.normpath(name.replace("\\", "/"))
        if key == ".." or key.startswith("../"):
            raise self._refuse(name, False, " (keys of a store root cannot use '..')")
        assert self._store is not None
        try:
            data = self._store.get_bytes_or_none(key)
        except (InterleafError, ValueError) as exc:  # a key the store refuses
            raise ImageMissing(f"image path {name!r} is not a key of {self.uri}: {exc}") from None
        if data is None:
            raise ImageMissing(f"image file {name!r} not found (looked at {self._store.url(key)})")
        return self._store.url(key), data

    @staticmethod
    def _read_local(name: str, where: str) -> bytes:
        try:
            with open(where, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise ImageMissing(f"image file {name!r} not found (looked at {where}: {exc.strerror})") from None

    def _read_as_given(self, name: str) -> tuple[str, bytes]:
        if not _URI.match(name) or name.startswith("file://"):
            where = os.path.realpath(os.path.expanduser(name[len("file://"):] if name.startswith("file://") else name))
            return where, self._read_local(name, where)
        import fsspec

        try:
            with fsspec.open(name, "rb") as fh:
                return name, fh.read()
        except (OSError, ValueError, ImportError) as exc:
            raise ImageMissing(f"image {name!r} cannot be read: {type(exc).__name__}: {exc}") from None


_PIXELS = re.compile(r"\((\d+) pixels\)")


def pixel_problem(data: bytes) -> str | None:
    """Why ``data`` is refused as over-large (over ``PIL.Image.MAX_IMAGE_PIXELS``), else None.

    Opening reads only the header, so a decompression bomb is caught before it is decoded.
    Bytes that are not an image give None here (the decoder reports them). With
    ``MAX_IMAGE_PIXELS = None`` (Pillow's own switch) nothing is refused.

    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("1", (40, 40)).save(buf, format="PNG")
    >>> pixel_problem(buf.getvalue()) is None
    True
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        # Over the limit Pillow only warns (over twice the limit it raises): refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)):
                return None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = _PIXELS.search(str(exc))
            pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
            return (f"image has {pixels}, over the limit of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS, Pillow's "
                    "decompression-bomb guard); shrink the image, or raise that limit if you trust the file")
        except Exception:
            return None
