"""A writer of the checkpoint layout of interleaf <= 0.2, so tests can resume runs made by it.

Only what a run wrote: ``cp/<id>`` records (JSON, base64 payloads), one ``channels/<channel>/
<version>`` object per new value (a JSON header line, then the payload) and one
``writes/<checkpoint>/<task>`` object per task. The current saver reads this layout and never
writes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver, get_checkpoint_metadata

from interleaf.storage.checkpoint import ObjectStoreSaver
from interleaf.storage.store import ObjectStore, safe_segment


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class LegacyLayoutSaver(BaseCheckpointSaver[str]):
    """Writes checkpoints as interleaf 0.2 did (sync API only; reads go through the current saver)."""

    def __init__(self, store: ObjectStore, prefix: str = "checkpoints"):
        super().__init__()
        self.store = store
        self.prefix = prefix
        self._reader = ObjectStoreSaver(store, prefix)

    def _ns_dir(self, thread_id: str, ns: str) -> str:
        return f"{self.prefix}/{safe_segment(thread_id)}/{safe_segment('ns:' + ns)}"

    def get_tuple(self, config: Any) -> Any:
        return self._reader.get_tuple(config)

    def list(self, config: Any, **kwargs: Any) -> Any:
        return self._reader.list(config, **kwargs)

    def get_next_version(self, current: Any, channel: None) -> str:
        return self._reader.get_next_version(current, channel)

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        base = self._ns_dir(thread_id, ns)
        body = dict(checkpoint)
        values = body.pop("channel_values", {})
        for channel, version in new_versions.items():
            kind, payload = self.serde.dumps_typed(values[channel]) if channel in values else ("empty", b"")
            self.store.put_bytes(f"{base}/channels/{safe_segment(channel)}/{safe_segment(str(version))}",
                                 json.dumps({"type": kind}).encode() + b"\n" + payload)
        kind, payload = self.serde.dumps_typed(body)
        meta_kind, meta = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        record = {"v": 1, "thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"],
                  "parent_checkpoint_id": conf.get("checkpoint_id"), "checkpoint": [kind, _b64(payload)],
                  "metadata": [meta_kind, _b64(meta)]}
        self.store.put_bytes(f"{base}/cp/{safe_segment(checkpoint['id'])}", json.dumps(record).encode())
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        conf = config["configurable"]
        base = self._ns_dir(str(conf["thread_id"]), conf.get("checkpoint_ns", ""))
        stored = {}
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            kind, payload = self.serde.dumps_typed(value)
            stored[str(idx)] = {"channel": channel, "type": kind, "payload": _b64(payload), "idx": idx,
                                "task_path": task_path}
        key = f"{base}/writes/{safe_segment(conf['checkpoint_id'])}/{safe_segment(str(task_id))}"
        self.store.put_bytes(key, json.dumps({"v": 1, "task_id": task_id, "writes": stored}).encode())
