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

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import Field

from interleaf.datasets.reports import write_reports
from interleaf.errors import InterleafError, Location, SeedError
from interleaf.flows.artifacts import publish_artifacts
from interleaf.flows.export import export_outputs
from interleaf.flows.limits import apply_limit_plan, plan_limits
from interleaf.flows.shard_work import ShardJob, ShardStoppedError, execute_shard
from interleaf.flows.shards import Shard, ShardLedger, ShardRecord, iter_shards
from interleaf.flows.taskrunners import TaskRunnerName, check_task_runner, make_task_runner
from interleaf.models.health import reset_endpoint_health
from interleaf.run.totals import CallLedger, RunTotals
from interleaf.runner import Run, check_changed_seeds, open_run, preflight_run, request_stop_all
from interleaf.seeds import read_seeds, seeds_fingerprint
from interleaf.storage.store import ObjectStore

FLOW_NAME = "interleaf-generate"
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


@task(name="shard", cache_policy=NO_CACHE, persist_result=False)
async def shard_task(job: ShardJob, shard: Shard) -> dict[str, Any]:
    """Run one shard's dialogues (a task run per shard, retried with backoff on failures).

    A shard stopped by a systemic failure returns (no retry: the endpoint is down for every
    shard) with its record saying so; the flow then reports the run stopped.
    """
    try:
        outcome = await execute_shard(job, shard)
    except ShardStoppedError as exc:
        record = ShardLedger(ObjectStore(job.store)).read(shard.cache_key(job.graph_hash))
        return {"record": None if record is None else record.model_dump(mode="json"), "skipped": False,
                "stopped": str(exc)}
    return {"record": outcome.record.model_dump(mode="json"), "skipped": outcome.skipped, "stopped": None}


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
        max_parallel_shards: Shards running at once inside this flow run.
        task_runner: Where shards run: threads in this process, or a Dask / Ray cluster.
        cluster_address: Address of an existing Dask scheduler or Ray cluster (default: start a local one).
        shard_retries: Retries of a shard whose dialogues failed.
        retry_delay_seconds: Delay before the first retry; doubles each retry.
        concurrency_limits: Extra Prefect global concurrency limits (a GPU pool, say) each dialogue holds a slot of.
        limit_sizes: Sizes to create or set for named limits before the run, e.g. {"gpu-pool-a": 4}.
        export_format: Dataset format exported at the end (jsonl, intermt, align-anything, hf); empty for none.
        export_out: Export folder (default: <out>/export/<format>).
        force_new_run: Start over even if the run directory holds a run of another graph.
        preflight: Probe every endpoint and image tool before the first shard (one tiny request each).
        rerun_changed: Redo seeds whose content changed since the run recorded them (else: refuse).
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
    restore = _stop_shards_on_sigterm(logger)
    try:
        return _run_shards(
            run, shards, seed_count=seed_count, seeds=seeds, out=out, started_at=started_at,
            max_parallel_shards=max_parallel_shards, task_runner=task_runner, cluster_address=cluster_address,
            shard_retries=shard_retries, retry_delay_seconds=retry_delay_seconds,
            concurrency=concurrency, concurrency_limits=concurrency_limits, limit_sizes=limit_sizes,
            export_format=export_format, export_out=export_out, logger=logger,
            preflight=preflight, rerun_changed=rerun_changed, limit=limit,
        )
    finally:
        restore()
        run.release()


def _stop_shards_on_sigterm(logger: Any) -> Any:
    """A cancelled flow run gets SIGTERM from its worker: stop the shards of this process within
    seconds (dialogues in flight keep their checkpoints), so the flow still records what was done
    and releases its lock and limit slots before the worker's grace period ends."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        n = request_stop_all("the flow run was cancelled or terminated (SIGTERM)")
        logger.warning("SIGTERM: stopping %d open run(s); unfinished seeds stay pending", n)

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _run_shards(run: Run, shards: list[Shard], *, seed_count: int, seeds: str, out: str, started_at: float,
                max_parallel_shards: int, task_runner: TaskRunnerName, cluster_address: str | None,
                shard_retries: int, retry_delay_seconds: float, concurrency: int | None,
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
    run.record_seeds(seeds, fingerprint)

    # Shards get the resolved store URI: a worker elsewhere has no run pointer to follow.
    job = ShardJob(graph=str(run.doc.path), store=run.store.uri, seeds=seeds, graph_hash=run.graph_hash,
                   concurrency=concurrency, limit_names=plan.names)
    ledger = ShardLedger(run.store)
    pending: list[Shard] = []
    total = RunTotals(seeds=seed_count)
    skipped_shards = 0
    for shard in shards:
        if ledger.is_done(shard.cache_key(job.graph_hash)):
            skipped_shards += 1
            total = total.merge(RunTotals(skipped=len(shard.seeds)))
        else:
            pending.append(shard)
    logger.info("%d shards to run, %d finished earlier", len(pending), skipped_shards)
    if pending and preflight:
        probes = CallLedger()
        try:
            run_coro_as_sync(_closing(run, preflight_run(run, probes)))
        except InterleafError as exc:
            # Refused before any shard: the probes were sent, so the manifest says so.
            run.record_invocation(probes.totals, started_at=started_at, outcome="refused", message=str(exc),
                                  seeds=seed_count)
            raise
        total = total.merge(probes.totals)
        logger.info("preflight ok (%d requests)", probes.totals.calls)

    ran: list[ShardRecord] = []
    failed: dict[int, str] = {}
    stopped: str | None = None
    # A shard record adds up every attempt ever made; this invocation counts only its own.
    earlier = {shard.index: ledger.read(shard.cache_key(job.graph_hash)) for shard in pending}
    if pending:
        with make_task_runner(task_runner, max_parallel_shards, cluster_address) as runner:
            futures = [
                (shard, runner.submit(
                    shard_task.with_options(
                        task_run_name=shard.name,
                        retries=shard_retries,
                        retry_delay_seconds=retry_delays(shard_retries, retry_delay_seconds),
                    ),
                    parameters={"job": job, "shard": shard},
                ))
                for shard in pending
            ]
            for shard, future in futures:
                future.wait()
                state = future.state
                if state.is_completed():
                    result = future.result()
                    if result["skipped"]:
                        skipped_shards += 1
                        total = total.merge(RunTotals(skipped=len(shard.seeds)))
                        continue
                    if result["stopped"]:
                        stopped = stopped or result["stopped"]
                        if result["record"] is None:
                            total = total.merge(RunTotals(pending=len(shard.seeds)))
                            continue
                    record = ShardRecord.model_validate(result["record"])
                else:
                    record = _failed_record(ledger, job, shard, state)
                    failed[shard.index] = record.error or state.message or "failed"
                ran.append(record)
                before = earlier.get(shard.index)
                total = total.merge(since(record.totals, before.totals if before else None, len(shard.seeds)))
                t = record.totals
                logger.info("%s %s: %d done, %d failed, %d pending; %d model requests%s", shard.name,
                            record.status, t.done, t.failed, t.pending, t.calls,
                            f"; {record.error}" if record.error else "")

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


async def _closing(run: Run, work: Any) -> Any:
    """Await ``work`` on this event loop, then drop the clients it built (they belong to this loop)."""
    try:
        return await work
    finally:
        await run.aclose()


def _failed_record(ledger: ShardLedger, job: ShardJob, shard: Shard, state: State[Any]) -> ShardRecord:
    """The ledger's record of a shard that ended failed, or one made from its state when none was written."""
    record = ledger.read(shard.cache_key(job.graph_hash))
    if record is not None and record.status == "failed":
        return record
    message = state.message or "shard crashed"
    return ShardRecord(
        key=shard.cache_key(job.graph_hash), index=shard.index, graph_hash=job.graph_hash,
        content_hash=shard.content_hash, seed_ids=[s.id for s in shard.seeds], status="failed",
        totals=RunTotals(seeds=len(shard.seeds), failed=len(shard.seeds),
                         failed_reasons={"shard_crashed": len(shard.seeds)}),
        error=message,
    )
