"""Write dialogues into the run layout (used by importers, so imported data is a normal run)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from interleaf.errors import InterleafError
from interleaf.run import layout
from interleaf.run.records import (
    DialogueStatus,
    RunManifest,
    new_run_id,
    read_statuses,
    seed_fingerprint,
    status_counts,
)
from interleaf.run.totals import RunTotals
from interleaf.state import DialogueState, ImageRef
from interleaf.storage.store import ObjectStore

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_EXT_BY_MIME = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class ImageDecodeError(InterleafError):
    """Bytes that were supposed to be an image are not one PIL can read."""


class RunWriter:
    """Writes ``dialogues/``, ``status/``, ``blobs/`` and ``manifest.json`` under a store root."""

    def __init__(self, root: str | Path | ObjectStore):
        self.store = root if isinstance(root, ObjectStore) else ObjectStore(root)

    def put_image(self, data: bytes, what: str = "image") -> ImageRef:
        """Store image bytes as a content-addressed blob and describe them."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                mime = _MIME_BY_FORMAT.get(img.format or "", "image/png")
        except (UnidentifiedImageError, OSError) as exc:
            raise ImageDecodeError(f"{what}: not a readable image ({exc})") from None
        key, sha = self.store.put_blob(data, _EXT_BY_MIME[mime])
        return ImageRef(uri=self.store.url(key), sha256=sha, width=width, height=height, mime=mime)

    def write_dialogue(self, state: DialogueState) -> DialogueStatus:
        """Store a dialogue and its status (done when it has a complete dialogue end, else failed)."""
        self.store.put_json(layout.dialogue_key(state.seed.id), state.model_dump(mode="json"))
        complete = len(state.tree().complete_ends())
        ok = state.status != "failed" and complete > 0
        totals = RunTotals(seeds=1, done=int(ok), failed=int(not ok))
        totals.add_outcomes(state)
        status = DialogueStatus(
            seed_id=state.seed.id, status="done" if ok else "failed",
            reason=None if ok else ("dialogue_failed" if state.status == "failed" else "no_complete_dialogue"),
            error=state.error, seed_hash=seed_fingerprint(state.seed), complete=complete, totals=totals,
        )
        status.save(self.store)
        return status

    def write_manifest(self, graph_name: str, params: dict[str, Any], *, seeds: int | None = None) -> str:
        """A manifest for data that no graph produced here (an import); returns the new run id."""
        manifest = RunManifest(run_id=new_run_id(), graph_name=graph_name, graph_hash="", params=params)
        manifest.counts = status_counts(read_statuses(self.store).values(), seeds=seeds)
        manifest.save(self.store)
        return manifest.run_id
