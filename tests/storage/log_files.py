"""Helpers for tests that cut thread logs the way a kill or a crash would leave them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from interleaf.storage.checkpoint_log import read_frames


def frame_offsets(data: bytes) -> list[int]:
    """Where each frame of a log starts (12-byte head: magic, length, checksum)."""
    out, at = [], 0
    while at < len(data):
        out.append(at)
        at += 12 + int.from_bytes(data[at + 4:at + 8], "big")
    return out


def cut_before(path: Path, first_dropped: Callable[[dict[str, Any]], bool]) -> int:
    """Truncate the log at the first frame ``first_dropped`` accepts; returns the frames kept."""
    data = path.read_bytes()
    bodies, _ = read_frames(data)
    for index, (start, body) in enumerate(zip(frame_offsets(data), bodies, strict=False)):
        if first_dropped(body):
            with path.open("r+b") as fh:
                fh.truncate(start)
            return index
    return len(bodies)
