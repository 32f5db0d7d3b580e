"""ObjectStore: one key space over fsspec (local folders, S3 via s3fs, anything fsspec knows).

Keys are relative, ``/``-separated and validated, so a tool or model cannot make
the engine write outside the store's prefix. Writes are atomic: local files are
written to a temporary name and renamed; on S3 a single PUT is atomic already.

Transient failures (connection refused or reset, timeouts, 5xx answers) are
retried with backoff for ``retry_seconds`` (30 s by default), so a short store
outage delays a run instead of failing it.

S3 settings come from the standard AWS sources (``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, credentials files),
so MinIO and other S3-compatible stores need no extra configuration.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from interleaf.errors import InterleafError, StoreKeyError


class StoreUnavailableError(InterleafError, OSError):
    """The store stayed unreachable for the whole retry budget."""

_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
#: Marks half-written local files; never a valid key segment (see :func:`safe_segment`).
_TMP_MARK = ".~tmp-"

log = logging.getLogger(__name__)
T = TypeVar("T")
#: A list of keys or names (the class's own ``list`` method shadows the builtin inside it).
Keys = list[str]


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
    if _TMP_MARK in key:
        raise StoreKeyError(f"object key {key!r} contains the reserved marker {_TMP_MARK!r}")
    if len(key) > 1024:
        raise StoreKeyError(f"object key is {len(key)} characters long (max 1024)")
    return key


def safe_segment(name: str) -> str:
    """Turn an arbitrary id (a seed id, say) into one safe key segment, injectively."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,120}", name) and ".." not in name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)[:60].strip("._-") or "id"
    return f"{cleaned}~{digest}"


_BLOB_TAIL = re.compile(r"blobs/sha256/[0-9a-f]{2}/[0-9a-f]{64}\.[A-Za-z0-9]{1,8}$")


def blob_key(sha256: str, ext: str) -> str:
    """Content-addressed key: ``blobs/sha256/ab/abcdef....ext``."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise StoreKeyError(f"{sha256!r} is not a hex SHA-256 digest")
    if not re.fullmatch(r"[A-Za-z0-9]{1,10}", ext.lstrip(".")):
        raise StoreKeyError(f"blob extension {ext!r} must be 1-10 letters or digits")
    return f"blobs/sha256/{sha256[:2]}/{sha256}.{ext.lstrip('.')}"


_TRANSIENT_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN,
})
_TRANSIENT_S3_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "BadGateway", "GatewayTimeout",
})
_TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError", "ReadTimeoutError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError",
    "ClientPayloadError", "IncompleteRead", "ResponseParserError", "FSTimeoutError", "HTTPClientError",
})
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError,
              StoreKeyError, ValueError, TypeError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) looks like a passing outage worth retrying."""
    if isinstance(exc, _PERMANENT):
        return False
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionError | TimeoutError | asyncio.TimeoutError):
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(cur).__mro__):
            return True
        if isinstance(cur, OSError) and cur.errno in _TRANSIENT_ERRNOS:
            return True
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code")
            if (isinstance(status, int) and status >= 500) or code in _TRANSIENT_S3_CODES:
                return True
        cur = cur.__cause__ or cur.__context__
    return False


_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def io_executor() -> ThreadPoolExecutor:
    """Threads for blocking store calls, separate from asyncio's small default pool."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="interleaf-store")
        return _executor


def _s3_options(given: dict[str, Any]) -> dict[str, Any]:
    """Storage options for s3fs: listings never cached (other writers exist), endpoint from the env."""
    opts = dict(given)
    opts.setdefault("use_listings_cache", False)
    client_kwargs = dict(opts.get("client_kwargs") or {})
    # botocore reads AWS_ENDPOINT_URL(_S3) itself; passing it explicitly also covers older clients.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in client_kwargs and "endpoint_url" not in opts:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region and "region_name" not in client_kwargs:
        client_kwargs["region_name"] = region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    config_kwargs = dict(opts.get("config_kwargs") or {})
    # Keep botocore's own retries short; ObjectStore's retry loop owns the outage budget.
    config_kwargs.setdefault("connect_timeout", 5)
    config_kwargs.setdefault("read_timeout", 60)
    config_kwargs.setdefault("retries", {"total_max_attempts": 2, "mode": "standard"})
    opts["config_kwargs"] = config_kwargs
    return opts


def _read_local_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


class ObjectStore:
    """Bytes and JSON under a root URI (``file://...``, a plain path, or ``s3://bucket/prefix``)."""

    def __init__(
        self,
        uri: str | Path,
        storage_options: dict[str, Any] | None = None,
        *,
        retry_seconds: float = 30.0,
    ):
        import fsspec

        text = str(uri)
        if "://" not in text:
            text = "file://" + os.path.abspath(text)
        elif text.startswith("file://") and not text[len("file://"):].startswith("/"):
            # file://./runs: anchor at the working directory now, so stored URIs stay valid.
            text = "file://" + os.path.abspath(text[len("file://"):])
        self.uri = text.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.retry_seconds = retry_seconds
        protocol = self.uri.split("://", 1)[0]
        self.protocol = protocol
        options = _s3_options(self.storage_options) if protocol in ("s3", "s3a") else self.storage_options
        self.fs = fsspec.filesystem(protocol, **options)
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
        if url.startswith(prefix):
            return check_key(url[len(prefix):])
        # Blobs are content-addressed, so a blob URL recorded before the run was moved or
        # copied (mv, cp -r, a new bucket) names the same bytes under this root.
        blob = _BLOB_TAIL.search(url)
        if blob is not None:
            return check_key(blob.group(0))
        raise StoreKeyError(f"{url!r} is not inside store {self.uri!r}")

    def local_path(self, key: str) -> Path | None:
        return Path(self.path(key)) if self.is_local else None

    def child(self, prefix: str) -> ObjectStore:
        """A store rooted at ``prefix`` inside this one (same options)."""
        return ObjectStore(f"{self.uri}/{check_key(prefix)}", self.storage_options, retry_seconds=self.retry_seconds)

    # -- retries --------------------------------------------------------------------------
    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:
                transient = is_transient(exc)
                if not transient or time.monotonic() + delay > deadline:
                    if transient:
                        raise StoreUnavailableError(
                            errno.EIO,
                            f"store {self.uri} unreachable for {self.retry_seconds:.0f}s ({what}): {exc}",
                        ) from exc
                    raise
                log.warning("store %s: %s failed (%s); retry %d in %.1fs", self.uri, what, exc, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, 4.0)

    # -- sync API -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Publish ``data`` under ``key`` atomically (readers see all of it or nothing).

        ``durable=False`` skips the local ``fsync``: the object survives the process (the kernel
        holds it) but a machine crash may lose or truncate it, so use it only for objects whose
        readers detect that and can do without them (checkpoints, which carry a checksum). An
        S3 ``PUT`` is durable either way.
        """
        path = self.path(key)
        if self.is_local:
            self._retrying(f"put {key}", lambda: self._put_local(path, data, durable))
        else:
            self._retrying(f"put {key}", lambda: self.fs.pipe_file(path, data))

    @staticmethod
    def _write_temp(path: str, data: bytes, durable: bool = True) -> str:
        """A complete (and, when ``durable``, synced) temporary file next to ``path``."""
        tmp = f"{path}{_TMP_MARK}{uuid.uuid4().hex}"
        try:
            try:
                fh = open(tmp, "wb")
            except FileNotFoundError:  # the first object of its folder (cheaper than a makedirs per write)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fh = open(tmp, "wb")
            with fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    @classmethod
    def _put_local(cls, path: str, data: bytes, durable: bool = True) -> None:
        tmp = cls._write_temp(path, data, durable)
        try:
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Publish ``data`` under ``key`` only if nothing is there; True when this call created it.

        Local: a complete temporary file is hard-linked to the key (``link`` fails atomically
        when the name exists, also on NFS), so readers never see a partial object. S3:
        ``PutObject`` with ``If-None-Match: *``. Other protocols raise ``NotImplementedError``.
        False can also mean that an earlier, retried attempt of this same call landed.

        Example:
            >>> store.put_bytes_if_absent("lock.json", b"{}"), store.put_bytes_if_absent("lock.json", b"{}")
            (True, False)
        """
        path = self.path(key)
        if self.is_local:
            return self._retrying(f"create {key}", lambda: self._create_local(path, data))
        if self.protocol not in ("s3", "s3a"):
            raise NotImplementedError(f"no conditional create for {self.protocol}:// stores")

        def create() -> bool:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True

        return self._retrying(f"create {key}", create)

    @classmethod
    def _create_local(cls, path: str, data: bytes) -> bool:
        tmp = cls._write_temp(path, data)
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            with suppress(OSError):
                os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        data = self.get_bytes_or_none(key)
        if data is None:
            raise FileNotFoundError(f"no object {key!r} in {self.uri}")
        return data

    def get_bytes_or_none(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        path = self.path(key)
        if self.is_local:  # a plain read (fsspec's file object costs more), and "not there" raises nothing
            return self._retrying(f"get {key}", lambda: _read_local_or_none(path))

        def cat() -> bytes | None:
            try:
                return self.fs.cat_file(path)  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        return self._retrying(f"get {key}", cat)

    def exists(self, key: str) -> bool:
        path = self.path(key)
        return bool(self._retrying(f"exists {key}", lambda: self.fs.exists(path)))

    def delete(self, key: str) -> None:
        path = self.path(key)

        def rm() -> None:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass

        self._retrying(f"delete {key}", rm)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns how many were deleted."""
        keys = self.list(prefix)
        if not keys:
            return 0
        paths = [self.path(k) for k in keys]
        if self.is_local:
            for p in paths:
                with suppress(FileNotFoundError):
                    os.unlink(p)
        else:
            self._retrying(f"delete {prefix}/*", lambda: self.fs.rm(paths))
        return len(keys)

    def list(self, prefix: str = "") -> Keys:
        """Keys under ``prefix`` (recursive, sorted)."""
        base = self._root if not prefix else self.path(prefix.rstrip("/"))

        def find() -> Keys:
            try:
                return list(self.fs.find(base))
            except FileNotFoundError:
                return []

        found = self._retrying(f"list {prefix or '/'}", find)
        root = self._root + "/"
        out = [p[len(root):] for p in found if p.startswith(root)]
        return sorted(k for k in out if _TMP_MARK not in k)

    def list_dir(self, prefix: str = "") -> Keys:
        """Names of the immediate children (objects and folders) under ``prefix``, sorted."""
        base = self._root if not prefix else self.path(prefix.rstrip("/"))

        if self.is_local:
            def listdir() -> Keys:
                try:
                    return os.listdir(base)
                except (FileNotFoundError, NotADirectoryError):
                    return []

            return sorted(n for n in self._retrying(f"ls {prefix or '/'}", listdir) if _TMP_MARK not in n)

        def ls() -> Keys:
            try:
                return list(self.fs.ls(base, detail=False))
            except FileNotFoundError:
                return []

        found = self._retrying(f"ls {prefix or '/'}", ls)
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in found if p.rstrip("/") != base}
        return sorted(n for n in names if _TMP_MARK not in n)

    def iter_json(self, prefix: str) -> Iterator[tuple[str, Any]]:
        for key in self.list(prefix):
            if key.endswith(".json"):
                yield key, self.get_json(key)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def get_json_or_none(self, key: str) -> Any:
        """The parsed object, or None when there is no such object."""
        data = self.get_bytes_or_none(key)
        return None if data is None else json.loads(data)

    def put_blob(self, data: bytes, ext: str) -> tuple[str, str]:
        """Store content-addressed bytes; returns ``(key, sha256)``. Idempotent."""
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(sha, ext)
        if not self.exists(key):
            self.put_bytes(key, data)
        return key, sha

    # -- async API (blocking fsspec calls run on the store's thread pool) ----------------------
    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(io_executor(), functools.partial(fn, *args))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        # A local read of one object is a few microseconds of syscalls: on the event loop it
        # costs less than the thread hop, and it does not wait behind a busy loop to resume.
        # Writes stay on the pool (they fsync).
        if self.is_local:
            return fn(*args)
        return await self._offload(fn, *args)

    async def aput_bytes(self, key: str, data: bytes) -> None:
        await self._offload(self.put_bytes, key, data)

    async def aget_bytes(self, key: str) -> bytes:
        return await self._read(self.get_bytes, key)

    async def aget_bytes_or_none(self, key: str) -> bytes | None:
        return await self._read(self.get_bytes_or_none, key)

    async def aexists(self, key: str) -> bool:
        return await self._read(self.exists, key)

    async def adelete(self, key: str) -> None:
        await self._offload(self.delete, key)

    async def adelete_prefix(self, prefix: str) -> int:
        return await self._offload(self.delete_prefix, prefix)

    async def alist(self, prefix: str = "") -> Keys:
        return await self._offload(self.list, prefix)

    async def alist_dir(self, prefix: str = "") -> Keys:
        return await self._offload(self.list_dir, prefix)

    async def aput_json(self, key: str, value: Any) -> None:
        await self._offload(self.put_json, key, value)

    async def aput_json_in_order(self, items: Sequence[tuple[str, Any]]) -> None:
        """Publish each ``(key, value)`` in turn, in one trip to the store's threads.

        A later object is written only after the earlier ones are (a reader that sees it sees
        them), and a dialogue's end costs one hand-off to a thread, not one an object.
        """
        def put_all() -> None:
            for key, value in items:
                self.put_json(key, value)

        await self._offload(put_all)

    async def aget_json(self, key: str) -> Any:
        return await self._read(self.get_json, key)

    async def aget_json_or_none(self, key: str) -> Any:
        return await self._read(self.get_json_or_none, key)

    async def aput_blob(self, data: bytes, ext: str) -> tuple[str, str]:
        return await self._offload(self.put_blob, data, ext)

    def __repr__(self) -> str:
        return f"ObjectStore({self.uri!r})"
