"""Read a finished (or half-finished) run: manifest, graph source, dialogues and images.

Every exporter and the viewer go through :class:`RunReader`, so they agree on how a run is
found (a local run directory, the ``run.json`` pointer inside ``--out``, or a store URI) and
how an :class:`~interleaf.state.ImageRef` becomes bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from interleaf.errors import InterleafError, LocatedError, Location
from interleaf.state import DialogueState, ImageRef, ModelCall
from interleaf.storage.store import ObjectStore, blob_key

RUN_POINTER = "run.json"
MANIFEST_KEY = "manifest.json"
GRAPH_KEY = "graph.yaml"
DIALOGUE_PREFIX = "dialogues"
STATUS_PREFIX = "status"

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class RunNotFoundError(InterleafError):
    """The path or URI given does not hold a run."""


class RunDataError(LocatedError):
    """A stored dialogue, status or manifest object is not what the run layout says it is."""


def image_extension(ref: ImageRef) -> str:
    """File extension for an image's MIME type (``png`` when unknown)."""
    return _EXTENSIONS.get(ref.mime, "png")


@dataclass
class RunTotals:
    """What a run cost: model calls, tokens, dollars and wall-clock seconds."""

    dialogues: int = 0
    done: int = 0
    failed: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None  # None while no call had a known price (unknown models are not free)
    seconds: float = 0.0

    def add_cost(self, cost: float | None) -> None:
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "dialogues": self.dialogues, "done": self.done, "failed": self.failed, "calls": self.calls,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost": None if self.cost is None else round(self.cost, 6), "seconds": round(self.seconds, 3),
        }


def resolve_store(run: str | Path) -> ObjectStore:
    """The store holding the run ``run`` names: a store URI, a run root, or an ``--out`` folder with ``run.json``."""
    text = str(run)
    if "://" in text and not text.startswith("file://"):
        return ObjectStore(text)
    path = Path(text[len("file://"):] if text.startswith("file://") else text)
    pointer = path / RUN_POINTER
    if pointer.is_file():
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
            uri = data["store"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RunDataError(f"not a run pointer ({{\"store\": URI, \"run_id\": ...}}): {exc}",
                               Location(str(pointer)), field="store") from None
        if not isinstance(uri, str) or not uri:
            raise RunDataError("'store' must be a non-empty URI string", Location(str(pointer)), field="store")
        return ObjectStore(uri)
    if not path.is_dir():
        raise RunNotFoundError(f"{path}: no such run directory")
    return ObjectStore(path)


class RunReader:
    """Read-only view of one run's store root."""

    def __init__(self, store: ObjectStore, name: str | None = None):
        self.store = store
        self.name = name or store.uri

    @classmethod
    def open(cls, run: str | Path) -> RunReader:
        """Open ``run`` (see :func:`resolve_store`); raise :class:`RunNotFoundError` if it holds no run."""
        store = resolve_store(run)
        reader = cls(store, str(run))
        if not reader.dialogue_keys() and not store.exists(MANIFEST_KEY):
            raise RunNotFoundError(
                f"{run}: not a run (no {MANIFEST_KEY} and no {DIALOGUE_PREFIX}/*.json under {store.uri})"
            )
        return reader

    # -- run-level objects -------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest as stored (``{}`` when the run has none yet)."""
        raw = self._json_or_none(MANIFEST_KEY)
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise RunDataError("the manifest must be a JSON object", Location(self.store.url(MANIFEST_KEY)))
        return raw

    def graph_source(self) -> str | None:
        data = self.store.get_bytes_or_none(GRAPH_KEY)
        return None if data is None else data.decode("utf-8", errors="replace")

    def statuses(self) -> dict[str, dict[str, Any]]:
        """``status/<seed>.json`` objects keyed by their seed id."""
        out: dict[str, dict[str, Any]] = {}
        for key in self.store.list(STATUS_PREFIX):
            if not key.endswith(".json"):
                continue
            raw = self._json_or_none(key)
            if isinstance(raw, dict):
                out[str(raw.get("seed_id") or key.rsplit("/", 1)[-1][: -len(".json")])] = raw
        return out

    # -- dialogues ----------------------------------------------------------------------------
    def dialogue_keys(self) -> list[str]:
        return [k for k in self.store.list(DIALOGUE_PREFIX) if k.endswith(".json")]

    def dialogue(self, key: str) -> DialogueState:
        raw = self._json_or_none(key)
        if raw is None:
            raise RunDataError("dialogue object vanished while reading", Location(self.store.url(key)))
        try:
            return DialogueState.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RunDataError(f"not a DialogueState: {first['msg']}", Location(self.store.url(key)),
                               field=where) from None

    def dialogues(self) -> Iterator[DialogueState]:
        """Every stored dialogue, sorted by seed id."""
        states = [self.dialogue(k) for k in self.dialogue_keys()]
        yield from sorted(states, key=lambda s: s.seed.id)

    # -- images -------------------------------------------------------------------------------
    def image_key(self, ref: ImageRef) -> str:
        """The blob key of ``ref`` in this store (by URI, else by content hash for a moved run)."""
        try:
            return self.store.key_of(ref.uri)
        except InterleafError:
            return blob_key(ref.sha256, image_extension(ref))

    def image_bytes(self, ref: ImageRef) -> bytes:
        key = self.image_key(ref)
        data = self.store.get_bytes_or_none(key)
        if data is None:
            fallback = blob_key(ref.sha256, image_extension(ref))
            data = self.store.get_bytes_or_none(fallback) if fallback != key else None
        if data is None:
            raise RunDataError(f"image {ref.sha256[:12]} is missing from the run's blobs",
                               Location(ref.uri), field="image.uri")
        return data

    # -- accounting ---------------------------------------------------------------------------
    def totals(self, states: list[DialogueState] | None = None) -> RunTotals:
        """Run totals: status files where a dialogue has one, else the calls recorded in its tree."""
        states = list(self.dialogues()) if states is None else states
        statuses = self.statuses()
        totals = RunTotals()
        seen: set[str] = set()
        for state in states:
            seen.add(state.seed.id)
            totals.dialogues += 1
            status = statuses.get(state.seed.id)
            if (status or {}).get("status", state.status) == "failed" or state.status == "failed":
                totals.failed += 1
            elif state.status == "done" or (status or {}).get("status") == "done":
                totals.done += 1
            if status is not None and int(status.get("calls") or 0) > 0:
                _add_status(totals, status)
            else:
                for call in _calls(state):
                    totals.calls += 1
                    totals.prompt_tokens += call.prompt_tokens or 0
                    totals.completion_tokens += call.completion_tokens or 0
                    totals.add_cost(call.cost)
                if status is not None:
                    totals.seconds += float(status.get("seconds") or 0.0)
                else:
                    totals.seconds += sum(p.seconds for n in state.nodes.values() for p in n.provenance)
        for seed_id, status in statuses.items():
            if seed_id not in seen:
                # A dialogue that failed before its state was written still cost something.
                totals.dialogues += 1
                totals.failed += status.get("status") == "failed"
                _add_status(totals, status)
        return totals

    def _json_or_none(self, key: str) -> Any:
        data = self.store.get_bytes_or_none(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise RunDataError(f"not valid JSON: {exc}", Location(self.store.url(key))) from None


def _add_status(totals: RunTotals, status: dict[str, Any]) -> None:
    totals.calls += int(status.get("calls") or 0)
    totals.prompt_tokens += int(status.get("prompt_tokens") or 0)
    totals.completion_tokens += int(status.get("completion_tokens") or 0)
    cost = status.get("cost")
    totals.add_cost(None if cost is None else float(cost))
    totals.seconds += float(status.get("seconds") or 0.0)


def images_of(state: DialogueState) -> Iterator[ImageRef]:
    """Every image a dialogue state refers to (prompts, questions, answers, follow-ups), repeats included."""
    for prompt in state.prompts:
        yield from prompt.message.images
    for node in state.nodes.values():
        for message in (node.user, node.assistant, node.follow_up):
            if message is not None:
                yield from message.images


def _calls(state: DialogueState) -> Iterator[ModelCall]:
    for node in state.nodes.values():
        for prov in node.provenance:
            yield from prov.calls


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` (and its parents); raise when it exists as a file."""
    if out.exists() and not out.is_dir():
        raise InterleafError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return Path(os.path.abspath(out))
