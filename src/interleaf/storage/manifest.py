"""The run manifest (``manifest.json``) and the per-dialogue status index (``status/<seed>.json``).

The manifest says what a run is: its id, the graph (by a hash of the parsed spec, so
comments and formatting may change), the package version, the seeds file hash and the
parameters, plus counts updated as invocations finish. A resumed run with a different
graph is refused (:class:`~interleaf.errors.RunMismatchError`) unless a new run is forced.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import RunMismatchError
from interleaf.graphs.spec import GraphSpec
from interleaf.storage.store import ObjectStore, safe_segment

MANIFEST_KEY = "manifest.json"
GRAPH_KEY = "graph.yaml"
STATUS_PREFIX = "status"
DIALOGUE_PREFIX = "dialogues"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interleaf")
    except PackageNotFoundError:
        return "0+unknown"


def graph_fingerprint(spec: GraphSpec) -> str:
    """SHA-256 of the spec's canonical JSON: equal for the same graph however the YAML is laid out."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class Invocation(BaseModel):
    """One ``interleaf run`` (or flow) over the run: when, with which seeds, and what it did."""

    model_config = ConfigDict(extra="allow")

    started_at: float
    finished_at: float | None = None
    seeds_hash: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)


class RunManifest(BaseModel):
    """What ``manifest.json`` holds."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    graph_name: str
    graph_hash: str
    package_version: str
    seeds_path: str | None = None
    seeds_hash: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    counts: dict[str, int] = Field(default_factory=dict)
    invocations: list[Invocation] = Field(default_factory=list)

    def save(self, store: ObjectStore) -> None:
        self.updated_at = time.time()
        store.put_json(MANIFEST_KEY, self.model_dump(mode="json"))

    @classmethod
    def load(cls, store: ObjectStore) -> RunManifest | None:
        raw = store.get_json_or_none(MANIFEST_KEY)
        return None if raw is None else cls.model_validate(raw)

    def check_graph(self, graph_hash: str, graph_name: str, where: str) -> None:
        if graph_hash != self.graph_hash:
            raise RunMismatchError(
                f"{where} holds run {self.run_id} of graph {self.graph_name!r} (hash {self.graph_hash[:12]}), "
                f"but this graph {graph_name!r} has hash {graph_hash[:12]}: use another --out/--store, "
                "or pass --force-new-run to discard the old run's dialogues and start over"
            )


StatusName = Literal["done", "failed"]


class DialogueStatus(BaseModel):
    """``status/<seed>.json``: how one dialogue ended."""

    model_config = ConfigDict(extra="allow")

    seed_id: str
    status: StatusName
    error: str | None = None
    reason: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0
    run_id: str | None = None
    finished_at: float = Field(default_factory=time.time)


def status_key(seed_id: str) -> str:
    return f"{STATUS_PREFIX}/{safe_segment(seed_id)}.json"


def dialogue_key(seed_id: str) -> str:
    return f"{DIALOGUE_PREFIX}/{safe_segment(seed_id)}.json"


def count_statuses(store: ObjectStore) -> dict[str, int]:
    """``{"done": n, "failed": m}`` over the status index (reads every status object)."""
    from interleaf.storage.store import io_executor

    keys = [k for k in store.list(STATUS_PREFIX) if k.endswith(".json")]
    counts = {"done": 0, "failed": 0}
    for raw in io_executor().map(store.get_json_or_none, keys):
        if isinstance(raw, dict) and raw.get("status") in counts:
            counts[raw["status"]] += 1
    return counts
