"""One shard's work, independent of Prefect: skip if recorded done, else run its dialogues.

The Prefect task in :mod:`interleaf.flows.generate` is a thin wrapper around
:func:`execute_shard`, so calling it directly (a script, a notebook, a test) skips finished
shards and records new ones exactly as a flow run does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interleaf.errors import InterleafError
from interleaf.flows.limits import hold_slots
from interleaf.flows.shards import Shard, ShardLedger, ShardRecord

if TYPE_CHECKING:
    from interleaf.runner import Run, RunSummary
    from interleaf.state import Seed


class ShardFailedError(InterleafError):
    """Some dialogues of a shard failed; raising makes Prefect retry the shard with backoff."""


@dataclass(frozen=True)
class ShardJob:
    """The inputs every shard of one flow run shares (plain values: it travels to Dask/Ray workers)."""

    graph: str
    out: str
    store: str | None
    seeds: str
    graph_hash: str
    concurrency: int | None = None
    limit_names: tuple[str, ...] = ()


@dataclass
class ShardOutcome:
    """A shard's record and whether this call skipped it as already done."""

    record: ShardRecord
    skipped: bool = False


def summary_from_dict(data: dict[str, Any]) -> RunSummary:
    """Rebuild a :class:`~interleaf.runner.RunSummary` from its ``to_dict()`` form, ignoring unknown keys."""
    import dataclasses

    from interleaf.runner import RunSummary

    names = {f.name for f in dataclasses.fields(RunSummary)}
    return RunSummary(**{k: v for k, v in data.items() if k in names})


def combine_attempts(previous: RunSummary | None, current: RunSummary) -> RunSummary:
    """A shard's running total: work of every attempt, failures of the latest one.

    Dialogues an earlier attempt finished show up as "skipped" in the next attempt; they are
    counted once, as done.
    """
    if previous is None:
        return current
    total = previous.merge(current)
    total.failed = current.failed
    total.failed_reasons = current.failed_reasons
    total.skipped = max(0, current.skipped - previous.done)
    return total


async def _run_dialogues(run: Run, seeds: Sequence[Seed], concurrency: int | None,
                         limit_names: Sequence[str]) -> RunSummary:
    if not limit_names:
        return await run.arun_seeds(seeds, concurrency=concurrency)
    # With shared limits every dialogue takes its slots before it starts, so the slots,
    # not this process, decide how many dialogues run at once across all workers.
    width = concurrency or run.default_concurrency
    gate = asyncio.Semaphore(width)

    async def one(seed: Seed) -> RunSummary:
        async with gate, hold_slots(limit_names):
            return await run.arun_seeds([seed], concurrency=1)

    from interleaf.runner import RunSummary

    started = time.perf_counter()
    parts = await asyncio.gather(*(one(s) for s in seeds))
    total = RunSummary()
    for part in parts:
        total = total.merge(part)
    total.seconds = time.perf_counter() - started  # wall time, not the sum of the dialogues'
    return total


async def execute_shard(job: ShardJob, shard: Shard) -> ShardOutcome:
    """Run ``shard`` unless the run's ledger has it done; record the result; raise if dialogues failed."""
    from interleaf.runner import open_run

    key = shard.cache_key(job.graph_hash)
    # The flow opened the run (manifest, seeds hash) already; a shard only resumes it.
    run = open_run(job.graph, Path(job.out), job.store, concurrency=job.concurrency)
    try:
        ledger = ShardLedger(run.store)
        previous = ledger.read(key)
        if previous is not None and previous.status == "done":
            return ShardOutcome(record=previous, skipped=True)
        summary = await _run_dialogues(run, shard.seeds, job.concurrency, job.limit_names)
        errors = _dialogue_errors(run, shard.seeds) if summary.failed else []
    finally:
        await run.aclose()
    total = combine_attempts(summary_from_dict(previous.summary) if previous else None, summary)
    status = "failed" if summary.failed else "done"
    error = None
    if summary.failed:
        shown = "; ".join(errors[:3]) or _first_reasons(summary)
        error = f"{summary.failed} of {len(shard.seeds)} dialogues failed: {shown}"
    record = ShardRecord(
        key=key,
        index=shard.index,
        graph_hash=job.graph_hash,
        content_hash=shard.content_hash,
        seed_ids=[s.id for s in shard.seeds],
        status=status,
        attempts=(previous.attempts + 1) if previous else 1,
        summary=total.to_dict(),
        error=error,
    )
    ledger.write(record)
    if error:
        raise ShardFailedError(f"{shard.name}: {error}")
    return ShardOutcome(record=record)


def _dialogue_errors(run: Run, seeds: Sequence[Seed]) -> list[str]:
    """``seed id: error`` of the shard's failed dialogues, from the run's status index."""
    from interleaf.storage.manifest import status_key

    out = []
    for seed in seeds:
        status = run.store.get_json_or_none(status_key(seed.id))
        if isinstance(status, dict) and status.get("status") == "failed":
            out.append(f"{seed.id}: {status.get('error') or status.get('reason') or 'failed'}")
    return out


def _first_reasons(summary: RunSummary, limit: int = 3) -> str:
    items = sorted(summary.failed_reasons.items(), key=lambda kv: -kv[1])[:limit]
    return "; ".join(f"{reason} x{n}" for reason, n in items) or "no reason recorded"
