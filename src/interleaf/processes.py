"""One batch over N processes of this machine (``interleaf run --workers N``).

One event loop on one core caps a run near the CPU cost of its model calls (litellm's own
per-call work included), however fast the endpoint is. This module spreads a batch over N
worker processes, each with its own event loop, while the opening process stays the run's
one writer of run-level files (manifest, lock, reports):

- the parent keeps the writer lock and hands seeds out one at a time through a queue, so a
  worker that is ahead takes more and the batch ends evenly;
- each worker :func:`~interleaf.runner.attach_run`\\ s the run and writes only what a dialogue
  writes (its checkpoints, dialogue and status: disjoint per seed), with ``1/N`` of every
  model's ``max_concurrency``, ``rpm`` and ``tpm`` and of the dialogues in flight, so the caps
  stay totals;
- the parent gets every finished seed (for the progress bar) and each worker's totals, and
  adds them up with the same counting rule as a one-process batch.

Stops: :meth:`~interleaf.runner.Run.request_stop` on the parent (Ctrl-C, SIGTERM, a lost
lock) reaches every worker within a fraction of a second; each cancels its dialogues in
flight (they keep their last checkpoint) and reports what it sent. A systemic failure in one
worker stops all of them. A worker that dies (killed, out of memory) stops the batch as a
systemic failure (exit 3): the seeds it had in flight stay pending and the next run resumes
them; the requests that worker sent after its last finished seed are not in the totals.

Results do not depend on the number of processes: every seed's dialogue is a function of the
seed and the run, not of where or when it ran.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from interleaf.errors import InterleafError, SystemicFailure
from interleaf.models.client import close_litellm_logging, use_bundled_price_map
from interleaf.run.totals import RunTotals
from interleaf.runner import OnDone, Run, attach_run
from interleaf.state import Seed

log = logging.getLogger(__name__)

#: With no ``--workers``, each extra process needs this many seeds to be worth its start (about a
#: second of CPU: attaching the run, the imports the fork server did not preload, first calls).
MIN_SEEDS_PER_PROCESS = 32
#: Tool kinds that load an image pipeline: one per process, so more processes mean more copies
#: in (GPU) memory; such graphs run in one process unless ``--workers`` says otherwise.
PIPELINE_TOOL_KINDS = frozenset({"generate_image", "edit_image"})
#: Seconds a stopped worker gets to report before it is terminated.
STOP_GRACE_S = 30.0


class WorkerFailedError(SystemicFailure):
    """A worker process of the batch died (killed, out of memory) or could not run (exit 3)."""

    def __init__(self, index: int, error: str):
        # Not SystemicFailure's "model at endpoint" sentence: no endpoint is at fault here.
        InterleafError.__init__(self, f"worker process {index} {error}; the seeds it had in flight stay pending")
        self.model = f"worker process {index}"
        self.endpoint = "this machine"
        self.error = error
        self.failures = 1


def _died(exitcode: int | None) -> str:
    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
    return f"exited ({how}) without reporting"


#: Imported once by the fork server, so each worker starts in milliseconds instead of seconds.
#: Past the packages themselves: what LangGraph and litellm import lazily on a graph's first
#: compile and a model's first call (~500 modules, ~0.5 s of CPU in every worker of every batch,
#: measured on a worker's first seed; with these, ~50 ms). The fork server skips a name its
#: installed version lacks, so a moved module costs start-up time, never a failure.
_PRELOAD = [
    "interleaf.processes", "interleaf.graphs.compiler", "interleaf.models.client", "interleaf.runner",
    "interleaf.cli",  # a worker runs the parent's main module again: for `interleaf run`, the CLI
    "litellm", "langgraph.graph", "langgraph.pregel", "langsmith",
    "langchain_core.runnables.base", "langchain_core.tracers.langchain", "langchain_core.tracers.stdout",
    "langchain_core.tracers.run_collector",
    "litellm._service_logger", "litellm.litellm_core_utils.logging_callback_manager",
    "litellm.litellm_core_utils.duration_parser", "litellm.integrations.generic_api.generic_api_callback",
    "litellm.proxy._types", "litellm.proxy.openai_files_endpoints.common_utils", "litellm.proxy.spend_tracking.savings",
    "litellm.proxy.mcp_server.stdio_gate", "litellm.llms.litellm_proxy.chat.transformation",
    "litellm.llms.github_copilot.authenticator", "litellm.llms.openai.chat.gpt_audio_transformation",
    "litellm.llms.openai_like.dynamic_config", "litellm.llms.github_copilot.per_user_auth",
    "litellm.llms.github_copilot.github_host", "langchain_core.tracers.context", "interleaf.run.reader",
    "interleaf._preload",  # last: node and tool kinds, plugin scan, litellm's deferred validators
]


def start_method() -> Any:
    """The multiprocessing context of worker processes: a fork server that preloaded litellm and
    interleaf (a single-threaded process, so forking it is safe, unlike forking this one, which
    has threads), started by :func:`warm_up` or on first use."""
    ctx = mp.get_context("forkserver")
    use_bundled_price_map()  # the fork server gets this process's environment when it starts
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def warm_up() -> None:
    """Start the fork server now, so its imports overlap the seed scan and the preflight."""
    from multiprocessing import forkserver  # the stdlib module, only when processes are likely

    start_method()
    forkserver.ensure_running()


def process_cap(run: Run, concurrency: int | None = None) -> int:
    """The most processes whose parts of the caps are still at least one each: the dialogues in
    flight and every model's ``max_concurrency`` (more processes would exceed the totals)."""
    caps = [concurrency or run.default_concurrency, *(m.max_concurrency for m in run.spec.models.values())]
    return max(1, min(caps))


def choose_processes(run: Run, requested: int | None, pending: int, concurrency: int | None = None) -> int:
    """How many processes a batch of ``pending`` seeds gets.

    ``requested`` (``--workers``) is honoured up to one process a seed and :func:`process_cap`.
    Without it: the machine's cores, as long as each extra process gets
    :data:`MIN_SEEDS_PER_PROCESS` seeds, and one process for graphs with image pipelines.
    SQLite checkpoints (one file, one writer) always get one.
    """
    if pending <= 1 or run.checkpoints == "sqlite":
        return 1
    cap = min(pending, process_cap(run, concurrency))
    if requested is not None:
        return max(1, min(requested, cap))
    if any((t.kind or name) in PIPELINE_TOOL_KINDS for name, t in run.spec.tools.items()):
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(cores, pending // MIN_SEEDS_PER_PROCESS, cap))


def may_use_processes(requested: int | None, seeds: int) -> bool:
    """Whether a batch of ``seeds`` could get more than one process (before the run is opened)."""
    if requested is not None:
        return requested > 1 and seeds > 1
    return (os.cpu_count() or 1) > 1 and seeds >= 2 * MIN_SEEDS_PER_PROCESS


def split_width(total: int, parts: int, index: int) -> int:
    """Worker ``index``'s share of ``total`` slots (shares differ by at most one, each at least 1).

    >>> [split_width(10, 3, i) for i in range(3)]
    [4, 3, 3]
    """
    return max(1, total // parts + (1 if index < total % parts else 0))


class _StopFlag:
    """Set once by the parent, polled by the workers."""

    def __init__(self, ctx: Any):
        self._value = ctx.RawValue("i", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, seconds: float) -> bool:
        """True as soon as the flag is set, False after ``seconds`` without it."""
        deadline = time.monotonic() + seconds
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))
        return True


@dataclass(frozen=True)
class _WorkerArgs:
    index: int
    processes: int
    graph: str
    store: str
    concurrency: int
    checkpoints: str
    parent_pid: int
    log_level: int
    #: The parent's environment when the batch started: the fork server's is from when it started,
    #: and the graph's ``${VAR}`` endpoints and keys must resolve as they do in the parent.
    environ: dict[str, str]


async def arun_in_processes(run: Run, seeds: Iterable[Seed], *, processes: int,
                            concurrency: int | None = None, on_done: OnDone | None = None,
                            stats: dict[str, float] | None = None) -> RunTotals:
    """Run ``seeds`` on ``processes`` worker processes; totals as :meth:`Run.arun_seeds` returns them.

    Sets :attr:`Run.stopped` when a worker hit a systemic failure or died. ``stats``, when
    given, gets ``worker_cpu_s``: the CPU seconds the workers used (they are not children this
    process waits for, so its own resource usage never includes them).
    """
    batch = run.open_batch()
    started = time.perf_counter()
    width = concurrency or run.default_concurrency
    ctx = start_method()
    seed_queue: Any = ctx.Queue()
    events: Any = ctx.Queue()
    # A flag in shared memory, not an mp.Event: Event.set() waits for every process sleeping in
    # wait(), and blocks for ever when one of them died while waiting.
    stop_event = _StopFlag(ctx)
    workers = []
    for index in range(processes):
        args = _WorkerArgs(index=index, processes=processes, graph=str(run.doc.path), store=run.store.uri,
                           concurrency=split_width(width, processes, index), checkpoints=run.checkpoints,
                           parent_pid=os.getpid(), log_level=logging.getLogger("interleaf").getEffectiveLevel(),
                           environ=dict(os.environ))
        proc = ctx.Process(target=_worker_main, args=(args, seed_queue, events, stop_event),
                           name=f"interleaf-worker-{index}", daemon=True)
        proc.start()
        workers.append(proc)
    given: set[str] = set()
    feeder = threading.Thread(target=_feed, args=(seeds, seed_queue, processes, given, stop_event),
                              name="interleaf-seed-feeder", daemon=True)
    feeder.start()
    results: dict[int, RunTotals] = {}
    cpu: dict[int, float] = {}
    # One thread reads the workers' messages into an asyncio queue: a read is never lost to a
    # cancelled await (Ctrl-C), so the workers' last reports are still counted after a stop.
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    reading = threading.Event()
    reader = threading.Thread(target=_read_events, args=(events, inbox, asyncio.get_running_loop(), reading),
                              name="interleaf-worker-events", daemon=True)
    reader.start()
    try:
        await _collect(run, batch, workers, inbox, stop_event, results, on_done, cpu)
    except BaseException:
        # Cancelled (Ctrl-C) or failed here: stop the workers and still count what they sent.
        stop_event.set()
        await _drain_results(workers, inbox, results, cpu)
        batch.done = RunTotals.sum(results.values())
        raise
    finally:
        stop_event.set()
        _end_workers(workers)
        reading.set()
        events.put(None)  # wakes the reader now, not at the end of its poll
        reader.join(timeout=5)
        feeder.join(timeout=5)
    if stats is not None:
        stats["worker_cpu_s"] = sum(cpu.values())
    totals = RunTotals.sum(results.values())
    batch.done = totals
    totals.seeds = len(given)
    totals.pending = max(0, len(given) - totals.done - totals.failed - totals.skipped)
    totals.seconds = time.perf_counter() - started
    return totals


def _feed(seeds: Iterable[Seed], seed_queue: Any, processes: int, given: set[str], stop_event: _StopFlag) -> None:
    """Put every seed on the queue once, then one end marker per worker."""
    try:
        for seed in seeds:
            if seed.id in given:
                log.warning("seed %r given twice in one batch; running it once", seed.id)
                continue
            given.add(seed.id)
            # After a stop the rest is only counted (it stays pending), not handed out.
            if not stop_event.is_set():
                seed_queue.put(seed.model_dump(mode="json"))
    finally:
        for _ in range(processes):
            seed_queue.put(None)


def _read_events(events: Any, inbox: asyncio.Queue[tuple[Any, ...]], loop: asyncio.AbstractEventLoop,
                 done: threading.Event) -> None:
    while not done.is_set():
        try:
            message = events.get(True, 0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):  # the queue was closed under us: the batch is over
            return
        if message is None:  # the batch is over
            return
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, message)
        except RuntimeError:  # the loop is closed
            return


async def _next_message(inbox: asyncio.Queue[tuple[Any, ...]], seconds: float) -> tuple[Any, ...] | None:
    try:
        return await asyncio.wait_for(inbox.get(), seconds)
    except TimeoutError:
        return None


async def _collect(run: Run, batch: Any, workers: list[Any], inbox: asyncio.Queue[tuple[Any, ...]],
                   stop_event: _StopFlag, results: dict[int, RunTotals], on_done: OnDone | None,
                   cpu: dict[int, float]) -> None:
    """Pass finished seeds to ``on_done`` and keep each worker's report until all have reported."""
    stopped_at: float | None = None
    while len(results) < len(workers):
        if batch.stop.is_set() and not stop_event.is_set():
            stop_event.set()  # Ctrl-C, SIGTERM or a lost lock on the parent: stop every worker
        if stop_event.is_set() and stopped_at is None:
            stopped_at = time.monotonic()
        message = await _next_message(inbox, 0.2)
        if message is None:
            for index, proc in enumerate(workers):
                if index not in results and not proc.is_alive() and inbox.empty():
                    # Its last messages may still be on their way: look once more before calling it dead.
                    await asyncio.sleep(0.5)
                    if index in results or not inbox.empty():
                        break
                    results[index] = RunTotals()
                    if run.stopped is None:
                        run.stopped = WorkerFailedError(index, _died(proc.exitcode))
                        log.error("stopping the run: %s", run.stopped)
                    stop_event.set()
            if stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_S:
                log.error("worker processes did not stop within %.0f s; terminating them", STOP_GRACE_S)
                break
            continue
        await _handle(run, message, results, stop_event, on_done, cpu)


async def _handle(run: Run, message: tuple[Any, ...], results: dict[int, RunTotals], stop_event: _StopFlag,
                  on_done: OnDone | None, cpu: dict[int, float]) -> None:
    kind = message[0]
    if kind == "seed":
        if on_done is not None:
            outcome = on_done(message[1], message[2])
            if asyncio.iscoroutine(outcome):
                await outcome
        return
    index, totals, stopped = message[1], RunTotals.model_validate(message[2]), message[3]
    results[index] = totals
    if kind == "result":
        cpu[index] = message[5]
    if kind == "result" and stopped is None and message[4] is not None and not stop_event.is_set():
        # A worker stopped without being asked (SIGTERM sent to it alone): its seeds stay pending.
        kind, stopped = "error", f"stopped: {message[4]}"
    if kind == "error" or stopped is not None:
        if run.stopped is None:
            if kind == "error":
                run.stopped = WorkerFailedError(index, f"failed: {stopped}")
            else:
                run.stopped = SystemicFailure(*stopped)
            log.error("stopping the run: %s", run.stopped)
        stop_event.set()


async def _drain_results(workers: list[Any], inbox: asyncio.Queue[tuple[Any, ...]], results: dict[int, RunTotals],
                         cpu: dict[int, float]) -> None:
    """After a stop: wait (bounded) for every worker's report, so what they sent is counted."""
    deadline = time.monotonic() + STOP_GRACE_S
    quiet_since: float | None = None
    while len(results) < len(workers) and time.monotonic() < deadline:
        message = await _next_message(inbox, 0.2)
        if message is None:
            if all(not p.is_alive() for p in workers):
                # Every worker has exited: what is still in the pipe arrives within moments.
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    return
            continue
        quiet_since = None
        if message[0] != "seed":
            results[message[1]] = RunTotals.model_validate(message[2])
            if message[0] == "result":
                cpu[message[1]] = message[5]


def _end_workers(workers: list[Any]) -> None:
    for proc in workers:
        proc.join(timeout=STOP_GRACE_S if proc.is_alive() else 0.1)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


# -- in the worker process -------------------------------------------------------------------
def _worker_main(args: _WorkerArgs, seed_queue: Any, events: Any, stop_event: _StopFlag) -> None:
    """A worker: attach to the run, take seeds from the queue until its end marker, report."""
    # What the fork server preloaded (~470,000 objects) lives as long as this process: out of the
    # collector's sight, a full collection costs milliseconds instead of ~0.25 s of CPU, and
    # does not copy every inherited page by writing to the objects' headers.
    gc.freeze()
    # Ctrl-C reaches the whole process group; the parent decides, and tells us through stop_event.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(args.environ)
    logging.basicConfig(level=args.log_level, format=f"%(levelname)s [worker {args.index}] %(name)s: %(message)s")
    run: Run | None = None
    try:
        run = attach_run(args.graph, args.store, concurrency=args.concurrency, checkpoints=args.checkpoints,
                         processes=args.processes)
        bound = run
        signal.signal(signal.SIGTERM, lambda signum, frame: bound.request_stop("terminated by SIGTERM"))
        threading.Thread(target=_watch_stop, args=(bound, stop_event, args.parent_pid), daemon=True).start()
        totals = asyncio.run(_worker_batch(bound, seed_queue, events, args))
    except BaseException as exc:  # reported, never swallowed: the parent stops the batch with it
        partial = run.partial_totals() if run is not None else RunTotals()
        events.put(("error", args.index, partial.model_dump(mode="json"), f"{type(exc).__name__}: {exc}"))
        return
    stopped = run.stopped
    events.put(("result", args.index, totals.model_dump(mode="json"),
                None if stopped is None else (stopped.model, stopped.endpoint, stopped.error, stopped.failures),
                run.stop_reason, time.process_time()))


def _watch_stop(run: Run, stop_event: _StopFlag, parent_pid: int) -> None:
    while not stop_event.wait(0.25):
        # Our OS parent is the fork server, so ask about the run's process itself.
        if not _alive(parent_pid):
            run.request_stop("the run's main process is gone")
            return
    run.request_stop("stopped by the run's main process")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (cannot be ours, but it is alive)
        return True
    return True


async def _worker_batch(run: Run, seed_queue: Any, events: Any, args: _WorkerArgs) -> RunTotals:
    def done(seed_id: str, outcome: str) -> None:
        events.put(("seed", seed_id, outcome))

    try:
        return await run.arun_seeds(_queued_seeds(run, seed_queue), concurrency=args.concurrency, on_done=done)
    finally:
        await run.aclose()
        await close_litellm_logging()


async def _queued_seeds(run: Run, seed_queue: Any) -> AsyncIterator[Seed]:
    while True:
        try:
            item = await asyncio.to_thread(seed_queue.get, True, 0.5)
        except queue.Empty:
            if run.stop_reason is not None:
                return
            continue
        if item is None:
            return
        yield Seed.model_validate(item)


__all__ = [
    "MIN_SEEDS_PER_PROCESS", "WorkerFailedError", "arun_in_processes", "choose_processes", "may_use_processes",
    "process_cap", "split_width", "start_method", "warm_up",
]
