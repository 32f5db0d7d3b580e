"""Per-image seeds derived from where an image is requested, stable across processes."""

from __future__ import annotations

import hashlib
import json

SEED_BITS = 63


def derive_image_seed(run_seed: int, dialogue_id: str, node_id: str, index: int) -> int:
    """A seed in ``[0, 2**63)`` from (run seed, dialogue id, tree node, marker index).

    sha256 over a canonical JSON encoding, not Python's ``hash`` (salted per process),
    so a resumed run or another worker derives the same seed for the same image.
    """
    payload = json.dumps(["interleaf-image-seed", int(run_seed), dialogue_id, node_id, int(index)])
    digest = hashlib.sha256(payload.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)
