"""One append-only file a thread: how checkpoints are kept on a local disk.

File ``<folder>/<thread segment>~log`` (the ``~log`` tail never ends a :func:`safe_segment`, so
a log never shares a name with a thread folder of the object layout), a sequence of frames::

    b"ILCL" | body length (u32, big endian) | CRC-32 of the body (u32) | body (msgpack)

Bodies, each a dict with ``k`` saying which kind it is:

``h``  the first frame: ``v`` (format) and ``thread_id``
``c``  a checkpoint: ``ns``, ``id``, ``parent``, ``checkpoint`` and ``metadata`` (serializer
       ``[type, bytes]``), ``values`` (``{channel: [version, type, bytes]}``, the values new in it)
``w``  one task's writes to a checkpoint: ``ns``, ``id``, ``task``, ``path``, ``writes``
       (``[[idx, channel, type, bytes], ...]``)

Why a file a thread: on the single-step graph a seed is nine checkpoint objects, and creating a
file costs the kernel far more than appending to one (measured on ext4: 1.6 ms of CPU for nine
files in a new folder, 0.05 ms for one file with nine appends). Object stores cannot append, so
S3 keeps the object layout (:mod:`interleaf.storage.checkpoint`).

Frames are not fsynced. A reader stops at the first frame that is short or fails its checksum
(a tail torn by a machine crash, or a frame another process is writing right now), so it sees
the newest checkpoint that is intact together with everything it refers to, which always lies
before it in the file. The next writer of the thread cuts such a tail off before it appends.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import ormsgpack

from interleaf.storage.store import safe_segment

log = logging.getLogger(__name__)

FORMAT = 1
LOG_SUFFIX = "~log"
_MAGIC = b"ILCL"
_HEAD = struct.Struct(">4sII")
#: Logs this process has checked (or created) and may append to without reading them first.
_KNOWN_LIMIT = 65536
#: Logs kept open between appends (the threads in flight): an open and a close less an append.
_OPEN_LIMIT = 128


def frame(body: dict[str, Any]) -> bytes:
    """One frame: magic, length and checksum, then the msgpack ``body``."""
    payload = ormsgpack.packb(body)
    return _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def read_frames(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The intact frames at the start of ``data`` and the byte length they cover."""
    bodies: list[dict[str, Any]] = []
    at, size = 0, len(data)
    while at + _HEAD.size <= size:
        magic, length, crc = _HEAD.unpack_from(data, at)
        start = at + _HEAD.size
        payload = data[start:start + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            body = ormsgpack.unpackb(payload)
        except (ValueError, ormsgpack.MsgpackDecodeError):
            break
        if not isinstance(body, dict):
            break
        bodies.append(body)
        at = start + length
    return bodies, at


@dataclass
class ThreadLog:
    """A thread's log as read: its checkpoints and writes, by namespace."""

    thread_id: str | None
    #: namespace -> checkpoint id -> ``c`` body, in file order
    checkpoints: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: (namespace, checkpoint id) -> ``w`` bodies, in file order
    writes: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    #: bytes after the last intact frame (a torn tail, or a frame being written)
    torn_bytes: int = 0

    @classmethod
    def parse(cls, data: bytes) -> ThreadLog:
        bodies, end = read_frames(data)
        out = cls(thread_id=None, torn_bytes=len(data) - end)
        for body in bodies:
            kind = body.get("k")
            if kind == "h":
                out.thread_id = body.get("thread_id")
            elif kind == "c":
                out.checkpoints.setdefault(body["ns"], {})[body["id"]] = body
            elif kind == "w":
                out.writes.setdefault((body["ns"], body["id"]), []).append(body)
        return out

    def newest_first(self, ns: str) -> list[dict[str, Any]]:
        return sorted(self.checkpoints.get(ns, {}).values(), key=lambda b: b["id"], reverse=True)

    def value(self, ns: str, body: dict[str, Any], channel: str, version: Any) -> tuple[str, bytes] | None:
        """``(type, payload)`` of ``channel`` at ``version`` as checkpoint ``body`` sees it; None: empty.

        The value is in the checkpoint where that version was written: this one or an
        ancestor. A checkpoint put without its parent (out of lineage order) falls back to
        any checkpoint of the namespace holding that version.
        """
        known = self.checkpoints.get(ns, {})
        current: dict[str, Any] | None = body
        for _ in range(len(known) + 1):
            if current is None:
                break
            held = current["values"].get(channel)
            if held is not None and held[0] == version:
                return held[1], held[2]
            parent = current.get("parent")
            current = known.get(parent) if parent else None
        for other in known.values():
            held = other["values"].get(channel)
            if held is not None and held[0] == version:
                return held[1], held[2]
        return None


class LogFiles:
    """The thread logs in one local folder: read, append, delete, list.

    One instance serves one saver; appends of one process to one log are serialised by its
    lock. A run has one writer (its lock), and each seed's thread is written by one process.
    The logs appended to last stay open between appends (the threads in flight); a log another
    process removed meanwhile is noticed (no links left) and started again.
    """

    def __init__(self, folder: str):
        self.folder = folder.rstrip("/")
        self._lock = threading.Lock()
        self._known: OrderedDict[str, None] = OrderedDict()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._folder_made = False

    def path(self, thread_id: str) -> str:
        return f"{self.folder}/{safe_segment(thread_id)}{LOG_SUFFIX}"

    def exists(self, thread_id: str) -> bool:
        return os.path.exists(self.path(thread_id))

    def read(self, thread_id: str) -> ThreadLog | None:
        """The thread's log, or None when it has none."""
        try:
            with open(self.path(thread_id), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return ThreadLog.parse(data)

    def threads(self) -> list[str]:
        """Thread ids of every log in the folder (read from their first frame)."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        out: list[str] = []
        for name in sorted(names):
            if not name.endswith(LOG_SUFFIX):
                continue
            try:
                with open(f"{self.folder}/{name}", "rb") as fh:
                    head = fh.read(4096)
            except FileNotFoundError:
                continue
            bodies, _ = read_frames(head)
            if bodies and bodies[0].get("k") == "h":
                out.append(str(bodies[0]["thread_id"]))
        return out

    def delete(self, thread_id: str) -> None:
        path = self.path(thread_id)
        with self._lock:
            self._known.pop(path, None)
            if (fd := self._fds.get(path)) is not None:
                self._close_fd(path, fd)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def append(self, thread_id: str, bodies: list[dict[str, Any]]) -> None:
        """Append ``bodies`` as frames; the first append of this process checks the file's tail."""
        data = b"".join(frame(b) for b in bodies)
        path = self.path(thread_id)
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None and os.fstat(fd).st_nlink == 0:
                # Deleted (or deleted and made again) by another process since: appending to
                # this descriptor would write into a file nobody can read.
                self._close_fd(path, fd)
                self._known.pop(path, None)
                fd = None
            if fd is None and path in self._known:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                except FileNotFoundError:  # deleted meanwhile (the thread was reset): start it again
                    self._known.pop(path, None)
            if fd is None:
                self._open_unknown(thread_id, path, data)
            else:
                self._write(fd, path, data)

    def close(self) -> None:
        """Close the logs kept open between appends."""
        with self._lock:
            while self._fds:
                with suppress(OSError):
                    os.close(self._fds.popitem()[1])

    def __del__(self) -> None:
        # A saver dropped without close() must not leak its open logs.
        if hasattr(self, "_fds"):
            self.close()

    def _close_fd(self, path: str, fd: int) -> None:
        """Close ``fd`` (a log's cached descriptor, or one just opened) and forget it if cached."""
        if self._fds.get(path) == fd:
            del self._fds[path]
        os.close(fd)

    def _open_unknown(self, thread_id: str, path: str, data: bytes) -> None:
        header = frame({"k": "h", "v": FORMAT, "thread_id": thread_id})
        if not self._folder_made:
            os.makedirs(self.folder, exist_ok=True)
            self._folder_made = True
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
            try:
                content = b""
                while chunk := os.read(fd, 1 << 20):
                    content += chunk
                bodies, end = read_frames(content)
                if end < len(content):
                    log.warning("checkpoint log %s: %d bytes after its last intact frame (a machine crash?) "
                                "are cut off before writing", path, len(content) - end)
                    os.ftruncate(fd, end)
                if not bodies:
                    data = header + data
            except BaseException:
                os.close(fd)
                raise
        else:
            data = header + data
        self._write(fd, path, data)

    def _write(self, fd: int, path: str, data: bytes) -> None:
        """Write all of ``data`` at the end of ``fd`` and keep ``fd`` open for the next append
        (closed on failure); a failed write leaves no partial frame."""
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            self._close_fd(path, fd)
            raise
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:  # the next writer of this log cuts the tail off instead
                self._known.pop(path, None)
            self._close_fd(path, fd)
            raise
        self._fds[path] = fd
        self._fds.move_to_end(path)
        while len(self._fds) > _OPEN_LIMIT:
            os.close(self._fds.popitem(last=False)[1])
        self._known[path] = None
        self._known.move_to_end(path)
        while len(self._known) > _KNOWN_LIMIT:
            self._known.popitem(last=False)
