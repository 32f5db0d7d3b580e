"""Opening a run for review and writing changed dialogues back, all at once and under the writer lock.

Commands compute every new dialogue state in memory first and write only when nothing failed,
so a bad input leaves the run untouched. Writing takes the run's :class:`RunLock`, so an
annotation pull never races a generation still writing the same run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from interleaf.annotate.errors import AnnotateError
from interleaf.run import layout
from interleaf.run.reader import RunReader
from interleaf.run.records import DialogueStatus
from interleaf.state import DialogueState
from interleaf.storage.lock import RunLock


def open_reader(run: str | Path) -> RunReader:
    """The run at ``run`` (a folder, its ``run.json`` pointer, or a store URI)."""
    return RunReader.open(run)


def run_id_of(reader: RunReader) -> str:
    """The run's id (from its manifest): tasks and projects are tied to it."""
    manifest = reader.manifest()
    if manifest is None or not manifest.run_id:
        raise AnnotateError(f"{reader.name}: the run has no {layout.MANIFEST} with a run id")
    return manifest.run_id


def writer_lock(reader: RunReader, purpose: str) -> RunLock:
    """The run's writer lock; hold it from reading the dialogues to writing them back.

    A run that a generation is still writing is refused (``RunLockedError``, exit code 2).
    """
    return RunLock(reader.store, purpose=purpose)


def write_states(reader: RunReader, states: Iterable[DialogueState]) -> int:
    """Store ``states`` (their ``complete`` counts in the statuses too); returns how many were written.

    Call it while holding :func:`writer_lock`.
    """
    store = reader.store
    written = 0
    for state in states:
        store.put_json(layout.dialogue_key(state.seed.id), state.model_dump(mode="json"))
        status = DialogueStatus.load(store, state.seed.id)
        complete = len(state.tree().complete_ends())
        # Only the count of complete dialogues can change; the status keeps what generation spent.
        if status is not None and status.complete != complete:
            status.complete = complete
            status.save(store)
        written += 1
    return written
