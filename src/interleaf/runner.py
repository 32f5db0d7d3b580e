"""The run engine: one compiled graph over a stream of seeds, resumable at any point.

A run lives in one store root (layout: :mod:`interleaf.run.layout`). Each seed is one
LangGraph thread (``"<run_id>:<seed id>"``) checkpointed after every step with
``durability="sync"``, so after a crash or ``kill -9`` the same command skips finished
dialogues (their status says done), continues half-finished ones from their last checkpoint,
and starts the rest.

- :func:`open_run` is the only writer of the run's own files (manifest, graph copy, pointer)
  and holds the run's writer lock; :func:`attach_run` opens an existing run read-only for a
  worker that runs some of its seeds (a Prefect shard) under the opener's lock.
- :meth:`Run.arun_seeds` runs dialogues; every model call is counted in the ledger of the
  dialogue that made it (:mod:`interleaf.run.totals`), so statuses and summaries hold what
  was really sent. A seed is done only when it produced a complete dialogue.
- A :class:`~interleaf.errors.SystemicFailure` (an endpoint down, a bad key) stops the batch:
  no new seed starts, the seeds in flight keep their last checkpoint and stay pending.

Choosing between a plain run and the Prefect flow is :mod:`interleaf.launch`'s job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from interleaf.errors import InterleafError, SystemicFailure
from interleaf.graphs.compiler import CompiledGraph, compile_graph
from interleaf.graphs.loading import load_graph
from interleaf.graphs.spec import GraphSpec, graph_fingerprint, resolve_env
from interleaf.graphs.yamlsource import YamlDocument
from interleaf.preflight import apreflight
from interleaf.run import layout
from interleaf.run.layout import RunNotFoundError
from interleaf.run.records import (
    DialogueStatus,
    Invocation,
    RunManifest,
    new_run_id,
    package_version,
    read_statuses,
    seed_fingerprint,
    status_counts,
)
from interleaf.run.totals import CallLedger, RunTotals, reason_category, using_ledger
from interleaf.runtime import Runtime
from interleaf.seeds import read_seeds
from interleaf.state import CHECKPOINT_TYPES, DialogueState, Seed
from interleaf.storage.checkpoint import ObjectStoreSaver
from interleaf.storage.lock import RunLock
from interleaf.storage.store import ObjectStore, StoreUnavailableError, io_executor

log = logging.getLogger(__name__)

OnDone = Callable[[str, str], Any]
Outcome = Literal["finished", "stopped", "interrupted"]


@dataclass
class RunOutcome:
    """How one invocation ended: its totals, the run's seed counts, and the exit code it means."""

    run_id: str
    where: str
    graph: str
    totals: RunTotals
    outcome: Outcome = "finished"
    message: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every seed done; 1 finished with failed seeds; 3 stopped (resumable); 130 interrupted."""
        if self.outcome == "interrupted":
            return 130
        if self.outcome == "stopped":
            return 3
        t = self.totals
        if t.failed or t.pending or t.done + t.skipped == 0:
            return 1
        return 0

    def describe(self) -> str:
        """What a person reads after the run: the outcome first, then the counts."""
        t = self.totals
        head = {
            "finished": "finished" if self.exit_code == 0 else "finished with failed seeds",
            "stopped": "STOPPED",
            "interrupted": "INTERRUPTED",
        }[self.outcome]
        lines = [f"run {self.run_id} (graph {self.graph!r}) in {self.where}: {head}"]
        if self.message:
            lines.append(self.message)
        lines.append(f"seeds: {t.seeds}; " + t.describe())
        lines += self.notes
        if self.outcome in ("stopped", "interrupted"):
            lines.append("nothing finished is lost; run the same command again to resume.")
        return "\n".join(lines)


def _short(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _thread_holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


class Run:
    """An opened run: compiled graph, store, manifest and checkpointer.

    Make one with :func:`open_run` (a writer) or :func:`attach_run` (a worker of a writer).
    """

    def __init__(
        self,
        *,
        compiled: CompiledGraph,
        store: ObjectStore,
        manifest: RunManifest,
        out: Path | None,
        concurrency: int | None,
        checkpoints: str = "store",
        lock: RunLock | None = None,
        previous_seeds_hash: str | None = None,
    ):
        self.compiled = compiled
        self.spec: GraphSpec = compiled.spec
        self.doc: YamlDocument = compiled.doc
        self.runtime = compiled.runtime
        self.store = store
        self.manifest = manifest
        self.out = out
        self.default_concurrency = concurrency or self.spec.defaults.concurrency
        self.checkpoints = checkpoints
        self.lock = lock
        #: The seeds hash the manifest held before this invocation (None for a new run).
        self.previous_seeds_hash = previous_seeds_hash
        #: Set when a systemic failure stopped the last batch.
        self.stopped: SystemicFailure | None = None
        #: Set by :meth:`request_stop` (a signal, a cancelled flow run): why the batch was stopped.
        self.stop_reason: str | None = None
        self._stop_lock = threading.Lock()
        _active_runs.add(self)
        self._app: Any = None
        self._saver: Any = None
        self._saver_cm: Any = None
        self._app_lock: asyncio.Lock | None = None
        self._batches: list[BatchRecord] = []

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def graph_hash(self) -> str:
        return self.manifest.graph_hash

    @property
    def where(self) -> str:
        return str(self.out) if self.out is not None and self.store.is_local else self.store.uri

    def thread_id(self, seed_id: str) -> str:
        return f"{self.run_id}:{seed_id}"

    def request_stop(self, reason: str) -> None:
        """Stop every batch of this run soon: no new seed starts, dialogues in flight are cancelled
        (each keeps its last checkpoint) and the seeds not finished stay pending.

        Thread-safe and signal-safe: a SIGTERM handler or another thread may call it.
        """
        with self._stop_lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            for batch in self._batches:
                if batch.loop is not None and not batch.loop.is_closed():
                    batch.loop.call_soon_threadsafe(batch.stop.set)

    def open_batch(self) -> BatchRecord:
        """A new batch on the running event loop, reached by :meth:`request_stop` and counted by
        :meth:`partial_totals` (its ``stop`` is already set when a stop was requested)."""
        batch = BatchRecord(loop=asyncio.get_running_loop())
        with self._stop_lock:
            self._batches.append(batch)
            if self.stop_reason is not None:
                batch.stop.set()
        return batch

    def partial_totals(self) -> RunTotals:
        """Totals of every batch of this Run so far, calls of dialogues in flight or aborted included.

        For an invocation that did not return normally (interrupted, lock lost): what it sent.
        """
        return RunTotals.sum(batch.totals() for batch in self._batches)

    async def _ensure_app(self) -> Any:
        if self._app is not None:
            return self._app
        if self._app_lock is None:
            self._app_lock = asyncio.Lock()
        async with self._app_lock:
            if self._app is None:
                if self.checkpoints == "sqlite":
                    # Optional backend: its package is imported only by runs that ask for it.
                    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                    local = self.store.local_path(layout.SQLITE_CHECKPOINTS)
                    if local is None:
                        raise InterleafError("SQLite checkpoints need a local store (file://); use the object store")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    self._saver_cm = AsyncSqliteSaver.from_conn_string(str(local))
                    self._saver = await self._saver_cm.__aenter__()
                else:
                    # Strict: a checkpoint can only rebuild our own state classes, never arbitrary types.
                    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
                    self._saver = ObjectStoreSaver(self.store, layout.CHECKPOINT_PREFIX, serde=serde)
                self._app = self.compiled.build(checkpointer=self._saver)
        return self._app

    # -- seeds --------------------------------------------------------------------------------
    async def changed_seeds(self, seeds: Iterable[Seed]) -> list[str]:
        """Ids of ``seeds`` whose content differs from what the run recorded for them.

        A finished dialogue's status holds its seed's hash; a half-finished one's checkpoint
        holds the seed itself. Seeds the run has not seen are not changed.
        """
        await self._ensure_app()
        gate = asyncio.Semaphore(32)

        async def one(seed: Seed) -> str | None:
            async with gate:
                status = await DialogueStatus.aload(self.store, seed.id)
                if status is not None:
                    recorded = status.seed_hash
                    return seed.id if recorded is not None and recorded != seed_fingerprint(seed) else None
                config = {"configurable": {"thread_id": self.thread_id(seed.id)}}
                existing = await self._saver.aget_tuple(config)
                if existing is None:
                    return None
                old = existing.checkpoint.get("channel_values", {}).get("seed")
                if isinstance(old, Seed) and seed_fingerprint(old) != seed_fingerprint(seed):
                    return seed.id
                return None

        found = await asyncio.gather(*(one(s) for s in seeds))
        return [s for s in found if s is not None]

    async def forget_seeds(self, seed_ids: Iterable[str]) -> None:
        """Drop what the run holds for these seeds (status, dialogue, checkpoints) so they run afresh."""
        await self._ensure_app()
        for seed_id in seed_ids:
            await self.store.adelete(layout.status_key(seed_id))
            await self.store.adelete(layout.dialogue_key(seed_id))
            await self._saver.adelete_thread(self.thread_id(seed_id))

    async def pending_seeds(self, seeds: Iterable[Seed]) -> list[Seed]:
        """The seeds not yet done (failed ones included: a new invocation retries them)."""
        statuses = await asyncio.to_thread(read_statuses, self.store)
        return [s for s in seeds if (st := statuses.get(s.id)) is None or st.status != "done"]

    # -- running ------------------------------------------------------------------------------
    async def arun_seeds(
        self,
        seeds: Iterable[Seed] | AsyncIterable[Seed],
        *,
        concurrency: int | None = None,
        on_done: OnDone | None = None,
    ) -> RunTotals:
        """Run every seed (at most ``concurrency`` in flight); ``on_done(seed_id, outcome)`` after each.

        ``outcome`` is ``"done"``, ``"failed"`` or ``"skipped"`` (done before). A dialogue whose
        graph raises is recorded failed with the reason and the batch goes on. A systemic
        failure stops the batch: :attr:`stopped` is set, the seeds not finished are counted
        pending and keep their checkpoints. A store that stays unreachable raises.
        """
        app = await self._ensure_app()
        width = max(1, concurrency or self.default_concurrency)
        started = time.perf_counter()
        batch = self.open_batch()
        gate = asyncio.Semaphore(width)
        tasks: dict[asyncio.Task[None], str] = {}
        seen: set[str] = set()
        stop = batch.stop

        async def one(seed: Seed) -> None:
            try:
                part = await self._run_dialogue(app, seed, batch)
            except SystemicFailure as exc:
                if self.stopped is None:
                    self.stopped = exc
                    log.error("stopping the run: %s", exc)
                stop.set()
                return
            finally:
                gate.release()
            batch.done = batch.done.merge(part)
            if on_done is not None:
                outcome = "done" if part.done else "failed" if part.failed else "skipped"
                result = on_done(seed.id, outcome)
                if asyncio.iscoroutine(result):
                    await result

        stream = _aiter(seeds)
        try:
            async for seed in stream:
                if seed.id in seen:
                    log.warning("seed %r given twice in one batch; running it once", seed.id)
                    continue
                seen.add(seed.id)
                if not await _acquire_unless_stopped(gate, stop):
                    break
                task = asyncio.create_task(one(seed))
                tasks[task] = seed.id
                task.add_done_callback(lambda t: tasks.pop(t, None))
                # Surface a fatal error (store gone for good) without waiting for the whole stream.
                for t in [t for t in tasks if t.done() and not t.cancelled() and t.exception()]:
                    raise t.exception()  # type: ignore[misc]
            if tasks:
                waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
                pending: set[asyncio.Future[Any]] = set(tasks)
                while pending and not stop.is_set():
                    _, pending = await asyncio.wait(pending | {waiter}, return_when=asyncio.FIRST_COMPLETED)
                    pending.discard(waiter)
                    for t in list(tasks):
                        if t.done() and not t.cancelled() and t.exception():
                            raise t.exception()  # type: ignore[misc]
                waiter.cancel()
                if stop.is_set():
                    # The endpoint is down, or a stop was requested: dialogues still in flight
                    # would only fail too. Their last checkpoint is kept; they stay pending.
                    await _cancel_all(list(tasks))
        except BaseException:
            await _cancel_all(list(tasks))
            raise
        totals = batch.totals()
        if stop.is_set():
            rest = len(seen) - (totals.done + totals.failed + totals.skipped)
            async for seed in stream:
                if seed.id not in seen:
                    seen.add(seed.id)
                    rest += 1
            totals.pending = rest
        totals.seeds = len(seen)
        totals.seconds = time.perf_counter() - started
        return totals

    async def _run_dialogue(self, app: Any, seed: Seed, batch: BatchRecord) -> RunTotals:
        previous = await DialogueStatus.aload(self.store, seed.id)
        if previous is not None and previous.status == "done":
            return RunTotals(skipped=1)
        config: dict[str, Any] = {
            "configurable": {"thread_id": self.thread_id(seed.id)},
            "recursion_limit": self.spec.defaults.recursion_limit,
        }
        t0 = time.perf_counter()
        ledger = CallLedger()
        batch.inflight[seed.id] = ledger
        try:
            with using_ledger(ledger):
                try:
                    existing = await self._saver.aget_tuple(config)
                    # With a checkpoint, resume from it: LangGraph applies the writes of tasks that
                    # finished after it (those are not re-run) and runs what is left, if anything.
                    graph_input = {"seed": seed} if existing is None else None
                    result = await app.ainvoke(graph_input, config, durability="sync")
                    state = result if isinstance(result, DialogueState) else DialogueState.model_validate(result)
                except (SystemicFailure, StoreUnavailableError):
                    raise
                except Exception as exc:
                    reason = type(exc).__name__
                    log.warning("dialogue %r failed: %s: %s", seed.id, reason, exc)
                    totals = ledger.totals.merge(RunTotals(seeds=1, failed=1, failed_reasons={reason: 1}))
                    totals.seconds = time.perf_counter() - t0
                    await DialogueStatus(
                        seed_id=seed.id, status="failed", reason=reason, error=_short(f"{reason}: {exc}"),
                        seed_hash=seed_fingerprint(seed), run_id=self.run_id, totals=totals,
                    ).asave(self.store)
                    return totals
            # Still in flight while its dialogue and status are written: an interrupt here must
            # not lose the calls it made.
            return await self._finish(seed, state, ledger, t0)
        except BaseException:
            # Stopped, cancelled or interrupted mid-dialogue: what it sent still counts.
            batch.aborted = batch.aborted.merge(ledger.totals.calls_only())
            raise
        finally:
            batch.inflight.pop(seed.id, None)

    async def _finish(self, seed: Seed, state: DialogueState, ledger: CallLedger, t0: float) -> RunTotals:
        complete = len(state.tree().complete_ends())
        ok = state.status != "failed" and complete > 0
        state = state.model_copy(update={"status": "done" if ok else "failed"})
        totals = ledger.totals.merge(RunTotals(seeds=1))
        totals.add_outcomes(state)
        reason = None
        error = None
        if ok:
            totals.done = 1
        else:
            reason = "dialogue_failed" if state.error else "no_complete_dialogue"
            error = state.error or _no_dialogue_error(totals)
            state = state.model_copy(update={"error": error})
            totals.failed = 1
            totals.failed_reasons = {reason: 1}
            log.warning("dialogue %r failed: %s", seed.id, error)
        totals.seconds = time.perf_counter() - t0
        if self.lock is not None:
            self.lock.check()  # a writer that lost its lock must not overwrite the new holder's data
        # The dialogue first, then its status: a status that says done always has its dialogue.
        status = DialogueStatus(
            seed_id=seed.id, status="done" if ok else "failed", reason=reason, error=_short(error) if error else None,
            seed_hash=seed_fingerprint(seed), run_id=self.run_id, complete=complete, totals=totals,
        )
        await self.store.aput_json_in_order([
            (layout.dialogue_key(seed.id), state.model_dump(mode="json")), status.stored()])
        return totals

    # -- records ------------------------------------------------------------------------------
    def record_invocation(
        self,
        totals: RunTotals,
        *,
        started_at: float,
        outcome: str = "finished",
        message: str | None = None,
        seeds: int | None = None,
        seeds_hash: str | None = None,
        processes: int = 1,
    ) -> RunManifest:
        """Add an invocation to the manifest and refresh the run's counts from its status index."""
        manifest = RunManifest.load(self.store) or self.manifest
        manifest.invocations.append(Invocation(
            started_at=started_at, finished_at=time.time(), seeds_hash=seeds_hash, outcome=outcome,
            message=message, totals=totals, processes=processes, **_thread_holder(),
        ))
        if seeds_hash is not None:
            manifest.seeds_hash = seeds_hash
        known = seeds if seeds is not None else (manifest.counts.seeds or None)
        manifest.counts = status_counts(read_statuses(self.store).values(), seeds=known)
        manifest.save(self.store)
        self.manifest = manifest
        return manifest

    def record_seeds(self, seeds_path: str | Path, seeds_hash: str) -> None:
        """Record the seeds file this invocation runs (after its seeds were checked against the run)."""
        self.manifest.seeds_path = str(seeds_path)
        self.manifest.seeds_hash = seeds_hash
        self.manifest.save(self.store)

    async def aclose(self) -> None:
        """Close model clients, tools and the checkpointer (the lock stays: see :meth:`release`)."""
        await self.runtime.aclose()
        if self._saver_cm is not None:
            await self._saver_cm.__aexit__(None, None, None)
            self._saver_cm = None
        elif self._saver is not None and hasattr(self._saver, "close"):
            self._saver.close()
        self._saver = None
        self._app = None

    def release(self) -> None:
        """Give up the writer lock (no-op for an attached run)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


#: Runs open in this process, so a signal handler can stop them all (see :func:`request_stop_all`).
_active_runs: weakref.WeakSet[Run] = weakref.WeakSet()


def request_stop_all(reason: str) -> int:
    """:meth:`Run.request_stop` on every run open in this process; returns how many.

    For a SIGTERM handler (a cancelled Prefect flow run, an evicted pod): the shards of the
    process stop within seconds and record what they did.
    """
    runs = list(_active_runs)
    for run in runs:
        run.request_stop(reason)
    return len(runs)


@dataclass
class BatchRecord:
    """What one batch of a Run did so far (several may run at once on one Run).

    Made by :meth:`Run.open_batch`: :meth:`Run.request_stop` sets its ``stop`` event and
    :meth:`Run.partial_totals` counts it, so a batch run elsewhere (other processes) is
    stopped and counted like one on this event loop.
    """

    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    done: RunTotals = field(default_factory=RunTotals)
    #: Calls of dialogues that ended by an exception (stop, cancel): sent, so counted.
    aborted: RunTotals = field(default_factory=RunTotals)
    inflight: dict[str, CallLedger] = field(default_factory=dict)

    def totals(self) -> RunTotals:
        inflight = RunTotals.sum(ledger.totals.calls_only() for ledger in list(self.inflight.values()))
        return self.done.merge(self.aborted).merge(inflight)


def _no_dialogue_error(totals: RunTotals) -> str:
    parts = [f"{r} x{n}" for r, n in sorted(totals.failed_branches.items(), key=lambda kv: -kv[1])[:3]]
    why = "; ".join(parts) if parts else "no branch reached the end"
    return f"no complete dialogue: {why}"


async def _acquire_unless_stopped(gate: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Take a slot of ``gate``; False (holding none) when ``stop`` is set first or meanwhile."""
    if stop.is_set():
        return False
    if not gate.locked():
        await gate.acquire()
    else:
        # Every slot is busy, maybe for minutes: a stop must not wait for a dialogue to end.
        acquire = asyncio.ensure_future(gate.acquire())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not acquire.done():
                acquire.cancel()
        if acquire.cancelled() or not acquire.done():
            return False
    if stop.is_set():
        gate.release()
        return False
    return True


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def _aiter(seeds: Iterable[Seed] | AsyncIterable[Seed]) -> AsyncIterator[Seed]:
    if isinstance(seeds, AsyncIterable):
        async for seed in seeds:
            yield seed
    else:
        for seed in seeds:
            yield seed


def check_model_env(spec: GraphSpec, doc: YamlDocument) -> None:
    """Refuse a run whose models reference an unset environment variable (no default), naming the
    field, before any dialogue starts: otherwise every call of that model would fail one by one."""
    for name, model in spec.models.items():
        for attr in ("model", "api_base", "api_key"):
            value = getattr(model, attr)
            if not value:
                continue
            try:
                resolve_env(value)
            except KeyError as exc:
                var = exc.args[0]
                raise doc.error(
                    f"environment variable {var!r} is not set; set it, or give a default: ${{{var}:-...}}",
                    ("models", name, attr),
                ) from None


def _compile(spec: GraphSpec, doc: YamlDocument, store: ObjectStore, run_id: str, processes: int = 1) -> CompiledGraph:
    runtime = Runtime(spec, store=store, run_id=run_id, spec_dir=Path(doc.path).parent, processes=processes)
    return compile_graph(spec, doc, runtime)


def open_run(
    graph: str | Path,
    out: Path | None,
    store: str | None = None,
    *,
    seeds_path: str | Path | None = None,
    force_new_run: bool = False,
    concurrency: int | None = None,
    checkpoints: str = "store",
    lock: bool = True,
    lock_owner: str | None = None,
    lock_token: str | None = None,
    on_lock_lost: Callable[[str], None] | None = None,
) -> Run:
    """Load and compile ``graph``, take the run's writer lock, and write or check its manifest.

    The store root is found by :func:`~interleaf.run.layout.locate_root` (``store``, else the
    run in ``out`` wherever it was moved, else the store ``out/run.json`` points at, else the
    graph's ``defaults.store``, else ``out``). An existing run of a different graph raises
    :class:`~interleaf.errors.RunMismatchError` unless ``force_new_run`` (which clears the old
    run's statuses, dialogues and checkpoints and starts a new run id). A run another process
    writes raises :class:`~interleaf.storage.lock.RunLockedError`; ``lock_owner`` is recorded with
    the lock (a flow-run id), ``lock_token`` lets processes of one writer share it, and
    ``on_lock_lost(reason)`` is called from the renewal thread if the lock is lost. ``checkpoints`` is
    ``"store"`` (next to the data; works on S3) or ``"sqlite"`` (one-machine local runs).
    Call :meth:`Run.release` when done.
    """
    if checkpoints not in ("store", "sqlite"):
        raise InterleafError(f"checkpoints must be 'store' or 'sqlite', not {checkpoints!r}")
    spec, doc = load_graph(graph)
    check_model_env(spec, doc)
    out_path = Path(out) if out is not None else None
    if out_path is None and not (store or spec.defaults.store):
        raise InterleafError("no place for the run: give --out DIR or --store URI")
    root = layout.locate_root(out_path if out_path is not None else "", store=store,
                              default_store=spec.defaults.store)
    obj_store = ObjectStore(root)
    graph_hash = graph_fingerprint(spec)

    # The lock comes before anything is read for writing: two starts must not both set up the run.
    run_lock = RunLock(obj_store, layout.LOCK, purpose="interleaf run", owner=lock_owner) if lock else None
    if run_lock is not None:
        run_lock.acquire(token=lock_token)
        run_lock.start_renewing(on_lost=on_lock_lost)
    try:
        manifest = RunManifest.load(obj_store)
        discard_old = manifest is not None and force_new_run
        if manifest is not None and not force_new_run:
            manifest.check_graph(graph_hash, spec.name, obj_store.uri)
        previous_seeds_hash = manifest.seeds_hash if manifest is not None and not discard_old else None
        run_id = manifest.run_id if manifest is not None and not discard_old else new_run_id()
        compiled = _compile(spec, doc, obj_store, run_id)
        if discard_old:
            # Only after the new graph compiled: a typo must not cost the old run.
            for prefix in layout.RUN_STATE_PREFIXES:
                obj_store.delete_prefix(prefix)
            manifest = None
        if manifest is None:
            manifest = RunManifest(run_id=run_id, graph_name=spec.name, graph_hash=graph_hash)
            if seeds_path is not None:
                manifest.seeds_path = str(seeds_path)
        manifest.package_version = package_version()
        manifest.params = {
            "concurrency": concurrency or spec.defaults.concurrency,
            "recursion_limit": spec.defaults.recursion_limit,
            "run_seed": spec.defaults.run_seed,
            "checkpoints": checkpoints,
        }
        graph_bytes = Path(doc.path).read_bytes()
        if obj_store.get_bytes_or_none(layout.GRAPH) != graph_bytes:
            obj_store.put_bytes(layout.GRAPH, graph_bytes)
        manifest.save(obj_store)
        if out_path is not None and not layout.is_run_folder(out_path, obj_store.uri):
            layout.write_pointer(out_path, obj_store.uri, run_id)
    except BaseException:
        if run_lock is not None:
            run_lock.release()
        raise
    return Run(compiled=compiled, store=obj_store, manifest=manifest, out=out_path, concurrency=concurrency,
               checkpoints=checkpoints, lock=run_lock, previous_seeds_hash=previous_seeds_hash)


def attach_run(
    graph: str | Path,
    store: str,
    *,
    concurrency: int | None = None,
    checkpoints: str = "store",
    processes: int = 1,
) -> Run:
    """Open the existing run at ``store`` to run some of its seeds, writing none of its own files.

    For workers of a writer that holds the run (Prefect shards, the processes of
    ``interleaf run --workers N``): the manifest, graph copy, pointer and lock are the
    opener's; an attached run writes only dialogues, statuses and checkpoints. ``processes``
    is how many processes run the seeds together: each model's ``max_concurrency``, ``rpm``
    and ``tpm`` are split between them. Raises :class:`~interleaf.run.layout.RunNotFoundError` when ``store`` holds
    no run, and :class:`~interleaf.errors.RunMismatchError` for another graph.
    """
    spec, doc = load_graph(graph)
    check_model_env(spec, doc)
    obj_store = ObjectStore(store)
    manifest = RunManifest.load(obj_store)
    if manifest is None:
        raise RunNotFoundError(f"{obj_store.uri}: no run to attach to (no {layout.MANIFEST}); open it first")
    manifest.check_graph(graph_fingerprint(spec), spec.name, obj_store.uri)
    compiled = _compile(spec, doc, obj_store, manifest.run_id, processes=processes)
    return Run(compiled=compiled, store=obj_store, manifest=manifest, out=None, concurrency=concurrency,
               checkpoints=checkpoints, lock=None, previous_seeds_hash=manifest.seeds_hash)



# -- before a batch ---------------------------------------------------------------------------
#: How many changed seed ids a refusal lists before it says "and N more".
_SHOWN_IDS = 20


class ChangedSeedsError(InterleafError):
    """Seeds of the file differ from what the run recorded under the same ids (exit 2)."""

    def __init__(self, message: str, seed_ids: list[str]):
        super().__init__(message)
        self.seed_ids = seed_ids


def describe_changed(ids: list[str], seeds_path: str | Path) -> str:
    """The refusal a person reads: how many, which ids, and the three ways forward."""
    shown = ", ".join(repr(i) for i in ids[:_SHOWN_IDS])
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return (f"{seeds_path}: {len(ids)} seed(s) differ from what this run recorded under the same id "
            f"(prompt, images, situation or metadata): {shown}{more}. Their finished dialogues would be "
            "stale. Give --rerun-changed to redo just those, use another --out for a new run, or restore "
            "the original seeds file.")


async def check_changed_seeds(run: Run, seeds_path: str | Path, *, fingerprint: str, limit: int | None = None,
                              rerun_changed: bool = False) -> list[str]:
    """Refuse (or, with ``rerun_changed``, forget) seeds whose recorded content changed.

    Only when the seeds file's hash differs from the one the run recorded is each seed
    compared (a status holds its seed's hash; a half-finished dialogue's checkpoint its seed).
    Returns the ids redone; raises :class:`ChangedSeedsError` listing them otherwise.
    """
    if run.previous_seeds_hash is None or run.previous_seeds_hash == fingerprint:
        return []
    changed = await run.changed_seeds(list(read_seeds(seeds_path, limit=limit)))
    if changed and not rerun_changed:
        raise ChangedSeedsError(describe_changed(changed, seeds_path), changed)
    if changed:
        log.warning("redoing %d changed seed(s): %s", len(changed), ", ".join(changed[:_SHOWN_IDS]))
        await run.forget_seeds(changed)
    return changed


async def preflight_run(run: Run, ledger: CallLedger) -> None:
    """Probe the graph's endpoints and tools (the requests counted in ``ledger``).

    Raises :class:`~interleaf.errors.PreflightError` naming every failed check.
    """
    with using_ledger(ledger):
        report = await apreflight(run.runtime)
    report.raise_for_failure()


def run_totals(store: ObjectStore, *, seeds: int | None = None) -> RunTotals:
    """The run's seed counts from its status index (no call totals)."""
    return status_counts(read_statuses(store).values(), seeds=seeds)


def dialogue_errors(store: ObjectStore, seed_ids: Iterable[str]) -> list[str]:
    """``seed id: error`` for each of ``seed_ids`` that failed, from the status index."""
    ids = list(seed_ids)
    statuses = list(io_executor().map(lambda s: DialogueStatus.load(store, s), ids))
    return [f"{st.seed_id}: {st.error or st.reason or 'failed'}" for st in statuses
            if st is not None and st.status == "failed"]


__all__ = [
    "ChangedSeedsError", "Run", "RunOutcome", "attach_run", "check_changed_seeds", "check_model_env",
    "describe_changed", "dialogue_errors", "open_run", "preflight_run", "reason_category", "request_stop_all",
    "run_totals",
]
