"""The ``interleaf-generate`` Prefect flow: seeds -> shards -> dialogues -> export.

The flow opens (or resumes) the run once, holding its writer lock for the whole flow run
(owner: the flow-run id), splits the seeds into shards, runs each shard as a Prefect task
named ``shard-NNNNN`` through the chosen task runner, and ends with an export step and UI
artifacts. Shards attach to the opened run (:func:`~interleaf.runner.attach_run`) and call
the same engine as a plain ``interleaf run``, so both paths write the same run layout; only
the flow writes the manifest.

Re-running with the same inputs skips shards recorded done in the run's store
(``shards/<key>.json``, key = graph hash + shard content hash). Prefect's own result cache
is deliberately off for shard tasks: its records live in a result store that, outside a
saved storage block, is local to one machine and outlives the run it describes, so a
deleted or moved run would be "cached" with nothing in it. The ledger lives with the run.

Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the flow run
(about 5 s, 10 s the first time a ``PREFECT_HOME`` is used); with it, runs are recorded on
that server and visible in its UI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import Field

from interleaf.datasets.reports import write_reports
from interleaf.errors import InterleafError, Location, SeedError
from interleaf.flows.artifacts import publish_artifacts
from interleaf.flows.dispatch import OnResult, ShardResult, run_in_process, run_on_deployment, stop_runs_on_sigterm
from interleaf.flows.export import export_outputs
from interleaf.flows.limits import apply_limit_plan, apply_rate_plan, plan_limits, plan_rate_limits
from interleaf.flows.shard_work import ShardJob
from interleaf.flows.shards import Shard, ShardLedger, ShardRecord, iter_shards
from interleaf.flows.taskrunners import TaskRunnerName, check_task_runner
from interleaf.models.health import reset_endpoint_health
from interleaf.run.totals import CallLedger, RunTotals
from interleaf.runner import Run, check_changed_seeds, open_run, preflight_run
from interleaf.seeds import read_seeds, seeds_fingerprint

FLOW_NAME = "interleaf-generate"
#: The shard deployment of prefect.yaml that ``shard_dispatch="deployment"`` starts flow runs of.
SHARD_DEPLOYMENT = "interleaf-shard/shard-local"
MAX_RETRY_DELAY_S = 600.0


def retry_delays(retries: int, first_delay: float) -> list[float]:
    """Exponential backoff: ``first_delay``, twice that, ... capped at 10 minutes."""
    return [min(MAX_RETRY_DELAY_S, first_delay * 2**i) for i in range(retries)]


@task(name="prepare-run", cache_policy=NO_CACHE, persist_result=False)
def prepare_run(graph: str, out: str, store: str | None, seeds: str, force_new_run: bool,
                concurrency: int | None) -> Run:
    """Open (or create) the run once - lock, manifest, seeds hash, run pointer - so shards only attach to it."""
    from prefect.runtime import flow_run

    owner = f"prefect flow run {flow_run.id}" if flow_run.id else "prefect flow run"
    run = open_run(graph, Path(out), store, seeds_path=seeds,  # type: ignore[arg-type]  # str keeps s3:// intact
                   force_new_run=force_new_run, concurrency=concurrency, lock_owner=owner)
    # Nothing ran on it yet, so closing only drops the compiled graph; the handle stays usable
    # for the manifest update at the end.
    run_coro_as_sync(run.aclose())
    return run


@task(name="export", cache_policy=NO_CACHE, persist_result=False)
def export_task(run_ref: str, fmt: str, out: str) -> str:
    """Export the run in ``fmt``."""
    return export_outputs(run_ref, fmt, out)


def flow_run_name(graph: str, out: str, when: datetime | None = None) -> str:
    """``<graph>-<out folder>-<UTC time>``: runs of different experiments stay apart in the UI.

    >>> flow_run_name("graphs/intermt.yaml", "runs/exp1", datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
    'intermt-exp1-20261203-0200'
    """
    when = when or datetime.now(UTC)
    folder = Path(out.rstrip("/")).name or "run"
    return f"{Path(graph).stem}-{folder}-{when:%Y%m%d-%H%M}"


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return flow_run_name(str(params.get("graph", "graph")), str(params.get("out", "run")))


ExportFormat = Literal["jsonl", "intermt", "align-anything", "hf"]
ShardDispatch = Literal["local", "deployment"]


@flow(name=FLOW_NAME, flow_run_name=_flow_run_name, persist_result=True, log_prints=True)
def generate_flow(
    graph: str,
    seeds: str,
    out: str,
    store: str | None = None,
    shard_size: Annotated[int, Field(ge=1)] = 100,
    limit: Annotated[int, Field(ge=1)] | None = None,
    concurrency: Annotated[int, Field(ge=1)] | None = None,
    max_parallel_shards: Annotated[int, Field(ge=1)] = 4,
    task_runner: TaskRunnerName = "threads",
    cluster_address: str | None = None,
    shard_retries: Annotated[int, Field(ge=0, le=20)] = 2,
    retry_delay_seconds: Annotated[float, Field(ge=0)] = 10.0,
    concurrency_limits: list[str] | None = None,
    limit_sizes: dict[str, int] | None = None,
    export_format: ExportFormat | None = "jsonl",
    export_out: str | None = None,
    force_new_run: bool = False,
    preflight: bool = True,
    rerun_changed: bool = False,
    shard_dispatch: ShardDispatch = "local",
    shard_deployment: str = SHARD_DEPLOYMENT,
) -> Any:
    """Generate dialogues for every seed, shard by shard, then export the run.

    Args:
        graph: Graph YAML path or built-in graph name.
        seeds: Seeds file: local path or s3:// URI, JSONL or Parquet.
        out: Run directory on the worker (running again resumes).
        store: Store URI for the run's data (file://..., s3://bucket/prefix); default: the run directory.
        shard_size: Seeds per shard; each shard is one task run.
        limit: Only the first N seeds.
        concurrency: Dialogues in flight per shard (default: the graph's defaults.concurrency).
        max_parallel_shards: Shards running at once (task runs here, or shard flow runs in flight).
        task_runner: Where shards run: threads in this process, or a Dask cluster of worker processes.
        cluster_address: Address of an existing Dask scheduler (default: start a local cluster).
        shard_retries: Retries of a shard whose dialogues failed.
        retry_delay_seconds: Delay before the first retry; doubles each retry.
        concurrency_limits: Extra Prefect global concurrency limits (a GPU pool, say) each dialogue holds a slot of.
        limit_sizes: Sizes to create or set for named limits before the run, e.g. {"gpu-pool-a": 4}.
        export_format: Dataset format exported at the end (jsonl, intermt, align-anything, hf); empty for none.
        export_out: Export folder (default: <out>/export/<format>).
        force_new_run: Start over even if the run directory holds a run of another graph.
        preflight: Probe every endpoint and image tool before the first shard (one tiny request each).
        rerun_changed: Redo seeds whose content changed since the run recorded them (else: refuse).
        shard_dispatch: "local": shards run inside this flow run (task_runner); "deployment": each shard is a
            flow run of shard_deployment, taken by any worker of its pool.
        shard_deployment: The shard deployment ("interleaf-shard/<name>") used with shard_dispatch="deployment".
    """
    logger = get_run_logger()
    check_task_runner(task_runner)  # before any money is spent
    started_at = time.time()
    # Every seed is checked before the run is touched: a bad line 9,000 stops nothing half-way.
    shards = list(iter_shards(read_seeds(seeds, limit=limit), shard_size))
    if not shards:
        raise SeedError("the seeds file holds no seeds", Location(seeds))
    seed_count = sum(len(shard.seeds) for shard in shards)
    reset_endpoint_health()  # a new run: no endpoint is known to be down
    run = prepare_run(graph, out, store, seeds, force_new_run, concurrency)
    restore = stop_runs_on_sigterm(logger)
    try:
        return _run_shards(
            run, shards, seed_count=seed_count, seeds=seeds, out=out, started_at=started_at,
            dispatch=_Dispatcher(mode=shard_dispatch, task_runner=task_runner, cluster_address=cluster_address,
                                 max_parallel=max_parallel_shards, deployment=shard_deployment,
                                 shard_size=shard_size, limit=limit),
            shard_retries=shard_retries, retry_delay_seconds=retry_delay_seconds,
            concurrency=concurrency, concurrency_limits=concurrency_limits, limit_sizes=limit_sizes,
            export_format=export_format, export_out=export_out, logger=logger,
            preflight=preflight, rerun_changed=rerun_changed, limit=limit,
        )
    finally:
        restore()
        run.release()


@dataclass(frozen=True)
class _Dispatcher:
    """How this flow run runs its pending shards (the only part the two dispatch modes differ in)."""

    mode: ShardDispatch
    task_runner: TaskRunnerName
    cluster_address: str | None
    max_parallel: int
    deployment: str
    shard_size: int
    limit: int | None

    def run(self, run: Run, job: ShardJob, pending: list[Shard], ledger: ShardLedger, on_result: OnResult,
            retries: int, delays: list[float], logger: Any) -> None:
        if self.mode == "local":
            run_in_process(job, pending, ledger=ledger, on_result=on_result, task_runner=self.task_runner,
                           max_parallel=self.max_parallel, cluster_address=self.cluster_address,
                           retries=retries, delays=delays)
            return
        from prefect.runtime import flow_run

        run_on_deployment(job, pending, ledger=ledger, on_result=on_result, deployment=self.deployment,
                          shard_size=self.shard_size, limit=self.limit, max_parallel=self.max_parallel,
                          retries=retries, delays=delays, stop_requested=lambda: run.stop_reason,
                          logger=logger, run_name=str(flow_run.name or FLOW_NAME))


@dataclass
class _Tally:
    """What this invocation's shards did, added up one :class:`ShardResult` at a time."""

    total: RunTotals
    earlier: dict[int, ShardRecord | None]
    logger: Any
    ran: list[ShardRecord] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    skipped_shards: int = 0
    stopped: str | None = None

    def skip(self, shard: Shard) -> None:
        self.skipped_shards += 1
        self.total = self.total.merge(RunTotals(skipped=len(shard.seeds)))

    def add(self, result: ShardResult) -> None:
        shard = result.shard
        if result.outcome == "skipped":
            self.skip(shard)
            return
        if result.outcome == "stopped":
            self.stopped = self.stopped or result.error or "stopped"
        elif result.outcome == "failed":
            self.failed[shard.index] = result.error or "failed"
        record = result.record
        if record is None:  # stopped before the shard wrote anything: all its seeds are pending
            self.total = self.total.merge(RunTotals(pending=len(shard.seeds)))
            return
        self.ran.append(record)
        # A shard record adds up every attempt ever made; this invocation counts only its own.
        before = self.earlier.get(shard.index)
        self.total = self.total.merge(since(record.totals, before.totals if before else None, len(shard.seeds)))
        t = record.totals
        self.logger.info("%s %s: %d done, %d failed, %d pending; %d model requests%s", shard.name, record.status,
                         t.done, t.failed, t.pending, t.calls, f"; {record.error}" if record.error else "")


def _run_shards(run: Run, shards: list[Shard], *, seed_count: int, seeds: str, out: str, started_at: float,
                dispatch: _Dispatcher, shard_retries: int, retry_delay_seconds: float, concurrency: int | None,
                concurrency_limits: list[str] | None, limit_sizes: dict[str, int] | None,
                export_format: str | None, export_out: str | None, logger: Any,
                preflight: bool, rerun_changed: bool, limit: int | None) -> Any:
    fingerprint = seeds_fingerprint(seeds)
    # Changed seeds are refused (or forgotten) before any shard, as in a plain run.
    run_coro_as_sync(_closing(run, check_changed_seeds(run, seeds, fingerprint=fingerprint, limit=limit,
                                                       rerun_changed=rerun_changed)))
    plan = plan_limits(run.spec, concurrency_limits or (), limit_sizes)
    sizes: dict[str, int] = run_coro_as_sync(apply_limit_plan(plan)) or {}
    if sizes:
        logger.info("each dialogue holds a slot of: %s", ", ".join(f"{k} (limit {v})" for k, v in sizes.items()))
    rates = plan_rate_limits(run.spec)
    run_coro_as_sync(apply_rate_plan(rates))
    if rates.limits:
        logger.info("request rate limits shared by every worker: %s",
                    ", ".join(f"{r.name} ({r.per_second * 60:g}/min)" for r in rates.limits))
    run.record_seeds(seeds, fingerprint)

    # Shards get the resolved store URI and an absolute seeds path: a worker elsewhere (or a
    # shard flow run in another directory) has no run pointer to follow.
    job = ShardJob(graph=str(run.doc.path), store=run.store.uri, seeds=_absolute(seeds), graph_hash=run.graph_hash,
                   concurrency=concurrency, limit_names=plan.names, rate_limits=bool(rates.limits))
    ledger = ShardLedger(run.store)
    pending: list[Shard] = []
    tally = _Tally(total=RunTotals(seeds=seed_count), earlier={}, logger=logger)
    for shard in shards:
        if ledger.is_done(shard.cache_key(job.graph_hash)):
            tally.skip(shard)
        else:
            pending.append(shard)
    logger.info("%d shards to run, %d finished earlier", len(pending), tally.skipped_shards)
    if pending and preflight:
        probes = CallLedger()
        try:
            run_coro_as_sync(_closing(run, preflight_run(run, probes)))
        except InterleafError as exc:
            # Refused before any shard: the probes were sent, so the manifest says so.
            run.record_invocation(probes.totals, started_at=started_at, outcome="refused", message=str(exc),
                                  seeds=seed_count)
            raise
        tally.total = tally.total.merge(probes.totals)
        logger.info("preflight ok (%d requests)", probes.totals.calls)

    tally.earlier = {shard.index: ledger.read(shard.cache_key(job.graph_hash)) for shard in pending}
    if pending:
        dispatch.run(run, job, pending, ledger, tally.add, shard_retries,
                     retry_delays(shard_retries, retry_delay_seconds), logger)
    total, ran, failed, stopped, skipped_shards = (tally.total, tally.ran, tally.failed, tally.stopped,
                                                   tally.skipped_shards)

    export_note: str | None = None
    export_error: str | None = None
    if export_format and stopped is None:
        target = export_out or str(Path(out) / "export" / export_format)
        export_state = export_task(run.store.uri, export_format, target, return_state=True)
        if export_state.is_completed():
            export_note = export_state.result()
        else:
            export_error = export_state.message or "export failed"
            export_note = f"{export_format} export FAILED: {export_error}"
    total.seconds = time.time() - started_at  # wall time of the flow run; shards overlap
    outcome: Literal["finished", "stopped"] = "stopped" if stopped else "finished"
    run.record_invocation(total, started_at=started_at, outcome=outcome, message=stopped, seeds=seed_count)
    if outcome == "finished" and run.spec.reports:
        write_reports(run.store)
    publish_artifacts(run.spec.name, total, ran, skipped_shards, failed, export_note, where=run.store.uri)
    logger.info(total.describe())
    result = {
        "totals": total.to_dict(),
        "outcome": outcome,
        "message": stopped,
        "store": run.store.uri,
        "run_id": run.run_id,
        "where": run.where,
        "graph": run.spec.name,
        "shards": {"run": len(ran), "skipped": skipped_shards, "failed": {str(k): v for k, v in failed.items()}},
        "export": export_note,
    }
    if stopped:
        return Failed(message=f"stopped by a systemic failure: {stopped}", data=result)
    if failed or export_error:
        problems = [f"{len(failed)} shard(s) failed after retries"] if failed else []
        problems += [f"export failed: {export_error}"] if export_error else []
        return Failed(message="; ".join(problems), data=result)
    return Completed(data=result)


def since(after: RunTotals, before: RunTotals | None, seeds: int) -> RunTotals:
    """What one invocation added to a shard record: calls sent since ``before``, seeds it finished.

    >>> first = RunTotals(seeds=2, done=1, failed=1, calls=6, failed_calls=1)
    >>> both = RunTotals(seeds=2, done=2, calls=7, failed_calls=1)   # a later attempt finished the other
    >>> t = since(both, first, 2)
    >>> (t.calls, t.failed_calls, t.done, t.skipped, t.failed)
    (1, 0, 1, 1, 0)
    """
    if before is None:
        return after.model_copy(update={"seeds": 0})
    calls = after.calls_only()
    prior = before.calls_only()
    delta: dict[str, Any] = {name: getattr(calls, name) - getattr(prior, name)
                             for name in ("calls", "cached_calls", "failed_calls", "prompt_tokens",
                                          "completion_tokens", "unpriced_calls", "images")}
    if calls.cost is not None:
        delta["cost"] = calls.cost - (prior.cost or 0.0)
    done = max(0, after.done - before.done)
    return RunTotals(**delta, done=done, failed=after.failed, pending=after.pending,
                     skipped=max(0, seeds - done - after.failed - after.pending),
                     failed_reasons=after.failed_reasons, failed_branches=after.failed_branches,
                     pruned_branches=after.pruned_branches, fallbacks=after.fallbacks)


def _absolute(path: str) -> str:
    """A local path made absolute (URIs such as ``s3://...`` stay as they are)."""
    return path if "://" in path else str(Path(path).resolve())


async def _closing(run: Run, work: Any) -> Any:
    """Await ``work`` on this event loop, then drop the clients it built (they belong to this loop)."""
    try:
        return await work
    finally:
        await run.aclose()
