"""LangGraph checkpoints kept in the run's :class:`~interleaf.storage.store.ObjectStore`.

On a local store each thread is one append-only file (:mod:`interleaf.storage.checkpoint_log`);
on an object store (S3), which cannot append, each checkpoint is an object. A thread keeps the
layout it was started in, so runs started before the log layout resume unchanged.

Object layout under ``<prefix>/<thread>/<namespace>/`` (each part a :func:`safe_segment`)::

    c.<checkpoint_id>             one checkpoint: ids, parent, metadata, the channel values that
                                  are new in it, and which checkpoint holds each older value
    w.<checkpoint_id>.<task_id>   all pending writes of one task

Two objects a step (a task's writes, then the checkpoint), in one folder a thread, instead of
one object per channel value: on the single-step graph that is 9 objects a seed where one per
value made 23 in 14 folders, and the object count is what the checkpointer's CPU follows.

Each object is published atomically and carries a CRC-32 of its body. Local checkpoint
objects are not fsynced one by one: after a crashed *process* the kernel still has all of
them; after a crashed *machine* the newest may be missing or torn, which the reader sees
(bad checksum, or a value it points to is gone) and it falls back to the newest intact
checkpoint, so a dialogue redoes its last steps rather than resuming from half a state.
Statuses and dialogues, what a run reports, stay fsynced (:mod:`interleaf.run`).

Checkpoints of the previous layout (``cp/``, ``channels/``, ``writes/``; interleaf <= 0.2)
are still read, so a run started before an upgrade resumes where it stopped; new
checkpoints are always written in this layout.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import random
import threading
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    SerializerProtocol,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)

from interleaf.storage.checkpoint_log import LOG_SUFFIX, LogFiles, ThreadLog
from interleaf.storage.store import ObjectStore, io_executor, safe_segment

T = TypeVar("T")
log = logging.getLogger(__name__)

_FORMAT = 2
_MAGIC = b"ILCK2 "
_RECORD = "c."
_WRITES = "w."
#: Where a value written in the previous layout lives (``channels/<channel>/<version>``).
_LEGACY = ""
#: Checkpoints whose value locations are kept in memory for the next step's put.
_LOCATION_CACHE = 4096
#: Threads whose layout (log or objects) is remembered.
_LAYOUT_CACHE = 65536

Typed = tuple[str, bytes]
#: channel -> (version, id of the checkpoint whose object holds that version's value)
Locations = dict[str, tuple[Any, str]]


def _pack(body: dict[str, Any]) -> bytes:
    payload = ormsgpack.packb(body)
    return _MAGIC + b"%08x\n" % zlib.crc32(payload) + payload


def _unpack(data: bytes | None) -> dict[str, Any] | None:
    """The body of an object, or None when it is missing, torn or not ours."""
    if data is None or not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 9:
        return None
    head = len(_MAGIC)
    payload = data[head + 9:]
    try:
        if int(data[head:head + 8], 16) != zlib.crc32(payload):
            return None
        body = ormsgpack.unpackb(payload)
    except (ValueError, ormsgpack.MsgpackDecodeError):
        return None
    return body if isinstance(body, dict) and body.get("v") == _FORMAT else None


@dataclass
class _Stored:
    """One checkpoint as stored, in either layout."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: Typed
    metadata: Typed
    #: channel -> (version, type, payload): values written with this checkpoint.
    values: dict[str, tuple[Any, str, bytes]] = field(default_factory=dict)
    #: None for the previous layout, whose values are objects of their own.
    located: Locations | None = None

    def encode(self) -> bytes:
        return _pack({
            "v": _FORMAT,
            "thread_id": self.thread_id,
            "checkpoint_ns": self.checkpoint_ns,
            "checkpoint_id": self.checkpoint_id,
            "parent_checkpoint_id": self.parent_id,
            "checkpoint": list(self.checkpoint),
            "metadata": list(self.metadata),
            "values": {c: list(v) for c, v in self.values.items()},
            "located": {c: list(v) for c, v in (self.located or {}).items()},
        })

    @classmethod
    def decode(cls, data: bytes | None) -> _Stored | None:
        raw = _unpack(data)
        if raw is None:
            return None
        return cls(
            thread_id=raw["thread_id"],
            checkpoint_ns=raw["checkpoint_ns"],
            checkpoint_id=raw["checkpoint_id"],
            parent_id=raw["parent_checkpoint_id"],
            checkpoint=(raw["checkpoint"][0], raw["checkpoint"][1]),
            metadata=(raw["metadata"][0], raw["metadata"][1]),
            values={c: (v[0], v[1], v[2]) for c, v in raw["values"].items()},
            located={c: (v[0], v[1]) for c, v in raw["located"].items()},
        )

    @classmethod
    def decode_legacy(cls, data: bytes | None) -> _Stored | None:
        if data is None:
            return None
        try:
            raw = json.loads(data)
            return cls(
                thread_id=raw["thread_id"],
                checkpoint_ns=raw["checkpoint_ns"],
                checkpoint_id=raw["checkpoint_id"],
                parent_id=raw["parent_checkpoint_id"],
                checkpoint=(raw["checkpoint"][0], base64.b64decode(raw["checkpoint"][1])),
                metadata=(raw["metadata"][0], base64.b64decode(raw["metadata"][1])),
            )
        except (ValueError, KeyError, TypeError):
            return None


class _Unreadable(Exception):
    """A checkpoint points at a value whose object is gone or torn (a machine crash)."""


class ObjectStoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer (sync and async) over an :class:`ObjectStore`.

    Thread ids are free-form; the runner uses ``"<run_id>:<seed id>"``. Works on any
    store (local folders, S3); transient store errors are retried by the store. On a
    local store the async API does its (small, unsynced) file operations on the calling
    event loop: handing each to a thread costs more CPU than the operation itself.

    ``layout`` says how *new* threads are written: ``"auto"`` (a log a thread on a local
    store, objects elsewhere), ``"log"`` (local stores only) or ``"objects"``. Threads
    already stored are read and continued in the layout they have.

    Example:
        >>> saver = ObjectStoreSaver(ObjectStore("/tmp/run"), "checkpoints")
        >>> app = builder.compile(checkpointer=saver)  # doctest: +SKIP
    """

    def __init__(self, store: ObjectStore, prefix: str = "checkpoints", *, serde: SerializerProtocol | None = None,
                 layout: Literal["auto", "log", "objects"] = "auto"):
        super().__init__(serde=serde)
        if layout not in ("auto", "log", "objects"):
            raise ValueError(f"layout must be 'auto', 'log' or 'objects', not {layout!r}")
        if layout == "log" and not store.is_local:
            raise ValueError(f"the log layout needs a local store; {store.uri} cannot append")
        self.store = store
        self.prefix = prefix.strip("/")
        self._logs = LogFiles(store.path(self.prefix)) if store.is_local else None
        self._new_in_log = self._logs is not None and layout != "objects"
        self._layouts: OrderedDict[str, bool] = OrderedDict()
        # Remote stores: the async API's calls run here; per-object fetches use the store's pool.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="interleaf-ckpt")
        self._inline = store.is_local
        self._located: OrderedDict[tuple[str, str, str], Locations] = OrderedDict()
        self._located_lock = threading.Lock()

    # -- keys -----------------------------------------------------------------------------
    def _thread_dir(self, thread_id: str) -> str:
        return f"{self.prefix}/{safe_segment(str(thread_id))}"

    def _ns_dir(self, thread_id: str, ns: str) -> str:
        # The empty root namespace still needs a segment of its own.
        return f"{self._thread_dir(thread_id)}/{safe_segment('ns:' + ns)}"

    def _record_key(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self._ns_dir(thread_id, ns)}/{_RECORD}{safe_segment(checkpoint_id)}"

    def _writes_key(self, thread_id: str, ns: str, checkpoint_id: str, task_id: str) -> str:
        return f"{self._ns_dir(thread_id, ns)}/{_WRITES}{safe_segment(checkpoint_id)}.{safe_segment(task_id)}"

    def _legacy_record_key(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self._ns_dir(thread_id, ns)}/cp/{safe_segment(checkpoint_id)}"

    def _legacy_channel_key(self, thread_id: str, ns: str, channel: str, version: Any) -> str:
        return f"{self._ns_dir(thread_id, ns)}/channels/{safe_segment(channel)}/{safe_segment(str(version))}"

    def _in_log(self, thread_id: str) -> bool:
        """Whether ``thread_id`` is (or, new, will be) a log rather than objects."""
        if self._logs is None:
            return False
        with self._located_lock:
            known = self._layouts.get(thread_id)
        if known is not None:
            return known
        if self._logs.exists(thread_id):
            in_log = True
        elif os.path.isdir(self.store.path(self._thread_dir(thread_id))):
            in_log = False
        else:
            in_log = self._new_in_log
        with self._located_lock:
            self._layouts[thread_id] = in_log
            while len(self._layouts) > _LAYOUT_CACHE:
                self._layouts.popitem(last=False)
        return in_log

    # -- reading a log --------------------------------------------------------------------
    def _log_tuple(self, thread_id: str, tlog: ThreadLog, body: dict[str, Any]) -> CheckpointTuple:
        ns = body["ns"]
        checkpoint: Checkpoint = self.serde.loads_typed(tuple(body["checkpoint"]))
        values: dict[str, Any] = {}
        for channel, version in sorted(checkpoint.get("channel_versions", {}).items()):
            typed = tlog.value(ns, body, channel, version)
            if typed is not None:
                values[channel] = self.serde.loads_typed(typed)
        found: dict[tuple[str, int], tuple[tuple[str, str, int], PendingWrite]] = {}
        for task in tlog.writes.get((ns, body["id"]), []):
            for idx, channel, kind, payload in task["writes"]:
                key = (task["task"], idx)
                if idx >= 0 and key in found:
                    continue  # a regular write replayed: the first one stands; special writes replace
                found[key] = (writes_sort_key(task["path"], task["task"], idx),
                              (task["task"], channel, self.serde.loads_typed((kind, payload))))

        def config_of(checkpoint_id: str) -> RunnableConfig:
            return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}

        return CheckpointTuple(
            config=config_of(body["id"]),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(tuple(body["metadata"])),
            parent_config=config_of(body["parent"]) if body.get("parent") else None,
            pending_writes=[w for _, w in sorted(found.values(), key=lambda t: t[0])],
        )

    def _log_get_tuple(self, thread_id: str, ns: str, checkpoint_id: str | None) -> CheckpointTuple | None:
        assert self._logs is not None
        tlog = self._logs.read(thread_id)
        if tlog is None:
            return None
        if checkpoint_id:
            body = tlog.checkpoints.get(ns, {}).get(checkpoint_id)
        else:
            newest = tlog.newest_first(ns)
            body = newest[0] if newest else None
        return None if body is None else self._log_tuple(thread_id, tlog, body)

    def _log_list(self, thread_id: str, want_ns: str | None, want_id: str | None, before_id: str | None,
                  filter: dict[str, Any] | None) -> Iterator[CheckpointTuple]:
        assert self._logs is not None
        tlog = self._logs.read(thread_id)
        if tlog is None:
            return
        namespaces = [want_ns] if want_ns is not None else list(tlog.checkpoints)
        bodies = sorted((b for ns in namespaces for b in tlog.checkpoints.get(ns, {}).values()),
                        key=lambda b: b["id"], reverse=True)
        for body in bodies:
            if (want_id and body["id"] != want_id) or (before_id and body["id"] >= before_id):
                continue
            if filter:
                metadata = self.serde.loads_typed(tuple(body["metadata"]))
                if not all(metadata.get(k) == v for k, v in filter.items()):
                    continue
            yield self._log_tuple(thread_id, tlog, body)

    # -- reading objects --------------------------------------------------------------------
    def _fetch_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) <= 1 or self.store.is_local:
            return [self.store.get_bytes_or_none(k) for k in keys]
        return list(io_executor().map(self.store.get_bytes_or_none, keys))

    def _load(self, key: str) -> _Stored | None:
        """The checkpoint stored under ``key`` (either layout), None when missing or torn."""
        data = self.store.get_bytes_or_none(key)
        if key.rsplit("/", 2)[-2] == "cp":  # the previous layout (namespace folders are never "cp")
            return _Stored.decode_legacy(data)
        stored = _Stored.decode(data)
        if stored is None and data is not None:
            log.warning("checkpoint object %s is torn (a machine crash?); the one before it is used", key)
        return stored

    def _load_id(self, thread_id: str, ns: str, checkpoint_id: str) -> _Stored | None:
        stored = self._load(self._record_key(thread_id, ns, checkpoint_id))
        if stored is None:
            stored = self._load(self._legacy_record_key(thread_id, ns, checkpoint_id))
        return stored

    def _records_in(self, thread_id: str, ns: str) -> list[tuple[str, str]]:
        """``(checkpoint_id, object key)`` of a namespace's checkpoints, newest first."""
        base = self._ns_dir(thread_id, ns)
        named: list[tuple[str, str]] = []
        names = self.store.list_dir(base)
        for name in names:
            if name.startswith(_RECORD):
                named.append((name[len(_RECORD):], f"{base}/{name}"))
        if "cp" in names:
            named += [(name, f"{base}/cp/{name}") for name in self.store.list_dir(f"{base}/cp")]
        out: list[tuple[str, str]] = []
        for segment, key in named:
            if "~" in segment:  # hashed segment: the real id is in the object
                stored = self._load(key)
                if stored is not None:
                    out.append((stored.checkpoint_id, key))
            else:
                out.append((segment, key))
        out.sort(key=lambda t: t[0], reverse=True)
        return out

    def _namespaces(self, thread_id: str) -> list[str]:
        """Namespaces of a thread (read from a record of each)."""
        out: list[str] = []
        for seg in self.store.list_dir(self._thread_dir(thread_id)):
            stored = self._first_record_at(f"{self._thread_dir(thread_id)}/{seg}")
            if stored is not None:
                out.append(stored.checkpoint_ns)
        return out

    def _threads(self) -> list[str]:
        # Thread folders are named by their (real) thread id's segment; logs say whose they are.
        out: list[str] = self._logs.threads() if self._logs is not None else []
        for seg in self.store.list_dir(self.prefix):
            if seg.endswith(LOG_SUFFIX):
                continue
            for ns_seg in self.store.list_dir(f"{self.prefix}/{seg}"):
                stored = self._first_record_at(f"{self.prefix}/{seg}/{ns_seg}")
                if stored is not None:
                    out.append(stored.thread_id)
                    break
        return list(dict.fromkeys(out))

    def _first_record_at(self, base: str) -> _Stored | None:
        names = self.store.list_dir(base)
        keys = [f"{base}/{n}" for n in names if n.startswith(_RECORD)]
        if "cp" in names:
            keys += [f"{base}/cp/{n}" for n in self.store.list_dir(f"{base}/cp")]
        for key in keys:
            stored = self._load(key)
            if stored is not None:
                return stored
        return None

    def _pending_writes(self, thread_id: str, ns: str, checkpoint_id: str) -> list[PendingWrite]:
        base = self._ns_dir(thread_id, ns)
        start = f"{_WRITES}{safe_segment(checkpoint_id)}."
        keys = [f"{base}/{n}" for n in self.store.list_dir(base) if n.startswith(start)]
        found: dict[tuple[str, int], tuple[tuple[str, str, int], PendingWrite]] = {}
        legacy = f"{base}/writes/{safe_segment(checkpoint_id)}"
        for data in self._fetch_many([f"{legacy}/{n}" for n in self.store.list_dir(legacy)]):
            if data is None:
                continue
            task = json.loads(data)
            for item in task["writes"].values():
                value = self.serde.loads_typed((item["type"], base64.b64decode(item["payload"])))
                sort = writes_sort_key(item.get("task_path", ""), task["task_id"], item["idx"])
                found[(task["task_id"], item["idx"])] = (sort, (task["task_id"], item["channel"], value))
        for data in self._fetch_many(keys):
            body = _unpack(data)
            if body is None or body["checkpoint_id"] != checkpoint_id:
                continue  # torn (the task runs again), or another id sharing the name's start
            for channel, kind, payload, idx, task_path in body["writes"].values():
                if (body["task_id"], idx) in found:
                    continue
                sort = writes_sort_key(task_path, body["task_id"], idx)
                found[(body["task_id"], idx)] = (sort, (body["task_id"], channel,
                                                        self.serde.loads_typed((kind, payload))))
        return [w for _, w in sorted(found.values(), key=lambda t: t[0])]

    def _value(self, stored: _Stored, channel: str, version: Any,
               others: dict[str, _Stored | None]) -> tuple[str, bytes] | None:
        """``(type, payload)`` of ``channel`` at ``version`` as ``stored`` sees it; None: empty."""
        where = (stored.located or {}).get(channel)
        if stored.located is None:  # previous layout: one object per value
            return self._legacy_value(stored, channel, version)
        if where is None or where[0] != version:
            return self._search_value(stored, channel, version)
        holder_id = where[1]
        if holder_id == _LEGACY:
            return self._legacy_value(stored, channel, version)
        if holder_id == stored.checkpoint_id:
            holder: _Stored | None = stored
        else:
            if holder_id not in others:
                others[holder_id] = self._load_id(stored.thread_id, stored.checkpoint_ns, holder_id)
            holder = others[holder_id]
        if holder is None:
            raise _Unreadable(f"checkpoint {stored.checkpoint_id} needs {channel!r} from {holder_id}, which is gone")
        value = holder.values.get(channel)
        if value is None or value[0] != version:
            return None  # the channel was emptied at that version
        return value[1], value[2]

    def _legacy_value(self, stored: _Stored, channel: str, version: Any) -> tuple[str, bytes] | None:
        data = self.store.get_bytes_or_none(
            self._legacy_channel_key(stored.thread_id, stored.checkpoint_ns, channel, version))
        if data is None:
            return None
        head, _, payload = data.partition(b"\n")
        kind = json.loads(head)["type"]
        return None if kind == "empty" else (kind, payload)

    def _search_value(self, stored: _Stored, channel: str, version: Any) -> tuple[str, bytes] | None:
        """A value whose checkpoint the record does not name (puts out of lineage order)."""
        for checkpoint_id, key in self._records_in(stored.thread_id, stored.checkpoint_ns):
            other = stored if checkpoint_id == stored.checkpoint_id else self._load(key)
            if other is None or other.located is None:
                continue
            value = other.values.get(channel)
            if value is not None and value[0] == version:
                return value[1], value[2]
        return self._legacy_value(stored, channel, version)

    def _tuple(self, stored: _Stored) -> CheckpointTuple:
        checkpoint: Checkpoint = self.serde.loads_typed(stored.checkpoint)
        versions = checkpoint.get("channel_versions", {})
        values: dict[str, Any] = {}
        others: dict[str, _Stored | None] = {}
        for channel in sorted(versions):
            typed = self._value(stored, channel, versions[channel], others)
            if typed is not None:
                values[channel] = self.serde.loads_typed(typed)
        config: RunnableConfig = {"configurable": {
            "thread_id": stored.thread_id,
            "checkpoint_ns": stored.checkpoint_ns,
            "checkpoint_id": stored.checkpoint_id,
        }}
        parent: RunnableConfig | None = None
        if stored.parent_id:
            parent = {"configurable": {
                "thread_id": stored.thread_id,
                "checkpoint_ns": stored.checkpoint_ns,
                "checkpoint_id": stored.parent_id,
            }}
        return CheckpointTuple(
            config=config,
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(stored.metadata),
            parent_config=parent,
            pending_writes=self._pending_writes(stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id),
        )

    def _readable_tuple(self, stored: _Stored) -> CheckpointTuple | None:
        try:
            return self._tuple(stored)
        except _Unreadable as exc:
            log.warning("%s; the one before it is used", exc)
            return None

    # -- value locations ----------------------------------------------------------------------
    def _remember(self, key: tuple[str, str, str], located: Locations) -> None:
        with self._located_lock:
            self._located[key] = located
            self._located.move_to_end(key)
            while len(self._located) > _LOCATION_CACHE:
                self._located.popitem(last=False)

    def _locations_of(self, thread_id: str, ns: str, checkpoint_id: str | None) -> Locations:
        """Where each value of checkpoint ``checkpoint_id`` lives (read once, then kept)."""
        if not checkpoint_id:
            return {}
        key = (thread_id, ns, checkpoint_id)
        with self._located_lock:
            cached = self._located.get(key)
        if cached is not None:
            return cached
        stored = self._load_id(thread_id, ns, checkpoint_id)
        if stored is None:
            return {}
        if stored.located is not None:
            located = stored.located
        else:
            versions = self.serde.loads_typed(stored.checkpoint).get("channel_versions", {})
            located = {c: (v, _LEGACY) for c, v in versions.items()}
        self._remember(key, located)
        return located

    # -- sync API ----------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's newest intact one), with values and writes."""
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if self._in_log(thread_id):
            return self._log_get_tuple(thread_id, ns, checkpoint_id)
        if checkpoint_id:
            stored = self._load_id(thread_id, ns, checkpoint_id)
            return None if stored is None else self._readable_tuple(stored)
        for _, key in self._records_in(thread_id, ns):
            stored = self._load(key)
            found = None if stored is None else self._readable_tuple(stored)
            if found is not None:
                return found
        return None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, filtered by thread/namespace/id, metadata, ``before`` and ``limit``."""
        conf = (config or {}).get("configurable", {})
        threads = [str(conf["thread_id"])] if conf.get("thread_id") is not None else self._threads()
        want_ns = conf.get("checkpoint_ns")
        want_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        remaining = limit
        for thread_id in threads:
            if remaining is not None and remaining <= 0:
                return
            if self._in_log(thread_id):
                found = self._log_list(thread_id, want_ns, want_id, before_id, filter)
            else:
                found = self._objects_list(thread_id, want_ns, want_id, before_id, filter)
            for item in found:
                if remaining is not None:
                    if remaining <= 0:
                        return
                    remaining -= 1
                yield item

    def _objects_list(self, thread_id: str, want_ns: str | None, want_id: str | None, before_id: str | None,
                      filter: dict[str, Any] | None) -> Iterator[CheckpointTuple]:
        namespaces = [want_ns] if want_ns is not None else self._namespaces(thread_id)
        candidates = [(cid, key) for ns in namespaces for cid, key in self._records_in(thread_id, ns)]
        candidates.sort(key=lambda t: t[0], reverse=True)
        for cid, key in candidates:
            if want_id and cid != want_id:
                continue
            if before_id and cid >= before_id:
                continue
            stored = self._load(key)
            if stored is None:
                continue
            if filter:
                metadata = self.serde.loads_typed(stored.metadata)
                if not all(metadata.get(k) == v for k, v in filter.items()):
                    continue
            item = self._readable_tuple(stored)
            if item is not None:
                yield item

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Publish the checkpoint with its new channel values, as one frame or object."""
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = checkpoint["id"]
        body = dict(checkpoint)
        values: dict[str, Any] = body.pop("channel_values", {})  # type: ignore[assignment]
        inline: dict[str, tuple[Any, str, bytes]] = {}
        for channel, version in new_versions.items():
            if channel in values:
                kind, payload = self.serde.dumps_typed(values[channel])
                inline[channel] = (version, kind, payload)
        saved: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                                  "checkpoint_id": checkpoint_id}}
        if self._in_log(thread_id):
            assert self._logs is not None
            self._logs.append(thread_id, [{
                "k": "c", "ns": ns, "id": checkpoint_id, "parent": conf.get("checkpoint_id"),
                "checkpoint": list(self.serde.dumps_typed(body)),
                "metadata": list(self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))),
                "values": {c: list(v) for c, v in inline.items()},
            }])
            return saved
        parent_located = self._locations_of(thread_id, ns, conf.get("checkpoint_id"))
        located: Locations = {}
        for channel, version in checkpoint.get("channel_versions", {}).items():
            if channel in new_versions:
                located[channel] = (new_versions[channel], checkpoint_id)
            elif channel in parent_located and parent_located[channel][0] == version:
                located[channel] = parent_located[channel]
            # else: not in this lineage; the reader searches the namespace for it
        stored = _Stored(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint_id,
            parent_id=conf.get("checkpoint_id"),
            checkpoint=self.serde.dumps_typed(body),
            metadata=self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
            values=inline,
            located=located,
        )
        self.store.put_bytes(self._record_key(thread_id, ns, checkpoint_id), stored.encode(), durable=False)
        self._remember((thread_id, ns, checkpoint_id), located)
        return saved

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes as one frame or object, so a crash never leaves half of a task's writes.

        A regular write already stored is kept (replays are idempotent); special writes
        (errors, interrupts) replace earlier ones.
        """
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = str(conf["checkpoint_id"])
        if self._in_log(thread_id):
            # Appended as they come; the reader keeps the first of each regular write.
            assert self._logs is not None
            items = []
            for i, (channel, value) in enumerate(writes):
                kind, payload = self.serde.dumps_typed(value)
                items.append([WRITES_IDX_MAP.get(channel, i), channel, kind, payload])
            self._logs.append(thread_id, [{"k": "w", "ns": ns, "id": checkpoint_id, "task": str(task_id),
                                           "path": task_path, "writes": items}])
            return
        key = self._writes_key(thread_id, ns, checkpoint_id, str(task_id))
        existing = _unpack(self.store.get_bytes_or_none(key))
        stored: dict[str, Any] = existing["writes"] if existing is not None else {}
        changed = False
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            if idx >= 0 and str(idx) in stored:
                continue
            kind, payload = self.serde.dumps_typed(value)
            stored[str(idx)] = [channel, kind, payload, idx, task_path]
            changed = True
        if changed:
            body = {"v": _FORMAT, "task_id": task_id, "checkpoint_id": checkpoint_id, "writes": stored}
            self.store.put_bytes(key, _pack(body), durable=False)

    def delete_thread(self, thread_id: str) -> None:
        """Remove every checkpoint, channel value and write of ``thread_id``."""
        thread_id = str(thread_id)
        if self._logs is not None:
            self._logs.delete(thread_id)
        self.store.delete_prefix(self._thread_dir(thread_id))
        with self._located_lock:
            for key in [k for k in self._located if k[0] == thread_id]:
                del self._located[key]
            self._layouts.pop(thread_id, None)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Monotonic string versions with a random tail, so concurrent forks never share a key."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- async API --------------------------------------------------------------------------
    async def _offload(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._inline:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._offload(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # A listing may read a whole run's checkpoints: always off the event loop.
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(
            self._pool, lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._offload(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._offload(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._offload(self.delete_thread, thread_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        if self._logs is not None:
            self._logs.close()
