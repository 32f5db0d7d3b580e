"""Where a run keeps what: every key and prefix of the run layout, and how a run is found.

A run is one store root (a local folder or an ``s3://bucket/prefix``)::

    manifest.json            what the run is: id, graph hash, seeds, counts, invocations
    graph.yaml               the graph source the run was started with
    lock.json                the writer holding the run (absent when nobody writes)
    status/<seed>.json       how each dialogue ended (absent: pending)
    dialogues/<seed>.json    each finished dialogue's state
    checkpoints/...          LangGraph checkpoints, one thread per seed
    shards/<key>.json        Prefect shard ledger
    cache/responses/...      model response cache (``cache: true``)
    blobs/sha256/..          content-addressed images
    reports/...              run-level reports

When ``--store`` puts the data elsewhere, the ``--out`` folder holds only ``run.json``, a
pointer to the store. This module is the only place these names are spelled out.

Example:
    >>> dialogue_key("seed 1")
    'dialogues/seed%201.json'
"""

from __future__ import annotations

import json
from pathlib import Path

from interleaf.errors import InterleafError, LocatedError, Location
from interleaf.storage.store import ObjectStore, safe_segment

RUN_POINTER = "run.json"
MANIFEST = "manifest.json"
GRAPH = "graph.yaml"
LOCK = "lock.json"
STATUS_PREFIX = "status"
DIALOGUE_PREFIX = "dialogues"
CHECKPOINT_PREFIX = "checkpoints"
SQLITE_CHECKPOINTS = "checkpoints.sqlite"
SHARD_PREFIX = "shards"
RESPONSE_CACHE_PREFIX = "cache/responses"
REPORTS_PREFIX = "reports"

#: What a forced new run clears (blobs and caches are content-addressed and stay valid).
RUN_STATE_PREFIXES = (STATUS_PREFIX, DIALOGUE_PREFIX, CHECKPOINT_PREFIX, SHARD_PREFIX)


class RunNotFoundError(InterleafError):
    """The path or URI given does not hold a run."""


class RunDataError(LocatedError):
    """A stored dialogue, status or manifest object is not what the run layout says it is."""


def status_key(seed_id: str) -> str:
    """``status/<seed>.json``."""
    return f"{STATUS_PREFIX}/{safe_segment(seed_id)}.json"


def dialogue_key(seed_id: str) -> str:
    """``dialogues/<seed>.json``."""
    return f"{DIALOGUE_PREFIX}/{safe_segment(seed_id)}.json"


def shard_key(cache_key: str) -> str:
    """``shards/<key>.json``."""
    return f"{SHARD_PREFIX}/{cache_key}.json"


def report_key(name: str) -> str:
    """``reports/<name>``."""
    return f"{REPORTS_PREFIX}/{name}"


def _is_remote(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _local(text: str) -> Path:
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def read_pointer(folder: Path) -> str | None:
    """The store URI ``folder/run.json`` points at (resolved against ``folder``), or None without one.

    A pointer written for a run kept in its own folder says ``"store": "."``, so a moved or
    copied folder still points at itself.
    """
    pointer = folder / RUN_POINTER
    if not pointer.is_file():
        return None
    try:
        data = json.loads(pointer.read_text(encoding="utf-8"))
        uri = data["store"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDataError(f"not a run pointer ({{\"store\": URI, \"run_id\": ...}}): {exc}; "
                           "delete it or pass --store", Location(str(pointer)), field="store") from None
    if not isinstance(uri, str) or not uri:
        raise RunDataError("'store' must be a non-empty URI string", Location(str(pointer)), field="store")
    if _is_remote(uri):
        return uri
    target = _local(uri)
    return str((folder / target).resolve() if not target.is_absolute() else target)


def pointer_value(folder: Path, store_uri: str) -> str:
    """What ``run.json`` records for a run in ``store_uri`` seen from ``folder``: relative when local."""
    if _is_remote(store_uri):
        return store_uri
    target = _local(store_uri).resolve()
    here = folder.resolve()
    if target == here:
        return "."
    try:
        return str(target.relative_to(here))
    except ValueError:
        return str(target)


def locate_root(run: str | Path, *, store: str | None = None, default_store: str | None = None) -> str:
    """The store root of the run that ``run`` names; the one rule every command uses.

    In order: an explicit ``store``; ``run`` itself when it is a store URI; a local folder
    holding ``manifest.json`` (the run lives there, wherever it was moved); the store its
    ``run.json`` points at; the graph's ``default_store``; else the folder itself (a new run).
    """
    if store:
        return store
    text = str(run)
    if _is_remote(text):
        return text
    folder = _local(text)
    if (folder / MANIFEST).is_file():
        return str(folder.resolve())
    pointed = read_pointer(folder)
    if pointed is not None:
        return pointed
    if default_store:
        return default_store
    return str(folder.resolve())


def open_store(run: str | Path) -> ObjectStore:
    """The store of an existing run (see :func:`locate_root`); raises :class:`RunNotFoundError`."""
    text = str(run)
    if not _is_remote(text):
        folder = _local(text)
        if not folder.is_dir():
            raise RunNotFoundError(f"{folder}: no such run directory")
    return ObjectStore(locate_root(run))


def write_pointer(folder: Path, store_uri: str, run_id: str) -> None:
    """Write ``folder/run.json`` pointing at ``store_uri`` (relative when it is a local folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"store": pointer_value(folder, store_uri), "run_id": run_id}
    (folder / RUN_POINTER).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def is_run_folder(folder: Path, store_uri: str) -> bool:
    """Whether the run's store root is ``folder`` itself (so it needs no pointer)."""
    return not _is_remote(store_uri) and _local(store_uri).resolve() == folder.resolve()
