"""Read a finished (or half-finished) run: manifest, graph source, dialogues and images.

Every exporter and the viewer go through :class:`RunReader`, so they agree on how a run is
found (a local run directory, the ``run.json`` pointer inside ``--out``, or a store URI) and
how an :class:`~interleaf.state.ImageRef` becomes bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from interleaf.errors import InterleafError, Location
from interleaf.run import layout
from interleaf.run.layout import RunDataError, RunNotFoundError, open_store
from interleaf.run.records import DialogueStatus, RunManifest, read_statuses, status_counts
from interleaf.run.totals import RunTotals
from interleaf.state import DialogueState, ImageRef, ModelCall
from interleaf.storage.store import ObjectStore, blob_key

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}

__all__ = ["RunDataError", "RunNotFoundError", "RunReader", "image_extension", "images_of"]


def image_extension(ref: ImageRef) -> str:
    """File extension for an image's MIME type (``png`` when unknown)."""
    return _EXTENSIONS.get(ref.mime, "png")


class RunReader:
    """Read-only view of one run's store root."""

    def __init__(self, store: ObjectStore, name: str | None = None):
        self.store = store
        self.name = name or store.uri

    @classmethod
    def open(cls, run: str | Path) -> RunReader:
        """Open ``run`` (see :func:`~interleaf.run.layout.locate_root`); raise :class:`RunNotFoundError` if none."""
        store = open_store(run)
        reader = cls(store, str(run))
        if not store.exists(layout.MANIFEST) and not reader.dialogue_keys():
            raise RunNotFoundError(
                f"{run}: not a run (no {layout.MANIFEST} and no {layout.DIALOGUE_PREFIX}/*.json under {store.uri})"
            )
        return reader

    # -- run-level objects -------------------------------------------------------------------
    def manifest(self) -> RunManifest | None:
        """The run's manifest (None for data without one)."""
        return RunManifest.load(self.store)

    def graph_source(self) -> str | None:
        data = self.store.get_bytes_or_none(layout.GRAPH)
        return None if data is None else data.decode("utf-8", errors="replace")

    def statuses(self) -> dict[str, DialogueStatus]:
        """Dialogue statuses keyed by seed id."""
        return read_statuses(self.store)

    # -- dialogues ----------------------------------------------------------------------------
    def dialogue_keys(self) -> list[str]:
        return [k for k in self.store.list(layout.DIALOGUE_PREFIX) if k.endswith(".json")]

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
        """The run's totals: seed outcomes from the status index, calls from the invocations.

        Calls, tokens and cost are what every recorded invocation sent (the manifest); data no
        invocation produced here (an import) counts the calls recorded in its dialogue trees.
        """
        manifest = self.manifest()
        statuses = self.statuses()
        seeds = manifest.counts.seeds if manifest is not None and manifest.counts.seeds else None
        totals = status_counts(statuses.values(), seeds=seeds)
        if manifest is not None and manifest.invocations:
            calls = manifest.invocation_totals()
            seconds = sum((inv.finished_at or inv.started_at) - inv.started_at for inv in manifest.invocations)
        else:
            states = list(self.dialogues()) if states is None else states
            calls = RunTotals.of_calls(c for s in states for c in _calls(s))
            seconds = sum(st.totals.seconds for st in statuses.values())
        merged = totals.merge(calls)
        merged.seconds = seconds
        return merged

    def _json_or_none(self, key: str) -> Any:
        data = self.store.get_bytes_or_none(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise RunDataError(f"not valid JSON: {exc}", Location(self.store.url(key))) from None


def images_of(state: DialogueState) -> Iterator[ImageRef]:
    """Every image a dialogue state refers to (prompts, questions, answers, follow-ups), repeats included."""
    for prompt in state.prompts:
        yield from prompt.message.images
    for node in state.nodes.values():
        for message in (node.user, node.assistant, node.follow_up):
            if message is not None:
                yield from message.images


def _calls(state: DialogueState) -> Iterator[ModelCall]:
    """Every call recorded in a dialogue's provenance."""
    for node in state.nodes.values():
        for prov in node.provenance:
            yield from prov.calls
