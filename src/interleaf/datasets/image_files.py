"""Image files written beside an export: ``images/<uuid>.<ext>``, one file per distinct image."""

from __future__ import annotations

import uuid
from pathlib import Path

from interleaf.datasets.outputs import write_bytes
from interleaf.run.reader import RunReader, image_extension
from interleaf.state import ImageRef

#: Names exported images: the same content always gets the same file name, in every export.
IMAGE_NAMESPACE = uuid.UUID("5b3f6a8e-0c1d-4e2f-9a7b-3c4d5e6f7a8b")


def image_uuid(ref: ImageRef) -> str:
    return str(uuid.uuid5(IMAGE_NAMESPACE, ref.sha256))


class ImageFiles:
    """Copies a run's images into ``<out>/<folder>/`` on first use; returns paths relative to ``out``."""

    def __init__(self, reader: RunReader, out: Path, folder: str = "images"):
        self.reader = reader
        self.out = out
        self.folder = folder
        self._written: dict[str, str] = {}

    def path(self, ref: ImageRef) -> str:
        known = self._written.get(ref.sha256)
        if known is not None:
            return known
        rel = f"{self.folder}/{image_uuid(ref)}.{image_extension(ref)}"
        target = self.out / rel
        # Names are derived from the content, so a file already there (an earlier export into
        # this folder) holds these bytes; it was written whole (temp file, then rename).
        if not target.exists():
            data = self.reader.image_bytes(ref)  # read first: a run error is not an output error
            write_bytes(target, data)
        self._written[ref.sha256] = rel
        return rel

    def paths(self, refs: list[ImageRef]) -> list[str]:
        return [self.path(r) for r in refs]

    @property
    def count(self) -> int:
        return len(self._written)
