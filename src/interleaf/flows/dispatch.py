"""How the pending shards of one generate flow run are run: here, or as flow runs any worker takes.

Two dispatchers, one contract: each runs the shards it is given, retries a failed one up to
``retries`` times with the given delays, and reports every shard exactly once, as a
:class:`ShardResult`, through ``on_result``. Everything else (the ledger, the totals, the
manifest, the export, the artifacts) is the flow's, and the same for both.

- :func:`run_in_process`: each shard is a task run of this flow run, through a task runner
  (threads here, or a Dask cluster); Prefect retries the task.
- :func:`run_on_deployment`: each shard is a flow run of the ``interleaf-shard`` deployment
  (:mod:`interleaf.flows.shard_flow`), started with ``run_deployment(..., as_subflow=True,
  timeout=0)``, so any worker of its pool can take it; a retry is a fresh flow run.

Either way the shard's coroutine runs on **one event loop per process** (Prefect's
``run_coro_as_sync`` loop): litellm keeps one process-wide logging worker bound to the
event loop that used it first, and shards on per-thread loops (what Prefect's thread pool
does with an async task) made it hop between loops, dropping and re-running its callbacks
("Task was destroyed but it is pending!", "cannot reuse already awaited coroutine").
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling, State
from prefect.utilities.asyncutils import run_coro_as_sync

from interleaf.errors import InterleafError
from interleaf.flows.shard_work import ShardJob, ShardStoppedError, execute_shard
from interleaf.flows.shards import Shard, ShardLedger
from interleaf.flows.taskrunners import TaskRunnerName, make_task_runner
from interleaf.run.records import ShardRecord
from interleaf.run.totals import RunTotals
from interleaf.runner import request_stop_all
from interleaf.storage.store import ObjectStore

#: Name of the final state of a shard flow run stopped by a systemic failure (a Failed state).
STOPPED_STATE_NAME = "Stopped"
#: Prefix of the tag each shard flow run carries with its shard key (a retried parent adopts it).
SHARD_TAG_PREFIX = "interleaf-shard:"
#: Seconds between polls of the shard flow runs in flight.
POLL_INTERVAL_S = 1.0
#: A shard flow run still waiting for a worker after this long is reported in the log.
WAITING_NOTE_S = 60.0

ShardOutcomeKind = Literal["done", "skipped", "stopped", "failed"]


@dataclass(frozen=True)
class ShardResult:
    """How one shard ended in this flow run.

    ``record`` is the shard's ledger record (None for a shard stopped before it wrote one);
    ``error`` is why it failed, or why it was stopped.
    """

    shard: Shard
    outcome: ShardOutcomeKind
    record: ShardRecord | None
    error: str | None = None


OnResult = Callable[[ShardResult], None]


class ShardDispatchError(InterleafError):
    """The shard deployment cannot be used (not deployed on this server)."""


# -- one shard, on this process's event loop ---------------------------------------------------


async def _shard_payload(job: ShardJob, shard: Shard) -> dict[str, Any]:
    try:
        outcome = await execute_shard(job, shard)
    except ShardStoppedError as exc:
        record = ShardLedger(ObjectStore(job.store)).read(shard.cache_key(job.graph_hash))
        return {"record": None if record is None else record.model_dump(mode="json"), "skipped": False,
                "stopped": str(exc)}
    return {"record": outcome.record.model_dump(mode="json"), "skipped": outcome.skipped, "stopped": None}


def run_shard_blocking(job: ShardJob, shard: Shard) -> dict[str, Any]:
    """Run one shard to its end on this process's one shared event loop; a JSON-able summary.

    Returns ``{"record", "skipped", "stopped"}`` (``stopped``: why a systemic failure stopped
    it); raises :class:`~interleaf.flows.shard_work.ShardFailedError` when dialogues failed.
    """
    # Not asyncio.run: every shard of the process must share one loop (see the module docstring).
    result: dict[str, Any] = run_coro_as_sync(_shard_payload(job, shard))  # type: ignore[assignment]
    return result


@task(name="shard", cache_policy=NO_CACHE, persist_result=False)
def shard_task(job: ShardJob, shard: Shard) -> dict[str, Any]:
    """Run one shard's dialogues (a task run per shard, retried with backoff on failures).

    A shard stopped by a systemic failure returns (no retry: the endpoint is down for every
    shard) with its record saying so; the flow then reports the run stopped.
    """
    return run_shard_blocking(job, shard)


def stop_runs_on_sigterm(logger: Any) -> Callable[[], Any]:
    """A cancelled flow run gets SIGTERM from its worker: stop the runs of this process within
    seconds (dialogues in flight keep their checkpoints), so the flow still records what was done
    and releases its lock and limit slots before the worker's grace period ends. Returns the
    function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        n = request_stop_all("the flow run was cancelled or terminated (SIGTERM)")
        logger.warning("SIGTERM: stopping %d open run(s); unfinished seeds stay pending", n)

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def failed_record(ledger: ShardLedger, job: ShardJob, shard: Shard, message: str | None) -> ShardRecord:
    """The ledger's record of a shard that ended failed, or one made up from ``message`` when none was written."""
    record = ledger.read(shard.cache_key(job.graph_hash))
    if record is not None and record.status == "failed":
        return record
    message = message or "shard crashed"
    return ShardRecord(
        key=shard.cache_key(job.graph_hash), index=shard.index, graph_hash=job.graph_hash,
        content_hash=shard.content_hash, seed_ids=[s.id for s in shard.seeds], status="failed",
        totals=RunTotals(seeds=len(shard.seeds), failed=len(shard.seeds),
                         failed_reasons={"shard_crashed": len(shard.seeds)}),
        error=message,
    )


# -- dispatch 1: task runs of this flow run ------------------------------------------------------


def run_in_process(job: ShardJob, pending: Sequence[Shard], *, ledger: ShardLedger, on_result: OnResult,
                   task_runner: TaskRunnerName, max_parallel: int, cluster_address: str | None,
                   retries: int, delays: list[float]) -> None:
    """Run ``pending`` as task runs named ``shard-NNNNN`` through the task runner; Prefect retries them."""
    with make_task_runner(task_runner, max_parallel, cluster_address) as runner:
        futures = [
            (shard, runner.submit(
                shard_task.with_options(task_run_name=shard.name, retries=retries, retry_delay_seconds=delays),
                parameters={"job": job, "shard": shard},
            ))
            for shard in pending
        ]
        for shard, future in futures:
            future.wait()
            state = future.state
            if not state.is_completed():
                failed = failed_record(ledger, job, shard, state.message)
                on_result(ShardResult(shard, "failed", failed, failed.error or state.message or "failed"))
                continue
            payload = future.result()
            if payload["skipped"]:
                on_result(ShardResult(shard, "skipped", None))
                continue
            record = None if payload["record"] is None else ShardRecord.model_validate(payload["record"])
            if payload["stopped"]:
                on_result(ShardResult(shard, "stopped", record, payload["stopped"]))
            else:
                on_result(ShardResult(shard, "done", record))


# -- dispatch 2: flow runs of the shard deployment ---------------------------------------------


def shard_flow_parameters(job: ShardJob, shard: Shard, *, shard_size: int, limit: int | None) -> dict[str, Any]:
    """The shard flow's parameters: the job and where the shard lies in the seeds file, not its seeds.

    >>> from interleaf.state import Seed
    >>> job = ShardJob(graph="g.yaml", store="file:///r", seeds="/s.jsonl", graph_hash="h", limit_names=("gpu",))
    >>> p = shard_flow_parameters(job, Shard.of(3, [Seed(id="a", prompt="x")]), shard_size=50, limit=None)
    >>> (p["shard_index"], p["shard_size"], p["limit_names"], "seeds" in p)
    (3, 50, ['gpu'], True)
    """
    return {
        "graph": job.graph, "store": job.store, "seeds": job.seeds, "graph_hash": job.graph_hash,
        "shard_index": shard.index, "shard_size": shard_size, "content_hash": shard.content_hash,
        "limit": limit, "concurrency": job.concurrency, "limit_names": list(job.limit_names),
        "rate_limits": job.rate_limits,
    }


def shard_tag(job: ShardJob, shard: Shard) -> str:
    """The tag naming a shard flow run's shard (its ledger key), so a later parent can find it."""
    return f"{SHARD_TAG_PREFIX}{shard.cache_key(job.graph_hash)}"


@dataclass
class _InFlight:
    shard: Shard
    attempt: int  # 0 for the first flow run of the shard, 1 for its first retry, ...
    started: float = field(default_factory=time.monotonic)
    noted: bool = False


@dataclass
class _Dispatch:
    job: ShardJob
    ledger: ShardLedger
    on_result: OnResult
    deployment: str
    shard_size: int
    limit: int | None
    max_parallel: int
    retries: int
    delays: list[float]
    stop_requested: Callable[[], str | None]
    logger: Any
    run_name: str
    poll_s: float = POLL_INTERVAL_S
    queue: list[tuple[Shard, int]] = field(default_factory=list)
    retry_at: list[tuple[float, Shard, int]] = field(default_factory=list)
    inflight: dict[UUID, _InFlight] = field(default_factory=dict)
    halted: str | None = None  # why no further shard flow run starts

    async def run(self, pending: Sequence[Shard]) -> None:
        async with get_client() as client:
            try:
                deployment = await client.read_deployment_by_name(self.deployment)
            except ObjectNotFound:
                raise ShardDispatchError(
                    f"shard deployment {self.deployment!r} is not deployed on this Prefect server: run "
                    "`prefect --no-prompt deploy --all` from the repository root (or pick shard_dispatch=local)"
                ) from None
            self.queue = [(shard, 0) for shard in pending]
            await self._adopt(client, deployment.id)
            while self.queue or self.retry_at or self.inflight:
                await self._check_stop(client)
                await self._launch_ready(client)
                await self._collect(client)
                if self.queue or self.retry_at or self.inflight:
                    await asyncio.sleep(self.poll_s)

    async def _adopt(self, client: PrefectClient, deployment_id: UUID) -> None:
        """Shard flow runs of an earlier attempt of this run (a parent that crashed) still going:
        wait for them instead of starting the same shards twice."""
        tags = {shard_tag(self.job, shard): shard for shard, _ in self.queue}
        if not tags:
            return
        live = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            tags=FlowRunFilterTags(any_=list(tags)),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[
                StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING])),
        ))
        adopted: set[int] = set()
        for flow_run in live:
            shard = next((tags[t] for t in flow_run.tags if t in tags), None)
            if shard is None or shard.index in adopted:
                continue
            adopted.add(shard.index)
            self.inflight[flow_run.id] = _InFlight(shard, 0)
            self.logger.info("%s: waiting for its flow run %r, started earlier and still %s", shard.name,
                             flow_run.name, flow_run.state_type.value if flow_run.state_type else "live")
        self.queue = [(shard, attempt) for shard, attempt in self.queue if shard.index not in adopted]

    async def _check_stop(self, client: PrefectClient) -> None:
        reason = self.stop_requested()
        if reason is None or self.halted == reason:
            return
        # This flow run was cancelled: its shard flow runs are cancelled too (each stops and
        # records what it did), and nothing new starts.
        self._halt(reason)
        for flow_run_id in list(self.inflight):
            try:
                await client.set_flow_run_state(flow_run_id, Cancelling(message=reason), force=True)
            except Exception as exc:  # an API hiccup must not lose the other results
                self.logger.warning("could not cancel shard flow run %s: %s", flow_run_id, exc)

    def _halt(self, reason: str) -> None:
        """No more shard flow runs start: queued shards stay pending, waiting retries end failed."""
        if self.halted is None:
            self.halted = reason
        for shard, _ in self.queue:
            self.on_result(ShardResult(shard, "stopped", None, reason))
        self.queue = []
        for _, shard, _ in self.retry_at:
            record = failed_record(self.ledger, self.job, shard, "not retried: the run was stopped")
            self.on_result(ShardResult(shard, "failed", record, record.error))
        self.retry_at = []

    async def _launch_ready(self, client: PrefectClient) -> None:
        now = time.monotonic()
        due = sorted((item for item in self.retry_at if item[0] <= now), key=lambda item: item[0])
        self.retry_at = [item for item in self.retry_at if item[0] > now]
        ready = [(shard, attempt) for _, shard, attempt in due] + self.queue
        self.queue = []
        for i, (shard, attempt) in enumerate(ready):
            if len(self.inflight) >= self.max_parallel:
                self.queue = ready[i:] + self.queue
                return
            name = f"{self.run_name}-{shard.name}" + (f"-retry{attempt}" if attempt else "")
            flow_run = await arun_deployment(
                self.deployment, client=client, timeout=0, as_subflow=True, flow_run_name=name,
                parameters=shard_flow_parameters(self.job, shard, shard_size=self.shard_size, limit=self.limit),
                tags=[shard_tag(self.job, shard)],
            )
            self.inflight[flow_run.id] = _InFlight(shard, attempt)

    async def _collect(self, client: PrefectClient) -> None:
        if not self.inflight:
            return
        runs: list[FlowRun] = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(self.inflight))))
        for flow_run in runs:
            state = flow_run.state
            entry = self.inflight.get(flow_run.id)
            if entry is None or state is None:
                continue
            if not state.is_final():
                self._note_waiting(flow_run, entry, state)
                continue
            del self.inflight[flow_run.id]
            self._finished(entry, state, flow_run.name)

    def _note_waiting(self, flow_run: FlowRun, entry: _InFlight, state: State[Any]) -> None:
        if entry.noted or not (state.is_scheduled() or state.is_pending()):
            return
        if time.monotonic() - entry.started >= WAITING_NOTE_S:
            entry.noted = True
            self.logger.warning("%s: flow run %r still %s after %.0f s: is a worker running on the shard "
                                "deployment's pool?", entry.shard.name, flow_run.name, state.name,
                                time.monotonic() - entry.started)

    def _finished(self, entry: _InFlight, state: State[Any], flow_run_name: str) -> None:
        shard = entry.shard
        key = shard.cache_key(self.job.graph_hash)
        if state.is_completed():
            record = self.ledger.read(key)
            if record is not None and record.status == "done":
                self.on_result(ShardResult(shard, "done", record))
                return
            message = f"flow run {flow_run_name!r} completed but the run's store has no finished record of it"
        elif state.is_cancelled() or (state.is_failed() and state.name == STOPPED_STATE_NAME):
            reason = state.message or f"shard flow run {flow_run_name!r} was cancelled"
            self.on_result(ShardResult(shard, "stopped", self.ledger.read(key), reason))
            # A systemic failure (the other shards would hit it too) or a person's cancel: stop.
            self._halt(reason)
            return
        else:  # Failed, Crashed
            message = state.message or f"flow run {flow_run_name!r} ended {state.name}"
        if entry.attempt < self.retries and self.halted is None:
            delay = self.delays[entry.attempt]
            self.logger.warning("%s: flow run %r ended %s (%s); retry %d of %d in %.0f s", shard.name,
                                flow_run_name, state.name, message, entry.attempt + 1, self.retries, delay)
            self.retry_at.append((time.monotonic() + delay, shard, entry.attempt + 1))
            return
        record = failed_record(self.ledger, self.job, shard, message)
        self.on_result(ShardResult(shard, "failed", record, record.error or message))


def run_on_deployment(job: ShardJob, pending: Sequence[Shard], *, ledger: ShardLedger, on_result: OnResult,
                      deployment: str, shard_size: int, limit: int | None, max_parallel: int, retries: int,
                      delays: list[float], stop_requested: Callable[[], str | None], logger: Any,
                      run_name: str) -> None:
    """Run ``pending`` as flow runs of ``deployment`` (subflows of this flow run), at most
    ``max_parallel`` at once, each retried as a fresh flow run after ``delays[i]`` seconds.

    ``stop_requested()`` returning a reason (this flow run was cancelled) cancels the shard flow
    runs in flight and starts no more. A shard stopped by a systemic failure starts no more
    either; the ones in flight finish (they stop on the same failure by themselves).
    """
    dispatch = _Dispatch(job=job, ledger=ledger, on_result=on_result, deployment=deployment,
                         shard_size=shard_size, limit=limit, max_parallel=max_parallel, retries=retries,
                         delays=delays, stop_requested=stop_requested, logger=logger, run_name=run_name)
    run_coro_as_sync(dispatch.run(pending))
