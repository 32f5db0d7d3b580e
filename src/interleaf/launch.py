"""``interleaf run``: one invocation, from the seeds file to an honest outcome and exit code.

The seam between declaring a run and executing it: :func:`run_from_cli` takes
:class:`RunOptions` and runs them either in this process (:func:`run_plain`) or through the
Prefect flow (``--orchestrate``, :mod:`interleaf.flows.generate`). Both end with a
:class:`~interleaf.runner.RunOutcome` whose :attr:`~interleaf.runner.RunOutcome.exit_code`
the CLI returns:

====  =====================================================================================
0     every seed of this invocation is done
1     the run finished, some seeds failed (their reasons are in the summary and ``status``)
2     bad input, configuration or preflight (nothing was run)
3     stopped by a systemic failure (endpoint down, bad key, store gone, lock lost); resumable
130   interrupted (Ctrl-C); what was in flight keeps its last checkpoint; resumable
====  =====================================================================================

Order of a plain invocation: check the whole seeds file, open the run (the writer lock is
taken first), refuse seeds whose recorded content changed (unless ``rerun_changed``), then
if anything is left to do a preflight (one tiny request per endpoint, counted like any
other call), then the batch. Every ending is recorded as an invocation in the manifest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interleaf.datasets.pruning_quality import write_pruning_quality
from interleaf.datasets.reports import write_reports
from interleaf.errors import InterleafError, ServiceUnavailableError
from interleaf.models.client import close_litellm_logging
from interleaf.models.health import reset_endpoint_health
from interleaf.processes import arun_in_processes, choose_processes, may_use_processes, warm_up
from interleaf.run.totals import CallLedger, RunTotals
from interleaf.runner import Run, RunOutcome, check_changed_seeds, open_run, preflight_run
from interleaf.seeds import SeedScan, read_seeds, scan_seeds
from interleaf.storage.lock import RunLockLostError
from interleaf.storage.store import StoreUnavailableError

log = logging.getLogger(__name__)

@dataclass
class RunOptions:
    """What ``interleaf run`` was asked to do."""

    graph: str
    seeds: Path
    out: Path
    store: str | None = None
    concurrency: int | None = None
    limit: int | None = None
    force_new_run: bool = False
    orchestrate: bool = False
    shard_size: int = 100
    progress: bool = True
    preflight: bool = True
    rerun_changed: bool = False
    #: Processes on this machine (``--workers``); None: chosen by :func:`~interleaf.processes.choose_processes`.
    workers: int | None = None


def run_from_cli(opts: RunOptions) -> RunOutcome:
    """``interleaf run``: the Prefect flow with ``--orchestrate``, else :func:`run_plain`."""
    if opts.concurrency is not None and opts.concurrency < 1:
        raise InterleafError(f"--concurrency must be at least 1, not {opts.concurrency}")
    if opts.limit is not None and opts.limit < 1:
        raise InterleafError(f"--limit must be at least 1, not {opts.limit}")
    if opts.workers is not None and opts.workers < 1:
        raise InterleafError(f"--workers must be at least 1, not {opts.workers}")
    if opts.workers is not None and opts.orchestrate:
        raise InterleafError("--workers is for a plain run; with --orchestrate, Prefect workers and the flow's "
                             "max_parallel_shards spread the shards")
    if opts.orchestrate:
        return run_orchestrated(opts)
    return run_plain(opts)


def run_orchestrated(opts: RunOptions) -> RunOutcome:
    """Run the Prefect flow for ``interleaf run --orchestrate``; returns the invocation's outcome.

    Errors that stop the flow before any shard runs (a bad graph, an unreadable seeds file,
    a run locked by another writer) are raised as they are, so the CLI reports them like a
    plain run does.
    """
    # interleaf's own warnings (failed dialogues, a stop) belong in the flow run's logs too.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "interleaf")
    # Without PREFECT_API_URL Prefect starts a temporary server; on a busy machine its default
    # 20 s start budget is too short.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Imported here: importing Prefect takes seconds, and a plain run never needs it.
    from prefect.states import State

    from interleaf.flows.generate import generate_flow

    try:
        state: State[Any] = generate_flow(  # type: ignore[assignment]  # a sync flow returns its state
            graph=str(opts.graph), seeds=str(opts.seeds), out=str(opts.out), store=opts.store,
            shard_size=opts.shard_size, limit=opts.limit, concurrency=opts.concurrency,
            force_new_run=opts.force_new_run, export_format=None, preflight=opts.preflight,
            rerun_changed=opts.rerun_changed, return_state=True,
        )
    except InterleafError:
        raise
    except (RuntimeError, OSError) as exc:
        if "Prefect" not in str(exc) and "prefect" not in type(exc).__module__:
            raise
        raise ServiceUnavailableError(
            f"the Prefect API could not be reached ({exc}); set PREFECT_API_URL to a running server "
            "(prefect server start), or run without --orchestrate. Nothing was run."
        ) from None
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    return RunOutcome(run_id=data["run_id"], where=data["where"], graph=data["graph"],
                      totals=RunTotals.model_validate(data["totals"]), outcome=data["outcome"],
                      message=data["message"])


class _LockWatch:
    """Turns a lost writer lock (noticed on the renewal thread) into a stop of the batch.

    The lock is taken inside :func:`open_run`, before the Run exists, so the run is bound
    afterwards; a loss before that is kept and applied at binding.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._run: Run | None = None
        self._mutex = threading.Lock()

    def bind(self, run: Run) -> None:
        with self._mutex:
            self._run = run
            if self.reason is not None:
                run.request_stop(self.reason)

    def __call__(self, reason: str) -> None:
        with self._mutex:
            self.reason = reason
            if self._run is not None:
                self._run.request_stop(reason)


def run_plain(opts: RunOptions, *, on_done: Callable[[str, str], Any] | None = None) -> RunOutcome:
    """Run the graph over the seeds in this process (see the module docstring for the order)."""
    # Check the whole seeds file first: a bad line 9,000 should not stop a run half-way.
    scan = scan_seeds(opts.seeds, limit=opts.limit)
    reset_endpoint_health()  # a new invocation: no endpoint is known to be down yet
    watch = _LockWatch()
    run = open_run(opts.graph, opts.out, opts.store, seeds_path=opts.seeds, force_new_run=opts.force_new_run,
                   concurrency=opts.concurrency, on_lock_lost=watch)
    watch.bind(run)
    if may_use_processes(opts.workers, scan.count):
        # Only once this invocation is the run's writer: a refused second run starts nothing.
        warm_up()
    started_at = time.time()
    ledger = CallLedger()  # calls made outside any dialogue: the preflight
    notes: list[str] = [run.lock.takeover] if run.lock is not None and run.lock.takeover else []
    outcome: RunOutcome | None = None
    totals = RunTotals()
    chosen = {"processes": 1}
    try:
        async def main() -> RunTotals:
            try:
                changed = await check_changed_seeds(run, opts.seeds, fingerprint=scan.fingerprint, limit=opts.limit,
                                                    rerun_changed=opts.rerun_changed)
                if changed:
                    notes.append(f"redid {len(changed)} changed seed(s)")
                run.record_seeds(opts.seeds, scan.fingerprint)
                pending = await run.pending_seeds(read_seeds(opts.seeds, limit=opts.limit))
                if pending and opts.preflight:
                    await preflight_run(run, ledger)
                processes = chosen["processes"] = choose_processes(run, opts.workers, len(pending), opts.concurrency)
                if opts.workers is not None and processes < min(opts.workers, len(pending)):
                    notes.append(f"--workers {opts.workers} lowered to {processes}: the dialogues in flight and "
                                 "every model's max_concurrency are totals, at least 1 a process")
                if processes > 1:
                    notes.append(f"{processes} worker processes")
                return await _run_batch(run, opts, scan, on_done, processes)
            finally:
                await run.aclose()
                await close_litellm_logging()

        try:
            with _stop_on_sigterm(run):
                totals = asyncio.run(main())
        except KeyboardInterrupt:
            totals = _unfinished(run, scan)
            outcome = _outcome(run, totals, "interrupted", "interrupted by the user")
        except (RunLockLostError, StoreUnavailableError) as exc:
            totals = _unfinished(run, scan)
            outcome = _outcome(run, totals, "stopped", str(exc))
        except InterleafError as exc:
            # Refused before the batch (changed seeds, preflight): record what was sent, then exit 2.
            _record(run, ledger.totals, started_at, "refused", str(exc), scan)
            raise
        if outcome is None:
            totals = totals.merge(ledger.totals)
            if run.stopped is not None:
                outcome = _outcome(run, totals, "stopped", str(run.stopped))
            elif watch.reason is not None:
                outcome = _outcome(run, totals, "stopped", watch.reason)
            elif run.stop_reason is not None:
                outcome = _outcome(run, totals, "interrupted", run.stop_reason)
            else:
                outcome = _outcome(run, totals, "finished", None)
        else:
            outcome.totals = outcome.totals.merge(ledger.totals)
        outcome.notes += notes
        _record(run, outcome.totals, started_at, outcome.outcome, outcome.message, scan, chosen["processes"])
        if outcome.outcome == "finished":
            outcome.notes += _write_reports(run)
        return outcome
    finally:
        run.release()


@contextmanager
def _stop_on_sigterm(run: Run) -> Iterator[None]:
    """SIGTERM (a pod eviction, ``kill``, a cancelled job) stops the batch like Ctrl-C, recorded."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        run.request_stop("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _run_batch(run: Run, opts: RunOptions, scan: SeedScan,
                     on_done: Callable[[str, str], Any] | None, processes: int) -> RunTotals:
    seeds = read_seeds(opts.seeds, limit=opts.limit)

    async def batch(callback: Callable[[str, str], Any] | None) -> RunTotals:
        if processes > 1:
            return await arun_in_processes(run, seeds, processes=processes, concurrency=opts.concurrency,
                                           on_done=callback)
        return await run.arun_seeds(seeds, concurrency=opts.concurrency, on_done=callback)

    if not opts.progress:
        return await batch(on_done)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[tally]}"), TimeElapsedColumn())
    tally: Counter[str] = Counter()
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(run.spec.name, total=scan.count, tally="")

        def done(seed_id: str, outcome: str) -> None:
            tally[outcome] += 1
            progress.update(task, advance=1, tally=", ".join(f"{n} {k}" for k, n in sorted(tally.items())))
            if on_done is not None:
                on_done(seed_id, outcome)

        return await batch(done)


def _unfinished(run: Run, scan: SeedScan) -> RunTotals:
    """Totals of a batch that did not return: what it sent, and its seeds not finished as pending."""
    totals = run.partial_totals()
    totals.seeds = scan.count
    totals.pending = max(0, scan.count - totals.done - totals.failed - totals.skipped)
    return totals


def _outcome(run: Run, totals: RunTotals, outcome: str, message: str | None) -> RunOutcome:
    return RunOutcome(run_id=run.run_id, where=run.where, graph=run.spec.name, totals=totals,
                      outcome=outcome, message=message)  # type: ignore[arg-type]


def _record(run: Run, totals: RunTotals, started_at: float, outcome: str, message: str | None,
            scan: SeedScan, processes: int = 1) -> None:
    try:
        run.record_invocation(totals, started_at=started_at, outcome=outcome, message=message, seeds=scan.count,
                              processes=processes)
    except (OSError, StoreUnavailableError) as exc:
        # The store is gone (that may be why we stopped): the statuses written so far are the record.
        log.error("could not record this invocation in the manifest: %s", exc)


def _write_reports(run: Run) -> list[str]:
    """Rebuild the run-level reports (the graph's, and pruning quality on simulator runs).

    A failure is a note, never a lost run.
    """
    notes: list[str] = []
    if run.spec.reports:
        try:
            keys = write_reports(run.store)
        except (InterleafError, OSError) as exc:
            notes.append(f"reports not written: {exc}; rebuild them with: interleaf report {run.where}")
        else:
            if keys:
                notes.append(f"reports: {', '.join(run.store.url(k) for k in keys)}")
    try:
        quality = write_pruning_quality(run.store)
    except (InterleafError, OSError) as exc:
        notes.append(f"pruning-quality report not written: {exc}")
    else:
        if quality:
            notes.append(f"pruning quality: {run.store.url(quality[-1])}")
    return notes


__all__ = ["RunOptions", "run_from_cli", "run_orchestrated", "run_plain"]
