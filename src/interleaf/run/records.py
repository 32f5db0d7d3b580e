"""The run's records, typed: manifest, invocations, dialogue statuses and shard records.

Every record is read and written through these models (never as raw dicts), at the keys
:mod:`interleaf.run.layout` names.

- :class:`RunManifest` (``manifest.json``): what a run is (id, graph hash, seeds file and
  hash, parameters), the counts as of the last invocation, and every invocation.
- :class:`DialogueStatus` (``status/<seed>.json``): how one dialogue ended; no status
  means pending.
- :class:`ShardRecord` (``shards/<key>.json``): a Prefect shard's outcome.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interleaf.errors import Location, RunMismatchError
from interleaf.run import layout
from interleaf.run.layout import RunDataError
from interleaf.run.totals import RunTotals
from interleaf.state import Seed
from interleaf.storage.store import ObjectStore, io_executor


def package_version() -> str:
    """The installed interleaf version (``0+unknown`` from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interleaf")
    except PackageNotFoundError:
        return "0+unknown"


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 8 hex digits."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def seed_fingerprint(seed: Seed) -> str:
    """SHA-256 of a seed's content (prompt, images, situation, metadata): a changed seed changes it."""
    canonical = json.dumps(seed.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _parse(model: type[Any], raw: Any, store: ObjectStore, key: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RunDataError(f"not a {model.__name__}: {first['msg']}", Location(store.url(key)),
                           field=where or None) from None


class Invocation(BaseModel):
    """One ``interleaf run`` (or flow run) over the run: when, with which seeds, how it ended, what it did."""

    model_config = ConfigDict(extra="allow")

    started_at: float
    finished_at: float | None = None
    seeds_hash: str | None = None
    #: ``finished``, ``stopped`` (systemic failure), ``interrupted`` or ``crashed``.
    outcome: str = "finished"
    message: str | None = None
    host: str | None = None
    pid: int | None = None
    #: Worker processes the batch ran on (``interleaf run --workers``); 1: this process alone.
    processes: int = 1
    totals: RunTotals = Field(default_factory=RunTotals)


class RunManifest(BaseModel):
    """What ``manifest.json`` holds."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    graph_name: str
    graph_hash: str
    package_version: str = Field(default_factory=package_version)
    seeds_path: str | None = None
    seeds_hash: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    #: Seeds done/failed/pending and branch reasons as of the last invocation's end.
    counts: RunTotals = Field(default_factory=RunTotals)
    invocations: list[Invocation] = Field(default_factory=list)

    def save(self, store: ObjectStore) -> None:
        self.updated_at = time.time()
        store.put_json(layout.MANIFEST, self.model_dump(mode="json"))

    @classmethod
    def load(cls, store: ObjectStore) -> RunManifest | None:
        raw = store.get_json_or_none(layout.MANIFEST)
        return None if raw is None else _parse(cls, raw, store, layout.MANIFEST)

    def check_graph(self, graph_hash: str, graph_name: str, where: str) -> None:
        """Refuse to resume with another graph."""
        if graph_hash != self.graph_hash:
            raise RunMismatchError(
                f"{where} holds run {self.run_id} of graph {self.graph_name!r} (hash {self.graph_hash[:12]}), "
                f"but this graph {graph_name!r} has hash {graph_hash[:12]}: use another --out/--store, "
                "or pass --force-new-run to discard the old run's dialogues and start over"
            )

    def invocation_totals(self) -> RunTotals:
        """Calls, tokens and cost of every recorded invocation, added up."""
        return RunTotals.sum(inv.totals.calls_only() for inv in self.invocations)


StatusName = Literal["done", "failed"]


class DialogueStatus(BaseModel):
    """``status/<seed>.json``: how one dialogue ended, and what the invocation that ended it spent on it."""

    model_config = ConfigDict(extra="allow")

    seed_id: str
    status: StatusName
    reason: str | None = None
    error: str | None = None
    seed_hash: str | None = None
    run_id: str | None = None
    #: Complete dialogues (ends of the tree that reached the last turn alive).
    complete: int = 0
    totals: RunTotals = Field(default_factory=RunTotals)
    finished_at: float = Field(default_factory=time.time)

    def save(self, store: ObjectStore) -> None:
        store.put_json(*self.stored())

    async def asave(self, store: ObjectStore) -> None:
        await store.aput_json(*self.stored())

    def stored(self) -> tuple[str, Any]:
        """``(key, JSON value)`` as :meth:`save` writes it, for writing it along with other objects."""
        return layout.status_key(self.seed_id), self.model_dump(mode="json")

    @classmethod
    def load(cls, store: ObjectStore, seed_id: str) -> DialogueStatus | None:
        key = layout.status_key(seed_id)
        raw = store.get_json_or_none(key)
        return None if raw is None else _parse(cls, raw, store, key)

    @classmethod
    async def aload(cls, store: ObjectStore, seed_id: str) -> DialogueStatus | None:
        key = layout.status_key(seed_id)
        raw = await store.aget_json_or_none(key)
        return None if raw is None else _parse(cls, raw, store, key)


def read_statuses(store: ObjectStore) -> dict[str, DialogueStatus]:
    """Every dialogue status of the run, keyed by seed id (read in parallel)."""
    keys = [k for k in store.list(layout.STATUS_PREFIX) if k.endswith(".json")]

    def one(key: str) -> DialogueStatus | None:
        raw = store.get_json_or_none(key)
        return None if raw is None else _parse(DialogueStatus, raw, store, key)

    out: dict[str, DialogueStatus] = {}
    for status in io_executor().map(one, keys):
        if status is not None:
            out[status.seed_id] = status
    return out


def status_counts(statuses: Iterable[DialogueStatus], *, seeds: int | None = None) -> RunTotals:
    """Seeds done/failed (and pending, when the number of seeds is known) with reasons, from statuses."""
    totals = RunTotals()
    for status in statuses:
        totals.seeds += 1
        if status.status == "done":
            totals.done += 1
        else:
            totals.failed += 1
            reason = status.reason or "failed"
            totals.failed_reasons[reason] = totals.failed_reasons.get(reason, 0) + 1
        t = status.totals
        totals.failed_branches = _add(totals.failed_branches, t.failed_branches)
        totals.pruned_branches = _add(totals.pruned_branches, t.pruned_branches)
        totals.fallbacks = _add(totals.fallbacks, t.fallbacks)
    if seeds is not None:
        totals.pending = max(0, seeds - totals.done - totals.failed)
        totals.seeds = max(seeds, totals.seeds)
    return totals


def _add(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    out = dict(left)
    for k, v in right.items():
        out[k] = out.get(k, 0) + v
    return out


ShardStatus = Literal["done", "failed"]


class ShardRecord(BaseModel):
    """What is known about one shard after an attempt; ``totals`` adds up all its attempts."""

    key: str
    index: int
    graph_hash: str
    content_hash: str
    seed_ids: list[str]
    status: ShardStatus
    attempts: int = 1
    totals: RunTotals = Field(default_factory=RunTotals)
    error: str | None = None
    finished_at: float = Field(default_factory=time.time)

    def save(self, store: ObjectStore) -> None:
        store.put_json(layout.shard_key(self.key), self.model_dump(mode="json"))

    @classmethod
    def load(cls, store: ObjectStore, key: str) -> ShardRecord | None:
        path = layout.shard_key(key)
        raw = store.get_json_or_none(path)
        return None if raw is None else _parse(cls, raw, store, path)

    @classmethod
    def load_all(cls, store: ObjectStore) -> list[ShardRecord]:
        return [_parse(cls, v, store, k) for k, v in store.iter_json(layout.SHARD_PREFIX)]
