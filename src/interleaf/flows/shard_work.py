"""One shard's work, independent of Prefect: skip if recorded done, else run its dialogues.

The Prefect task in :mod:`interleaf.flows.generate` is a thin wrapper around
:func:`execute_shard`, so calling it directly (a script, a notebook, a test) skips finished
shards and records new ones exactly as a flow run does.

A shard *attaches* to the run the flow opened (:func:`~interleaf.runner.attach_run`): it
writes dialogues, statuses, checkpoints and its own shard record, never the run's manifest,
graph copy, pointer or lock, so parallel shards cannot clobber each other's bookkeeping and a
worker on another machine writes nothing to its own disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from interleaf.errors import InterleafError
from interleaf.flows.limits import PrefectRequestGate, hold_slots, plan_rate_limits
from interleaf.flows.shards import Shard, ShardLedger
from interleaf.models.client import close_litellm_logging
from interleaf.models.ratelimit import using_request_gate
from interleaf.run.records import ShardRecord
from interleaf.run.totals import RunTotals
from interleaf.runner import Run, attach_run, dialogue_errors
from interleaf.state import Seed


class ShardFailedError(InterleafError):
    """Some dialogues of a shard failed; raising makes Prefect retry the shard with backoff."""


class ShardStoppedError(InterleafError):
    """A systemic failure (endpoint down, bad key) stopped the shard; its unfinished seeds stay pending."""


@dataclass(frozen=True)
class ShardJob:
    """The inputs every shard of one flow run shares (plain values: it travels to Dask workers)."""

    graph: str
    store: str
    seeds: str
    graph_hash: str
    concurrency: int | None = None
    limit_names: tuple[str, ...] = ()
    #: The parent created the graph's request/token rate limits on the Prefect server: every
    #: request of the shard passes them (:class:`~interleaf.flows.limits.PrefectRequestGate`).
    rate_limits: bool = False


@dataclass
class ShardOutcome:
    """A shard's record and whether this call skipped it as already done."""

    record: ShardRecord
    skipped: bool = False


def combine_attempts(previous: RunTotals | None, current: RunTotals) -> RunTotals:
    """A shard's running total: calls of every attempt, seed outcomes of the latest one.

    Dialogues an earlier attempt finished show up as "skipped" in the next attempt; they are
    counted once, as done.

    >>> first = RunTotals(seeds=2, done=1, failed=1, calls=5)
    >>> again = RunTotals(seeds=2, done=1, skipped=1, calls=3)
    >>> t = combine_attempts(first, again)
    >>> (t.done, t.failed, t.skipped, t.calls)
    (2, 0, 0, 8)
    """
    if previous is None:
        return current
    total = previous.merge(current)
    total.seeds = current.seeds
    total.failed = current.failed
    total.pending = current.pending
    total.failed_reasons = current.failed_reasons
    total.skipped = max(0, current.skipped - previous.done)
    return total


async def _run_dialogues(run: Run, seeds: Sequence[Seed], concurrency: int | None,
                         limit_names: Sequence[str]) -> RunTotals:
    if not limit_names:
        return await run.arun_seeds(seeds, concurrency=concurrency)
    # With shared limits every dialogue takes its slots before it starts, so the slots,
    # not this process, decide how many dialogues run at once across all workers.
    width = concurrency or run.default_concurrency
    gate = asyncio.Semaphore(width)

    async def one(seed: Seed) -> RunTotals:
        async with gate, hold_slots(limit_names):
            part = await run.arun_seeds([seed], concurrency=1)
            if _halted(run):
                raise ShardStoppedError(_halted(run) or "stopped")
            return part

    started = time.perf_counter()
    results = await asyncio.gather(*(one(s) for s in seeds), return_exceptions=True)
    stopped = next((r for r in results if isinstance(r, ShardStoppedError)), None)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, ShardStoppedError):
            raise r
    total = RunTotals.sum(r for r in results if isinstance(r, RunTotals))
    total.seeds = len(seeds)
    total.pending = len(seeds) - total.done - total.failed - total.skipped
    total.seconds = time.perf_counter() - started  # wall time, not the sum of the dialogues'
    if stopped is not None and not _halted(run):
        raise stopped
    return total


async def execute_shard(job: ShardJob, shard: Shard) -> ShardOutcome:
    """Run ``shard`` unless the run's ledger has it done; record the result; raise if dialogues failed.

    Raises :class:`ShardStoppedError` when a systemic failure stopped it (the record says
    failed, its unfinished seeds pending), :class:`ShardFailedError` when dialogues failed.
    """
    key = shard.cache_key(job.graph_hash)
    run = attach_run(job.graph, job.store, concurrency=job.concurrency)
    try:
        ledger = ShardLedger(run.store)
        previous = ledger.read(key)
        if previous is not None and previous.status == "done":
            return ShardOutcome(record=previous, skipped=True)
        gate = PrefectRequestGate(plan_rate_limits(run.spec)) if job.rate_limits else None
        try:
            with using_request_gate(gate):
                totals = await _run_dialogues(run, shard.seeds, job.concurrency, job.limit_names)
        except ShardStoppedError:
            totals = run.partial_totals()
            totals.seeds = len(shard.seeds)
            totals.pending = len(shard.seeds) - totals.done - totals.failed - totals.skipped
        errors = dialogue_errors(run.store, [s.id for s in shard.seeds]) if totals.failed else []
    finally:
        await run.aclose()
        # The flow-run process ends soon after its shards: litellm's logging worker must not be
        # left pending on this loop ("Task was destroyed but it is pending!" at exit).
        await close_litellm_logging()
    total = combine_attempts(previous.totals if previous else None, totals)
    error = None
    halted = _halted(run)
    if halted:
        error = f"stopped with {totals.pending} of {len(shard.seeds)} seeds pending: {halted}"
    elif totals.failed:
        shown = "; ".join(errors[:3]) or _first_reasons(totals)
        error = f"{totals.failed} of {len(shard.seeds)} dialogues failed: {shown}"
    record = ShardRecord(
        key=key, index=shard.index, graph_hash=job.graph_hash, content_hash=shard.content_hash,
        seed_ids=[s.id for s in shard.seeds], status="failed" if error else "done",
        attempts=(previous.attempts + 1) if previous else 1, totals=total, error=error,
    )
    ledger.write(record)
    if halted:
        raise ShardStoppedError(f"{shard.name}: {error}")
    if error:
        raise ShardFailedError(f"{shard.name}: {error}")
    return ShardOutcome(record=record)


def _halted(run: Run) -> str | None:
    """Why the run's batches were stopped (an endpoint down, a cancelled flow run), else None."""
    if run.stopped is not None:
        return str(run.stopped)
    return run.stop_reason


def _first_reasons(totals: RunTotals, limit: int = 3) -> str:
    items = sorted(totals.failed_reasons.items(), key=lambda kv: -kv[1])[:limit]
    return "; ".join(f"{reason} x{n}" for reason, n in items) or "no reason recorded"
