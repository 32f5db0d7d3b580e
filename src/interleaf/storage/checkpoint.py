"""LangGraph checkpoints kept in the run's :class:`~interleaf.storage.store.ObjectStore`.

Layout under ``<prefix>/<thread>/<namespace>/`` (each part a :func:`safe_segment`)::

    cp/<checkpoint_id>                    checkpoint record (JSON; ids, parent, metadata)
    channels/<channel>/<version>          one channel value (written once per new version)
    writes/<checkpoint_id>/<task>         all pending writes of one task (one object)

Channel values and writes are stored before the checkpoint record that refers to
them, and each object is published atomically, so a process killed at any moment
leaves either the previous checkpoint or the new one visible, never half of one.
The real thread id, namespace and checkpoint id are kept inside the objects, so
listing works even where a segment had to be hashed.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

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

from interleaf.storage.store import ObjectStore, io_executor, safe_segment

T = TypeVar("T")

_RECORD_VERSION = 1


def _frame(header: dict[str, Any], payload: bytes) -> bytes:
    return json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + payload


def _unframe(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = data.partition(b"\n")
    return json.loads(head), payload


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class _Record:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]

    def encode(self) -> bytes:
        return json.dumps({
            "v": _RECORD_VERSION,
            "thread_id": self.thread_id,
            "checkpoint_ns": self.checkpoint_ns,
            "checkpoint_id": self.checkpoint_id,
            "parent_checkpoint_id": self.parent_id,
            "checkpoint": [self.checkpoint[0], _b64(self.checkpoint[1])],
            "metadata": [self.metadata[0], _b64(self.metadata[1])],
        }, sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> _Record:
        raw = json.loads(data)
        return cls(
            thread_id=raw["thread_id"],
            checkpoint_ns=raw["checkpoint_ns"],
            checkpoint_id=raw["checkpoint_id"],
            parent_id=raw["parent_checkpoint_id"],
            checkpoint=(raw["checkpoint"][0], base64.b64decode(raw["checkpoint"][1])),
            metadata=(raw["metadata"][0], base64.b64decode(raw["metadata"][1])),
        )


class ObjectStoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer (sync and async) over an :class:`ObjectStore`.

    Thread ids are free-form; the runner uses ``"<run_id>:<seed id>"``. Works on any
    store (local folders, S3); transient store errors are retried by the store.
    """

    def __init__(self, store: ObjectStore, prefix: str = "checkpoints", *, serde: SerializerProtocol | None = None):
        super().__init__(serde=serde)
        self.store = store
        self.prefix = prefix.strip("/")
        # Outer pool for the async API; per-object fetches inside use the store's own pool.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="interleaf-ckpt")

    # -- keys -----------------------------------------------------------------------------
    def _thread_dir(self, thread_id: str) -> str:
        return f"{self.prefix}/{safe_segment(str(thread_id))}"

    def _ns_dir(self, thread_id: str, ns: str) -> str:
        # The empty root namespace still needs a segment of its own.
        return f"{self._thread_dir(thread_id)}/{safe_segment('ns:' + ns)}"

    def _record_key(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self._ns_dir(thread_id, ns)}/cp/{safe_segment(checkpoint_id)}"

    def _channel_key(self, thread_id: str, ns: str, channel: str, version: Any) -> str:
        return f"{self._ns_dir(thread_id, ns)}/channels/{safe_segment(channel)}/{safe_segment(str(version))}"

    def _writes_dir(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self._ns_dir(thread_id, ns)}/writes/{safe_segment(checkpoint_id)}"

    # -- helpers --------------------------------------------------------------------------
    def _fetch_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) <= 1:
            return [self.store.get_bytes_or_none(k) for k in keys]
        return list(io_executor().map(self.store.get_bytes_or_none, keys))

    def _put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # Local writes take a fraction of a millisecond: handing each to a pool thread costs more
        # than it saves. Remote stores (S3: tens of ms a request) write in parallel.
        if len(items) <= 1 or self.store.is_local:
            for k, v in items:
                self.store.put_bytes(k, v)
            return
        list(io_executor().map(lambda kv: self.store.put_bytes(*kv), items))

    def _records_in(self, thread_id: str, ns: str) -> list[tuple[str, str]]:
        """``(checkpoint_id, record key)`` of a namespace, newest first."""
        base = f"{self._ns_dir(thread_id, ns)}/cp"
        out: list[tuple[str, str]] = []
        for name in self.store.list_dir(base):
            key = f"{base}/{name}"
            if "~" in name:  # hashed segment: the real id is in the record
                data = self.store.get_bytes_or_none(key)
                if data is None:
                    continue
                out.append((_Record.decode(data).checkpoint_id, key))
            else:
                out.append((name, key))
        out.sort(key=lambda t: t[0], reverse=True)
        return out

    def _namespaces(self, thread_id: str) -> list[str]:
        """Namespaces of a thread (read from a record of each)."""
        out: list[str] = []
        for seg in self.store.list_dir(self._thread_dir(thread_id)):
            base = f"{self._thread_dir(thread_id)}/{seg}/cp"
            names = self.store.list_dir(base)
            if not names:
                continue
            data = self.store.get_bytes_or_none(f"{base}/{names[0]}")
            if data is not None:
                out.append(_Record.decode(data).checkpoint_ns)
        return out

    def _threads(self) -> list[str]:
        out: list[str] = []
        for seg in self.store.list_dir(self.prefix):
            base = f"{self.prefix}/{seg}"
            for ns_seg in self.store.list_dir(base):
                names = self.store.list_dir(f"{base}/{ns_seg}/cp")
                if names:
                    data = self.store.get_bytes_or_none(f"{base}/{ns_seg}/cp/{names[0]}")
                    if data is not None:
                        out.append(_Record.decode(data).thread_id)
                        break
        return out

    def _pending_writes(self, thread_id: str, ns: str, checkpoint_id: str) -> list[PendingWrite]:
        base = self._writes_dir(thread_id, ns, checkpoint_id)
        names = self.store.list_dir(base)
        found: list[tuple[tuple[str, str, int], PendingWrite]] = []
        for data in self._fetch_many([f"{base}/{n}" for n in names]):
            if data is None:
                continue
            task = json.loads(data)
            for item in task["writes"].values():
                value = self.serde.loads_typed((item["type"], base64.b64decode(item["payload"])))
                sort = writes_sort_key(item.get("task_path", ""), task["task_id"], item["idx"])
                found.append((sort, (task["task_id"], item["channel"], value)))
        found.sort(key=lambda t: t[0])
        return [w for _, w in found]

    def _tuple(self, record: _Record) -> CheckpointTuple:
        checkpoint: Checkpoint = self.serde.loads_typed(record.checkpoint)
        versions = checkpoint.get("channel_versions", {})
        channels = sorted(versions)
        keys = [self._channel_key(record.thread_id, record.checkpoint_ns, c, versions[c]) for c in channels]
        values: dict[str, Any] = {}
        for channel, data in zip(channels, self._fetch_many(keys), strict=True):
            if data is None:
                continue
            head, payload = _unframe(data)
            if head["type"] == "empty":
                continue
            values[channel] = self.serde.loads_typed((head["type"], payload))
        config: RunnableConfig = {"configurable": {
            "thread_id": record.thread_id,
            "checkpoint_ns": record.checkpoint_ns,
            "checkpoint_id": record.checkpoint_id,
        }}
        parent: RunnableConfig | None = None
        if record.parent_id:
            parent = {"configurable": {
                "thread_id": record.thread_id,
                "checkpoint_ns": record.checkpoint_ns,
                "checkpoint_id": record.parent_id,
            }}
        return CheckpointTuple(
            config=config,
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(record.metadata),
            parent_config=parent,
            pending_writes=self._pending_writes(record.thread_id, record.checkpoint_ns, record.checkpoint_id),
        )

    # -- sync API ----------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's latest), with values and pending writes."""
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            data = self.store.get_bytes_or_none(self._record_key(thread_id, ns, checkpoint_id))
        else:
            records = self._records_in(thread_id, ns)
            data = self.store.get_bytes_or_none(records[0][1]) if records else None
        return None if data is None else self._tuple(_Record.decode(data))

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
            namespaces = [want_ns] if want_ns is not None else self._namespaces(thread_id)
            candidates = [(cid, key) for ns in namespaces for cid, key in self._records_in(thread_id, ns)]
            candidates.sort(key=lambda t: t[0], reverse=True)
            for cid, key in candidates:
                if remaining is not None and remaining <= 0:
                    return
                if want_id and cid != want_id:
                    continue
                if before_id and cid >= before_id:
                    continue
                data = self.store.get_bytes_or_none(key)
                if data is None:
                    continue
                record = _Record.decode(data)
                if filter:
                    metadata = self.serde.loads_typed(record.metadata)
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                if remaining is not None:
                    remaining -= 1
                yield self._tuple(record)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store the new channel versions, then publish the checkpoint record."""
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        body = dict(checkpoint)
        values: dict[str, Any] = body.pop("channel_values", {})  # type: ignore[assignment]
        channel_objects: list[tuple[str, bytes]] = []
        for channel, version in new_versions.items():
            kind, payload = self.serde.dumps_typed(values[channel]) if channel in values else ("empty", b"")
            channel_objects.append(
                (self._channel_key(thread_id, ns, channel, version), _frame({"type": kind}, payload))
            )
        self._put_many(channel_objects)
        record = _Record(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_id=conf.get("checkpoint_id"),
            checkpoint=self.serde.dumps_typed(body),
            metadata=self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
        )
        self.store.put_bytes(self._record_key(thread_id, ns, checkpoint["id"]), record.encode())
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes as one object, so a crash never leaves half of a task's writes.

        A regular write already stored is kept (replays are idempotent); special writes
        (errors, interrupts) replace earlier ones.
        """
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        key = f"{self._writes_dir(thread_id, ns, conf['checkpoint_id'])}/{safe_segment(str(task_id))}"
        existing = self.store.get_bytes_or_none(key)
        stored: dict[str, Any] = json.loads(existing)["writes"] if existing is not None else {}
        changed = False
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            if idx >= 0 and str(idx) in stored:
                continue
            kind, payload = self.serde.dumps_typed(value)
            stored[str(idx)] = {"channel": channel, "type": kind, "payload": _b64(payload), "idx": idx,
                                "task_path": task_path}
            changed = True
        if changed:
            body = {"v": _RECORD_VERSION, "task_id": task_id, "writes": stored}
            self.store.put_bytes(key, json.dumps(body, sort_keys=True).encode("utf-8"))

    def delete_thread(self, thread_id: str) -> None:
        """Remove every checkpoint, channel value and write of ``thread_id``."""
        self.store.delete_prefix(self._thread_dir(str(thread_id)))

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
        items = await self._offload(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
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

