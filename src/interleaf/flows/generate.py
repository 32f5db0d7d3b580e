"""The ``interleaf-generate`` Prefect flow: seeds -> shards -> dialogues -> export.

The flow opens (or resumes) the run once, splits the seeds into shards, runs each shard as
a Prefect task named ``shard-NNNNN`` through the chosen task runner, and ends with an export
step and UI artifacts. Below the flow, shards call the same run engine as a plain
``interleaf run`` (:mod:`interleaf.runner`), so both paths write the same run layout.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from prefect.utilities.asyncutils import run_coro_as_sync

from interleaf.errors import Location, SeedError
from interleaf.flows.artifacts import publish_artifacts
from interleaf.flows.export import export_outputs
from interleaf.flows.limits import apply_limit_plan, plan_limits
from interleaf.flows.shard_work import ShardJob, execute_shard, summary_from_dict
from interleaf.flows.shards import Shard, ShardLedger, ShardRecord, iter_shards
from interleaf.flows.taskrunners import TaskRunnerName, make_task_runner

if TYPE_CHECKING:
    from interleaf.runner import Run, RunOptions, RunSummary

FLOW_NAME = "interleaf-generate"
MAX_RETRY_DELAY_S = 600.0


def retry_delays(retries: int, first_delay: float) -> list[float]:
    """Exponential backoff: ``first_delay``, twice that, ... capped at 10 minutes."""
    return [min(MAX_RETRY_DELAY_S, first_delay * 2**i) for i in range(retries)]


@task(name="prepare-run", cache_policy=NO_CACHE, persist_result=False)
def prepare_run(graph: str, out: str, store: str | None, seeds: str, force_new_run: bool,
                concurrency: int | None) -> Run:
    """Open (or create) the run once - manifest, seeds hash, run pointer - so shards only resume it."""
    from interleaf.runner import open_run

    run = open_run(graph, Path(out), store, seeds_path=seeds,  # type: ignore[arg-type]  # str keeps s3:// intact
                   force_new_run=force_new_run, concurrency=concurrency)
    # Nothing ran on it yet, so closing only drops the compiled graph; the handle stays usable
    # for the manifest update at the end.
    run_coro_as_sync(run.aclose())
    return run


@task(name="shard", cache_policy=NO_CACHE, persist_result=False)
async def shard_task(job: ShardJob, shard: Shard) -> dict[str, Any]:
    """Run one shard's dialogues (a task run per shard, retried with backoff on failures)."""
    outcome = await execute_shard(job, shard)
    return {"record": outcome.record.model_dump(mode="json"), "skipped": outcome.skipped}


@task(name="export", cache_policy=NO_CACHE, persist_result=False)
def export_task(run_ref: str, fmt: str, out: str) -> str:
    """Export the run in ``fmt``."""
    return export_outputs(run_ref, fmt, out)


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    graph = str(flow_run.parameters.get("graph", "graph"))
    return f"generate-{Path(graph).stem}"


@flow(name=FLOW_NAME, flow_run_name=_flow_run_name, persist_result=False, log_prints=True)
def generate_flow(
    graph: str,
    seeds: str,
    out: str,
    store: str | None = None,
    shard_size: int = 100,
    limit: int | None = None,
    concurrency: int | None = None,
    max_parallel_shards: int = 4,
    task_runner: TaskRunnerName = "threads",
    cluster_address: str | None = None,
    shard_retries: int = 2,
    retry_delay_seconds: float = 10.0,
    concurrency_limits: list[str] | None = None,
    limit_sizes: dict[str, int] | None = None,
    export_format: str | None = "jsonl",
    export_out: str | None = None,
    force_new_run: bool = False,
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
    """
    from interleaf.runner import RunSummary, write_run_reports
    from interleaf.seeds import read_seeds

    logger = get_run_logger()
    if shard_retries < 0:
        raise ValueError(f"shard_retries must be >= 0, got {shard_retries}")
    started_at = time.time()
    # Every seed is checked before the run is touched: a bad line 9,000 stops nothing half-way.
    shards = list(iter_shards(read_seeds(seeds, limit=limit), shard_size))
    if not shards and (limit is None or limit > 0):
        raise SeedError("the seeds file holds no seeds", Location(seeds))
    run = prepare_run(graph, out, store, seeds, force_new_run, concurrency)
    plan = plan_limits(run.spec, concurrency_limits or (), limit_sizes)
    sizes: dict[str, int] = run_coro_as_sync(apply_limit_plan(plan)) or {}
    if sizes:
        logger.info("each dialogue holds a slot of: %s", ", ".join(f"{k} (limit {v})" for k, v in sizes.items()))

    # Shards get the resolved store URI: a worker elsewhere has no run pointer to follow.
    job = ShardJob(graph=graph, out=out, store=run.store.uri, seeds=seeds, graph_hash=run.graph_hash,
                   concurrency=concurrency, limit_names=plan.names)
    ledger = ShardLedger(run.store)
    pending: list[Shard] = []
    total = RunSummary()
    skipped_shards = 0
    for shard in shards:
        if ledger.is_done(shard.cache_key(job.graph_hash)):
            skipped_shards += 1
            total = total.merge(RunSummary(skipped=len(shard.seeds)))
        else:
            pending.append(shard)
    logger.info("%d shards to run, %d finished earlier", len(pending), skipped_shards)

    ran: list[ShardRecord] = []
    failed: dict[int, str] = {}
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
                    record = ShardRecord.model_validate(result["record"])
                    if result["skipped"]:
                        skipped_shards += 1
                        total = total.merge(RunSummary(skipped=len(shard.seeds)))
                        continue
                else:
                    record = _failed_record(ledger, job, shard, state)
                    failed[shard.index] = record.error or state.message or "failed"
                ran.append(record)
                total = total.merge(summary_from_dict(record.summary))

    export_note: str | None = None
    export_error: str | None = None
    if export_format:
        target = export_out or str(Path(out) / "export" / export_format)
        export_state = export_task(run.store.uri, export_format, target, return_state=True)
        if export_state.is_completed():
            export_note = export_state.result()
        else:
            export_error = export_state.message or "export failed"
            export_note = f"{export_format} export FAILED: {export_error}"
    total.seconds = time.time() - started_at  # wall time of the flow run; shards overlap
    write_run_reports(run)
    run.record_invocation(total, started_at=started_at, seeds_hash=run.manifest.seeds_hash)
    summary = total.to_dict()
    publish_artifacts(run.spec.name, summary, ran, skipped_shards, failed, export_note)
    logger.info(total.describe())
    result = {
        "summary": summary,
        "store": run.store.uri,
        "run_id": run.run_id,
        "shards": {"run": len(ran), "skipped": skipped_shards, "failed": {str(k): v for k, v in failed.items()}},
        "export": export_note,
    }
    if failed or export_error:
        problems = [f"{len(failed)} shard(s) failed after retries"] if failed else []
        problems += [f"export failed: {export_error}"] if export_error else []
        return Failed(message="; ".join(problems), data=result)
    return Completed(data=result)


def _failed_record(ledger: ShardLedger, job: ShardJob, shard: Shard, state: State[Any]) -> ShardRecord:
    """The ledger's record of a shard that ended failed, or one made from its state when none was written."""
    record = ledger.read(shard.cache_key(job.graph_hash))
    if record is not None and record.status == "failed":
        return record
    from interleaf.runner import RunSummary

    message = state.message or "shard crashed"
    return ShardRecord(
        key=shard.cache_key(job.graph_hash), index=shard.index, graph_hash=job.graph_hash,
        content_hash=shard.content_hash, seed_ids=[s.id for s in shard.seeds], status="failed",
        summary=RunSummary(failed=len(shard.seeds)).to_dict(), error=message,
    )


def run_generate(opts: RunOptions) -> RunSummary:
    """Run :func:`generate_flow` for ``interleaf run --orchestrate``; returns the run's summary.

    Errors that stop the flow before any shard runs (a bad graph, an unreadable seeds file)
    are raised as they are, so the CLI reports them like a plain run does.
    """
    state: State[Any] = generate_flow(  # type: ignore[assignment]  # a sync flow returns its state
        graph=str(opts.graph),
        seeds=str(opts.seeds),
        out=str(opts.out),
        store=opts.store,
        shard_size=opts.shard_size,
        limit=opts.limit,
        concurrency=opts.concurrency,
        force_new_run=opts.force_new_run,
        export_format=None,
        return_state=True,
    )
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    return summary_from_dict(data["summary"])
