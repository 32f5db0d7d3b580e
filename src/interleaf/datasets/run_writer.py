"""Write dialogues into the run layout (used by importers, so imported data is a normal run)."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

from interleaf.datasets.run_reader import DIALOGUE_PREFIX, MANIFEST_KEY, STATUS_PREFIX
from interleaf.errors import InterleafError
from interleaf.state import DialogueState, ImageRef
from interleaf.storage.store import ObjectStore, safe_segment

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_EXT_BY_MIME = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class ImageDecodeError(InterleafError):
    """Bytes that were supposed to be an image are not one PIL can read."""


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interleaf")
    except PackageNotFoundError:
        return "0+unknown"


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

    def write_dialogue(self, state: DialogueState) -> None:
        seg = safe_segment(state.seed.id)
        self.store.put_json(f"{DIALOGUE_PREFIX}/{seg}.json", state.model_dump(mode="json"))
        status = "failed" if state.status == "failed" else "done"
        self.store.put_json(f"{STATUS_PREFIX}/{seg}.json", {
            "seed_id": state.seed.id, "status": status, "error": state.error, "calls": 0,
            "prompt_tokens": 0, "completion_tokens": 0, "cost": None, "seconds": 0.0,
            "finished_at": time.time(),
        })

    def write_manifest(self, graph_name: str, counts: dict[str, int], params: dict[str, Any]) -> str:
        """A manifest for data that no graph produced here (an import); returns the new run id."""
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        now = time.time()
        self.store.put_json(MANIFEST_KEY, {
            "run_id": run_id, "graph_name": graph_name, "graph_hash": "", "package_version": _package_version(),
            "seeds_path": None, "seeds_hash": None, "params": params, "created_at": now, "updated_at": now,
            "counts": counts, "invocations": [],
        })
        return run_id
