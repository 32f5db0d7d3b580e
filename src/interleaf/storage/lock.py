"""One writer per run: a lease lock stored next to the run, in the run's own object store.

A run root must have at most one writer. :class:`RunLock` keeps a small JSON *holder
record* at ``lock.json`` in the store::

    {"token": "...", "host": "gpu-1", "pid": 4242, "since": 1764700000.0,
     "renewed_at": 1764700060.0, "lease_s": 60.0, "purpose": "interleaf run",
     "owner": "flow-run 0c9d...", "pid_ns": "pid:[4026531836]"}

Who may take the lock:

- nobody holds it: the caller (an atomic create, see *Guarantees*);
- the holder's ``token`` is the caller's token: the caller is *attached* (child processes of
  one logical writer, such as Prefect shards of one flow run, pass the parent's token);
- the holder is *stale*: on this host (same host name and pid namespace) its pid is no longer
  running; on another host its lease was not renewed for more than its ``lease_s``. A stale
  lock is taken over with a WARNING that names the old holder; :attr:`RunLock.takeover` keeps
  the message for the CLI;
- anything else raises :class:`RunLockedError`, naming the holder and what to do.

Guarantees (two contenders never both believe they hold the lock):

- Local folder: every check-and-write runs under ``flock`` on the lock's folder (released by
  the kernel when a process dies, so it can never go stale), and a fresh lock is created with
  ``link`` of a complete temporary file, which fails atomically when the name exists (also on
  NFS). Where ``flock`` is unavailable the create stays atomic and a takeover falls back to
  the settle check below.
- S3 with conditional writes (AWS S3, MinIO, moto; probed once per bucket and process): the
  create is ``PutObject`` with ``If-None-Match: *``; a takeover or renewal is ``PutObject``
  with ``If-Match: <ETag it judged>``; release is ``DeleteObject`` with ``If-Match``. Two
  takers of one stale lock: the first PUT changes the ETag, the second gets 412 and re-reads.
  This is exactly as strong as the server's conditional writes (atomic on AWS S3).
- S3 without conditional writes, or any other fsspec store: write-then-settle-then-reread.
  The contender writes its record, waits ``settle_s`` and reads back; it holds the lock only
  if its token is still there (the last writer wins on a strongly consistent store). This is
  safe as long as no contender takes longer than ``settle_s`` between reading the old state
  and its write landing; a process paused for longer than that (a suspended VM, a very slow
  request) between the two can still slip past.

Leases are judged with the reader's clock against the holder's ``renewed_at``; the holder
renews every ``lease_s / 3``, so clock skew up to about two thirds of the lease is harmless.
The token is a capability (it lets a process join the writer): it is never put into a
message, and :meth:`RunLock.read` leaves it out.

Example:
    >>> lock = RunLock(store, lease_s=30, purpose="interleaf run", owner="flow-run 42")
    >>> async with lock.holding():       # acquire, renew in the background, release at the end
    ...     await run_everything()
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from interleaf.errors import InterleafError
from interleaf.storage.store import ObjectStore, io_executor

try:  # psutil spots reused pids and zombies; without it os.kill(pid, 0) decides alone
    import psutil
except ImportError:  # pragma: no cover - psutil comes with prefect
    psutil = None

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Strategy = Literal["auto", "atomic", "settle"]
#: Fields a holder record must have, with their types (others are kept but not required).
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "token": str, "host": str, "pid": int, "since": (int, float), "renewed_at": (int, float),
    "lease_s": (int, float),
}


class RunLockedError(InterleafError):
    """Another live writer holds the run's lock; the message names it and says what to do.

    ``holder`` is its record without the token; ``location`` is where the lock object lives.

    Example:
        >>> try:
        ...     RunLock(store).acquire()
        ... except RunLockedError as exc:
        ...     print(exc.holder["host"], exc.holder["pid"])
        gpu-1 4242
    """

    def __init__(self, message: str, holder: dict[str, Any] | None, location: str):
        self.holder = holder
        self.location = location
        super().__init__(message)


class RunLockLostError(InterleafError):
    """The lock this process held was taken over, deleted, or could not be renewed in time.

    Example:
        >>> lock.check()   # raises RunLockLostError once the renewal found someone else's record
    """


# -- who and where we are ----------------------------------------------------------------


def _host() -> str:
    return socket.gethostname()


@functools.cache
def _pid_ns() -> str | None:
    # Containers sharing a host name (docker --network host) have separate pid spaces; a pid is
    # only meaningful inside the namespace that recorded it.
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_alive(pid: int, since: float) -> bool:
    """Whether ``pid`` on this host is still the process that took the lock at ``since``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it just belongs to another user
    except OSError:
        return True
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            # A process born after the lock was taken is a new process that reused the pid.
            if proc.create_time() > since + 1.0:
                return False
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True
    return True


# -- messages ------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "token"}


def describe_holder(record: dict[str, Any], now: float | None = None) -> str:
    """One line about a holder record, for messages and ``interleaf status`` (never the token).

    Example:
        >>> describe_holder({"host": "gpu-1", "pid": 4242, "since": 0, "renewed_at": 0, "lease_s": 60,
        ...                  "purpose": "interleaf run"}, now=75)
        'host gpu-1, pid 4242 (interleaf run), holding since 1970-01-01T00:00:00Z (1 min 15 s ago), ...'
    """
    now = time.time() if now is None else now
    purpose = record.get("purpose")
    owner = record.get("owner")
    what = ", ".join(str(x) for x in (purpose, f"owner {owner}" if owner else None) if x)
    text = f"host {record.get('host', '?')}, pid {record.get('pid', '?')}" + (f" ({what})" if what else "")
    since = record.get("since")
    if isinstance(since, int | float):
        text += f", holding since {_iso(since)} ({_ago(now - since)} ago)"
    renewed = record.get("renewed_at")
    if isinstance(renewed, int | float):
        text += f", last renewed {_ago(now - renewed)} ago"
    lease = record.get("lease_s")
    if isinstance(lease, int | float):
        text += f", lease {lease:g} s"
    return text


def _strip_userinfo(url: str) -> str:
    # A URI such as ftp://user:password@host/... must not reach a message.
    return re.sub(r"://[^/@]*@", "://", url)


@dataclass(frozen=True)
class _Verdict:
    stale: bool
    reason: str          # why it is stale, or why it is alive
    same_host: bool
    expires_in: float | None = None


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    for name, kind in _REQUIRED.items():
        value = rec.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None
    return rec


def _judge(record: dict[str, Any] | None, now: float) -> _Verdict:
    if record is None:
        return _Verdict(True, "the lock record is unreadable", same_host=False)
    if record["host"] == _host() and record.get("pid_ns") == _pid_ns():
        if _pid_alive(int(record["pid"]), float(record["since"])):
            return _Verdict(False, f"pid {record['pid']} is still running on this host", same_host=True)
        return _Verdict(True, f"pid {record['pid']} is no longer running on this host", same_host=True)
    age = now - float(record["renewed_at"])
    lease = float(record["lease_s"])
    if age > lease:
        return _Verdict(True, f"its lease ran out (last renewed {_ago(age)} ago, lease {lease:g} s)", same_host=False)
    return _Verdict(False, "its lease is current", same_host=False, expires_in=lease - age)


# -- backends: how one store does read / create / replace / delete --------------------------


@dataclass(frozen=True)
class _Seen:
    raw: bytes
    record: dict[str, Any] | None
    tag: str | None = None   # the S3 ETag that a conditional write must match


class _Backend:
    """Plain reads and writes; nothing atomic (the settle strategy makes up for it)."""

    atomic_create = False
    atomic_replace = False

    def __init__(self, store: ObjectStore, key: str):
        self.store = store
        self.key = key

    @contextmanager
    def guard(self) -> Iterator[None]:
        yield

    def read(self) -> _Seen | None:
        raw = self.store.get_bytes_or_none(self.key)
        return None if raw is None else _Seen(raw, _parse(raw))

    def create(self, data: bytes) -> _Seen | None:
        self.store.put_bytes(self.key, data)
        return _Seen(data, _parse(data))

    def replace(self, seen: _Seen, data: bytes) -> _Seen | None:
        self.store.put_bytes(self.key, data)
        return _Seen(data, _parse(data))

    def delete(self, seen: _Seen) -> bool:
        current = self.read()
        if current is None or current.raw != seen.raw:
            return False
        self.store.delete(self.key)
        return True


class _LocalBackend(_Backend):
    """A local folder: ``flock`` on the folder serialises check-and-write; ``link`` creates."""

    atomic_create = True

    def __init__(self, store: ObjectStore, key: str):
        super().__init__(store, key)
        path = store.local_path(key)
        assert path is not None
        self.folder = str(path.parent)
        self.atomic_replace = fcntl is not None

    @contextmanager
    def guard(self) -> Iterator[None]:
        if not self.atomic_replace:
            yield
            return
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                    raise
                # Some network file systems refuse flock: keep going, with the settle check.
                log.warning("flock unavailable on %s (%s); falling back to settle checks", self.folder, exc)
                self.atomic_replace = False
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def create(self, data: bytes) -> _Seen | None:
        if not self.store.put_bytes_if_absent(self.key, data):
            return None
        return _Seen(data, _parse(data))

    def replace(self, seen: _Seen, data: bytes) -> _Seen | None:
        # Under the guard nobody else can change the object between this check and the write.
        current = self.read()
        if current is None or current.raw != seen.raw:
            return None
        self.store.put_bytes(self.key, data)
        return _Seen(data, _parse(data))


def _s3_code(exc: BaseException) -> str | None:
    cur: BaseException | None = exc
    while cur is not None:
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            return str(code) if code is not None else None
        cur = cur.__cause__
    return None


_UNSUPPORTED_CODES = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest", "501", "400"})


class _S3Backend(_Backend):
    """S3 with conditional requests: If-None-Match on create, If-Match on replace and delete."""

    atomic_create = True
    atomic_replace = True

    def __init__(self, store: ObjectStore, key: str):
        super().__init__(store, key)
        self.bucket, _, self.object_key = store.path(key).partition("/")
        self.conditional_delete = True

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        fs = self.store.fs
        return self.store._retrying(
            what, lambda: fs.call_s3(method, Bucket=self.bucket, Key=self.object_key, **kwargs)
        )

    def read(self) -> _Seen | None:
        from fsspec.asyn import sync

        fs = self.store.fs

        async def get() -> tuple[bytes, str] | None:
            try:
                resp = await fs._call_s3("get_object", Bucket=self.bucket, Key=self.object_key)
            except FileNotFoundError:
                return None
            async with resp["Body"] as body:
                data = await body.read()
            return data, str(resp["ETag"])

        got = self.store._retrying(f"get {self.key}", lambda: sync(fs.loop, get))
        if got is None:
            return None
        return _Seen(got[0], _parse(got[0]), got[1])

    def _put(self, data: bytes, **condition: str) -> _Seen | None:
        try:
            resp = self._call(f"put {self.key}", "put_object", Body=data, **condition)
        except (FileExistsError, FileNotFoundError):
            return None
        except OSError as exc:
            # 412: the object changed since we judged it; 409: a concurrent conditional write.
            if _s3_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return None
            raise
        return _Seen(data, _parse(data), str(resp["ETag"]))

    def create(self, data: bytes) -> _Seen | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, seen: _Seen, data: bytes) -> _Seen | None:
        assert seen.tag is not None
        return self._put(data, IfMatch=seen.tag)

    def delete(self, seen: _Seen) -> bool:
        if self.conditional_delete:
            try:
                self._call(f"delete {self.key}", "delete_object", IfMatch=seen.tag)
                return True
            except FileNotFoundError:
                return False
            except OSError as exc:
                code = _s3_code(exc)
                if code in ("PreconditionFailed", "412"):
                    return False
                if code not in _UNSUPPORTED_CODES:
                    raise
                # Conditional deletes are newer than conditional puts on some servers.
                self.conditional_delete = False
        # Without them: compare, then delete (a takeover landing in between would be deleted).
        current = self.read()
        if current is None or current.tag != seen.tag:
            return False
        self.store.delete(self.key)
        return True


_probe_lock = threading.Lock()
_probed: dict[tuple[str, str], bool] = {}


def _s3_conditional_supported(store: ObjectStore, key: str) -> bool:
    """Ask the server once per (endpoint, bucket) whether it honours If-None-Match and If-Match.

    Some S3-compatible servers accept the headers and ignore them; only a real refusal proves
    support, so a scratch object is written, then overwritten with both conditions.
    """
    bucket = store.path(key).split("/", 1)[0]
    endpoint = str((store.fs.client_kwargs or {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3", ""))
    with _probe_lock:
        cached = _probed.get((endpoint, bucket))
        if cached is not None:
            return cached
        probe = _S3Backend(store, f"{key}.probe-{uuid.uuid4().hex[:12]}")
        supported = False
        try:
            probe._call("probe", "put_object", Body=b"probe")
            try:
                probe._call("probe", "put_object", Body=b"probe", IfNoneMatch="*")
            except FileExistsError:
                try:
                    probe._call("probe", "put_object", Body=b"probe", IfMatch='"0-not-an-etag"')
                except OSError as exc:
                    supported = _s3_code(exc) in ("PreconditionFailed", "412")
            except OSError as exc:
                if _s3_code(exc) not in _UNSUPPORTED_CODES:
                    raise
        finally:
            with suppress(Exception):
                store.delete(probe.key)
        if not supported:
            log.warning("S3 endpoint %s bucket %s ignores conditional writes; the run lock uses settle checks",
                        endpoint or "(default)", bucket)
        _probed[(endpoint, bucket)] = supported
        return supported


# -- the lock ------------------------------------------------------------------------------

_RETRY = object()


class RunLock:
    """At most one writer per run root: acquire, renew, release a lease lock in the store.

    ``lease_s``: how long another host waits after the last renewal before it may take over.
    ``owner``: free text recorded with the holder (a Prefect flow-run id, say).
    ``strategy``: ``"atomic"`` (local flock + link, S3 conditional writes; an error where
    unsupported), ``"settle"`` (write, wait ``settle_s``, read back), or ``"auto"`` (atomic
    where the store supports it, else settle). See the module docstring for the guarantees.

    Example:
        >>> lock = RunLock(store, lease_s=60)
        >>> with lock:                   # acquire + background renewal + release
        ...     write_the_run()
        >>> child = RunLock(store)
        >>> child.attach(lock.token)     # a shard of the same writer is accepted, not refused
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str = "lock.json",
        *,
        lease_s: float = 60.0,
        purpose: str = "interleaf run",
        owner: str | None = None,
        strategy: Strategy = "auto",
        settle_s: float = 1.0,
    ):
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, not {lease_s}")
        if strategy not in ("auto", "atomic", "settle"):
            raise ValueError(f"strategy must be 'auto', 'atomic' or 'settle', not {strategy!r}")
        self.store = store
        self.key = key
        self.lease_s = float(lease_s)
        self.purpose = purpose
        self.owner = owner
        self.strategy = strategy
        self.settle_s = float(settle_s)
        self._token = secrets.token_hex(16)
        self._backend: _Backend | None = None
        self._seen: _Seen | None = None
        self._held = False
        self._attached = False
        #: The takeover warning of the last :meth:`acquire`, or None when nobody was displaced.
        self.takeover: str | None = None
        #: Why the lock was lost (set by :meth:`renew` or the background renewal), else None.
        self.lost: str | None = None
        self._mutex = threading.RLock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._on_lost: Callable[[str], None] | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def token(self) -> str:
        """This writer's token; hand it to child processes so that they :meth:`attach`."""
        return self._token

    @property
    def held(self) -> bool:
        """True while this object holds the lock itself (it renews and releases it)."""
        return self._held

    @property
    def attached(self) -> bool:
        """True while this object rides on a live lock held by the same token elsewhere."""
        return self._attached

    @property
    def location(self) -> str:
        """Where the lock object lives: a local path or an ``s3://`` URL."""
        path = self.store.local_path(self.key)
        return str(path) if path is not None else _strip_userinfo(self.store.url(self.key))

    @staticmethod
    def read(store: ObjectStore, key: str = "lock.json") -> dict[str, Any] | None:
        """The current holder record without its token, or None when the run is not locked.

        An unreadable record is returned as ``{"unreadable": True}``.

        Example:
            >>> RunLock.read(store)
            {'host': 'gpu-1', 'pid': 4242, 'since': 1764700000.0, ...}
        """
        raw = store.get_bytes_or_none(key)
        if raw is None:
            return None
        record = _parse(raw)
        return {"unreadable": True} if record is None else _public(record)

    def _get_backend(self) -> _Backend:
        if self._backend is not None:
            return self._backend
        atomic_possible = self.store.is_local or (
            self.store.protocol in ("s3", "s3a") and _s3_conditional_supported(self.store, self.key)
        )
        if self.strategy == "atomic" and not atomic_possible:
            raise InterleafError(f"store {self.store.uri} cannot do atomic conditional writes; use strategy='settle'")
        if self.strategy == "settle" or not atomic_possible:
            self._backend = _Backend(self.store, self.key)
        elif self.store.is_local:
            self._backend = _LocalBackend(self.store, self.key)
        else:
            self._backend = _S3Backend(self.store, self.key)
        return self._backend

    def _record(self, now: float) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "token": self._token, "host": _host(), "pid": os.getpid(), "since": now, "renewed_at": now,
            "lease_s": self.lease_s, "purpose": self.purpose,
        }
        if self.owner is not None:
            rec["owner"] = self.owner
        if _pid_ns() is not None:
            rec["pid_ns"] = _pid_ns()
        return rec

    @staticmethod
    def _encode(record: dict[str, Any]) -> bytes:
        return json.dumps(record, sort_keys=True).encode("utf-8")

    def _settled(self, backend: _Backend) -> _Seen | None:
        """After a non-atomic write: wait, read back; our record if it is still there."""
        time.sleep(self.settle_s)
        seen = backend.read()
        if seen is not None and seen.record is not None and seen.record.get("token") == self._token:
            return seen
        return None

    # -- acquire ------------------------------------------------------------------------------
    def acquire(self, token: str | None = None, *, force: bool = False) -> str | None:
        """Take the lock, or attach when the live holder has ``token``; returns the takeover warning.

        Raises :class:`RunLockedError` when another live writer holds it. ``force=True`` takes
        it over even from a live holder (only for a user who knows it is gone). Returns None
        when nobody was displaced, else the WARNING text that was logged (also :attr:`takeover`).

        Example:
            >>> warning = RunLock(store).acquire()
            >>> if warning:
            ...     print(warning)       # "taking over the lock of run ...: pid 77 is no longer running"
        """
        with self._mutex:
            if self._held or self._attached:
                return self.takeover
            if token is not None:
                self._token = token
            self.takeover = None
            self.lost = None
            backend = self._get_backend()
            for _attempt in range(30):
                with backend.guard():
                    outcome = self._try_acquire(backend, force)
                if outcome is not _RETRY:
                    return outcome  # type: ignore[return-value]
                # Someone changed the object between our read and our write: look again.
                time.sleep(random.uniform(0.01, 0.05))
            seen = backend.read()
            holder = seen.record if seen is not None else None
            raise RunLockedError(
                f"run {self.store.uri} is contended: the lock at {self.location} kept changing while "
                f"this process tried to take it; last holder: "
                f"{describe_holder(holder) if holder else 'none'}. Try again.",
                _public(holder) if holder else None, self.location,
            )

    def attach(self, token: str) -> str | None:
        """Join the writer whose token is ``token`` (a child process or shard of it).

        A live holder with that token is accepted (nothing is written; the parent keeps
        renewing and releasing). If nobody holds the lock, or its holder is stale, this process
        takes it with that token. A different live holder raises :class:`RunLockedError`.

        Example:
            >>> RunLock(store).attach(os.environ["INTERLEAF_LOCK_TOKEN"])
        """
        return self.acquire(token=token)

    def _try_acquire(self, backend: _Backend, force: bool) -> object:
        seen = backend.read()
        now = time.time()
        mine = self._record(now)
        if seen is None:
            created = backend.create(self._encode(mine))
            if created is None:
                return _RETRY
            if not backend.atomic_create:
                created = self._settled(backend)
                if created is None:
                    return _RETRY  # another writer's record won; the next read names it
            self._become_holder(created)
            return None
        record = seen.record
        verdict = _judge(record, now)
        if record is not None and record["token"] == self._token and not verdict.stale:
            self._attached = True
            self._seen = seen
            log.info("attached to the lock of run %s held by %s", self.store.uri, describe_holder(record, now))
            return None
        if not verdict.stale and not force:
            raise RunLockedError(self._locked_message(record, verdict, now), _public(record or {}), self.location)
        reason = "forced by the caller" if not verdict.stale else verdict.reason
        who = describe_holder(record, now) if record is not None else "an unknown holder"
        message = f"taking over the lock of run {_strip_userinfo(self.store.uri)} from {who}: {reason}"
        replaced = backend.replace(seen, self._encode(mine))
        if replaced is None:
            return _RETRY  # another taker won the race; the next read names it
        if not backend.atomic_replace:
            replaced = self._settled(backend)
            if replaced is None:
                return _RETRY
        log.warning("%s", message)
        self.takeover = message
        self._become_holder(replaced)
        return message

    def _become_holder(self, seen: _Seen) -> None:
        self._seen = seen
        self._held = True
        self._attached = False

    def _locked_message(self, record: dict[str, Any] | None, verdict: _Verdict, now: float) -> str:
        assert record is not None
        head = (
            f"run {_strip_userinfo(self.store.uri)} already has a writer: {describe_holder(record, now)}. "
            "Only one process may write a run at a time."
        )
        if verdict.same_host:
            pid = record["pid"]
            return (
                f"{head} Process {pid} is still running on this host: wait for it to finish, or stop it "
                f"(kill {pid}); once it is gone the lock is taken over automatically. "
                f"To take over while it runs anyway, delete {self.location} (two writers corrupt the run)."
            )
        return (
            f"{head} Wait for it to finish. If that process is really gone (its host crashed or lost "
            f"the network), the lock is taken over automatically when its lease runs out, in "
            f"{_ago(verdict.expires_in or 0.0)}; to take it over now, delete {self.location}."
        )

    # -- renew / release ----------------------------------------------------------------------
    def _mark_lost(self, reason: str) -> RunLockLostError:
        self.lost = reason
        self._held = False
        self._attached = False
        log.error("%s", reason)
        return RunLockLostError(reason)

    def renew(self) -> None:
        """Refresh ``renewed_at`` (holder) or check the parent's record is still there (attached).

        Raises :class:`RunLockLostError` when the record is no longer ours.

        Example:
            >>> lock.renew()     # the background renewal of ``with lock:`` does this every lease_s / 3
        """
        with self._mutex:
            if self.lost is not None:
                raise RunLockLostError(self.lost)
            if not (self._held or self._attached):
                raise RunLockLostError(f"the lock of run {self.store.uri} is not held by this process")
            backend = self._get_backend()
            with backend.guard():
                seen = backend.read()
                record = seen.record if seen is not None else None
                if record is None or record["token"] != self._token:
                    now_holder = describe_holder(record) if record is not None else "nobody"
                    raise self._mark_lost(
                        f"lost the lock of run {_strip_userinfo(self.store.uri)}: it is now held by {now_holder}; "
                        "stop writing (another writer may be active)"
                    )
                if self._attached:
                    return
                assert seen is not None
                updated = dict(record, renewed_at=time.time())
                replaced = backend.replace(seen, self._encode(updated))
                if replaced is None or not backend.atomic_replace:
                    # A retried write of our own, or a racing taker: read back and see who is there.
                    if backend.atomic_replace:
                        replaced = backend.read()
                    else:
                        replaced = self._settled(backend)
                    if replaced is None or replaced.record is None or replaced.record["token"] != self._token:
                        raise self._mark_lost(
                            f"lost the lock of run {_strip_userinfo(self.store.uri)} while renewing it"
                        )
                self._seen = replaced

    def release(self) -> bool:
        """Delete the lock if this object still holds it; True if it deleted it.

        A non-holder, an attached child or a holder that was taken over deletes nothing.

        Example:
            >>> lock.release()
            True
        """
        self._stop_renewer()
        with self._mutex:
            if self._attached:
                self._attached = False
                return False
            if not self._held:
                return False
            self._held = False
            backend = self._get_backend()
            with backend.guard():
                seen = backend.read()
                if seen is None or seen.record is None or seen.record["token"] != self._token:
                    log.warning("lock of run %s was no longer ours at release; left it alone", self.store.uri)
                    return False
                return backend.delete(seen)

    def check(self) -> None:
        """Raise :class:`RunLockLostError` if the lock was lost; call it before important writes.

        Example:
            >>> lock.check()
        """
        if self.lost is not None:
            raise RunLockLostError(self.lost)

    # -- background renewal -------------------------------------------------------------------
    def start_renewing(self, on_lost: Callable[[str], None] | None = None) -> None:
        """Renew every ``lease_s / 3`` on a daemon thread until :meth:`release` (or stop).

        A thread, not an asyncio task: a long synchronous step (a diffusers call on CPU) that
        blocks the event loop must not let the lease run out. ``on_lost`` is called (on the
        thread) with the reason if the lock is lost.

        Example:
            >>> lock.acquire(); lock.start_renewing()
        """
        with self._mutex:
            if self._renewer is not None and self._renewer.is_alive():
                return
            self._stop = threading.Event()
            self._on_lost = on_lost
            self._renewer = threading.Thread(
                target=self._renew_loop, args=(self._stop,), name="interleaf-lock-renew", daemon=True
            )
            self._renewer.start()

    def _renew_loop(self, stop: threading.Event) -> None:
        interval = self.lease_s / 3.0
        last_ok = time.monotonic()
        while not stop.wait(interval):
            try:
                self.renew()
                last_ok = time.monotonic()
                continue
            except RunLockLostError as exc:
                reason = str(exc)
            except Exception as exc:
                if time.monotonic() - last_ok <= self.lease_s:
                    log.warning("could not renew the lock of run %s (will retry): %s", self.store.uri, exc)
                    continue
                # Past the lease, other hosts may already have taken over: treat it as lost.
                reason = str(self._mark_lost(
                    f"could not renew the lock of run {_strip_userinfo(self.store.uri)} for "
                    f"{_ago(time.monotonic() - last_ok)} (lease {self.lease_s:g} s): {exc}"
                ))
            if self._on_lost is not None:
                self._on_lost(reason)
            return

    def _stop_renewer(self) -> None:
        thread = self._renewer
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join()
        self._renewer = None

    def __enter__(self) -> RunLock:
        self.acquire()
        self.start_renewing()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop_renewer()
        lost = self.lost
        self.release()
        if lost is not None and exc is None:
            raise RunLockLostError(lost)

    def holding(self, token: str | None = None, *, cancel_on_loss: bool = True) -> _Holding:
        """Async context: acquire, renew in the background, release; cancels the body if lost.

        When the renewal finds the lock gone, the task running the body is cancelled and the
        block raises :class:`RunLockLostError` (with ``cancel_on_loss=False`` it only logs and
        :meth:`check` raises).

        Example:
            >>> async with RunLock(store, lease_s=30).holding() as lock:
            ...     await run_all_seeds()
        """
        return _Holding(self, token, cancel_on_loss)


class _Holding:
    def __init__(self, lock: RunLock, token: str | None, cancel_on_loss: bool):
        self.lock = lock
        self.token = token
        self.cancel_on_loss = cancel_on_loss
        self._task: asyncio.Task[Any] | None = None
        self._body_running = False
        self._cancelled = False

    async def __aenter__(self) -> RunLock:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(io_executor(), functools.partial(self.lock.acquire, self.token))
        self._task = asyncio.current_task()

        def cancel_body() -> None:
            # Runs on the loop; only while the body runs, so __aexit__ is never interrupted.
            if self._body_running and self._task is not None:
                self._cancelled = True
                self._task.cancel()

        def on_lost(_reason: str) -> None:
            if self.cancel_on_loss:
                loop.call_soon_threadsafe(cancel_body)

        self.lock.start_renewing(on_lost)
        self._body_running = True
        return self.lock

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self._body_running = False
        ours = self._cancelled and self._task is not None
        if ours:
            assert self._task is not None
            self._task.uncancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(io_executor(), self.lock.release)
        if ours and self._task is not None and self._task.cancelling() == 0:
            raise RunLockLostError(self.lock.lost or "lost the run lock") from None
        return False
