"""ObjectStore: one key space over fsspec (local folders, S3 via s3fs, anything fsspec knows).

Keys are relative, ``/``-separated and validated, so a tool or model cannot make
the engine write outside the store's prefix. Writes are atomic: local files are
written to a temporary name and renamed; on S3 a single PUT is atomic already.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interleaf.errors import StoreKeyError

_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Return ``key`` if safe; raise :class:`StoreKeyError` naming the problem otherwise."""
    if not isinstance(key, str) or not key:
        raise StoreKeyError("empty object key")
    if _BAD_KEY_CHARS.search(key):
        raise StoreKeyError(f"object key {key!r} contains control characters or backslashes")
    if key.startswith("/") or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", key):
        raise StoreKeyError(f"object key {key!r} must be relative to the store")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StoreKeyError(f"object key {key!r} has an empty, '.' or '..' segment")
    if len(key) > 1024:
        raise StoreKeyError(f"object key is {len(key)} characters long (max 1024)")
    return key


def safe_segment(name: str) -> str:
    """Turn an arbitrary id (a seed id, say) into one safe key segment, injectively."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,120}", name) and ".." not in name:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)[:60].strip("._-") or "id"
    return f"{cleaned}~{digest}"


def blob_key(sha256: str, ext: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}.{ext.lstrip('.')}"


class ObjectStore:
    """Bytes and JSON under a root URI (``file://...``, a plain path, or ``s3://bucket/prefix``)."""

    def __init__(self, uri: str | Path, storage_options: dict[str, Any] | None = None):
        import fsspec

        text = str(uri)
        if "://" not in text:
            text = "file://" + os.path.abspath(text)
        self.uri = text.rstrip("/")
        self.storage_options = dict(storage_options or {})
        protocol = self.uri.split("://", 1)[0]
        self.protocol = protocol
        self.fs = fsspec.filesystem(protocol, **self.storage_options)
        self._root = self.fs._strip_protocol(self.uri).rstrip("/")  # type: ignore[attr-defined]
        self.is_local = protocol in ("file", "local")

    # -- paths --------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """Filesystem path of ``key`` (after validation)."""
        return f"{self._root}/{check_key(key)}"

    def url(self, key: str) -> str:
        """Full URI of ``key`` (what goes into an :class:`~interleaf.state.ImageRef`)."""
        return f"{self.uri}/{check_key(key)}"

    def key_of(self, url: str) -> str:
        """Inverse of :meth:`url`; raises if ``url`` is outside this store."""
        prefix = self.uri + "/"
        if not url.startswith(prefix):
            raise StoreKeyError(f"{url!r} is not inside store {self.uri!r}")
        return check_key(url[len(prefix):])

    def local_path(self, key: str) -> Path | None:
        return Path(self.path(key)) if self.is_local else None

    def child(self, prefix: str) -> ObjectStore:
        return ObjectStore(f"{self.uri}/{check_key(prefix)}", self.storage_options)

    # -- sync API -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise FileNotFoundError(f"no object {key!r} in {self.uri}") from None

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursive, sorted)."""
        base = self._root if not prefix else self.path(prefix.rstrip("/"))
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        root = self._root + "/"
        out = [p[len(root):] for p in found if p.startswith(root)]
        return sorted(k for k in out if ".tmp-" not in k)

    def iter_json(self, prefix: str) -> Iterator[tuple[str, Any]]:
        for key in self.list(prefix):
            if key.endswith(".json"):
                yield key, self.get_json(key)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_blob(self, data: bytes, ext: str) -> tuple[str, str]:
        """Store content-addressed bytes; returns ``(key, sha256)``. Idempotent."""
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(sha, ext)
        if not self.exists(key):
            self.put_bytes(key, data)
        return key, sha

    # -- async API (thread offload; fsspec backends are blocking here) ---------------------
    async def aput_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.put_bytes, key, data)

    async def aget_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_bytes, key)

    async def aexists(self, key: str) -> bool:
        return await asyncio.to_thread(self.exists, key)

    async def aput_json(self, key: str, value: Any) -> None:
        await asyncio.to_thread(self.put_json, key, value)

    async def aget_json(self, key: str) -> Any:
        return await asyncio.to_thread(self.get_json, key)

    async def aput_blob(self, data: bytes, ext: str) -> tuple[str, str]:
        return await asyncio.to_thread(self.put_blob, data, ext)

    def __repr__(self) -> str:
        return f"ObjectStore({self.uri!r})"
