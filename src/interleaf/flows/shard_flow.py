"""The ``interleaf-shard`` flow: one shard of a generate run, as its own flow run on any worker.

With ``shard_dispatch="deployment"`` the ``interleaf-generate`` flow starts one flow run of
this flow's deployment (``interleaf-shard/shard-local`` in prefect.yaml) per pending shard,
as a subflow, so the shards of one big batch spread over every worker of the pool. The
parameters are small and JSON: the job (graph, store, seeds path, graph hash) and where the
shard lies in the seeds file (index, size, limit); the shard's seeds are read back from the
file, and its content hash must match the one the parent computed, so a seeds file changed
in between is refused instead of running other seeds under this shard's key.

A shard flow run *attaches* to the run the parent opened: it never takes the run's writer
lock (the parent holds it for the whole batch), and writes only dialogues, statuses,
checkpoints and its shard record. It ends

- Completed: the shard is done (or was done already);
- Failed: some dialogues failed (the parent starts a fresh flow run for a retry);
- Failed named ``Stopped``: a systemic failure (an endpoint down, a bad key) or a SIGTERM
  stopped it; its unfinished seeds stay pending and the parent stops the run.

Its coroutine runs on the process's one event loop, like a shard task of the local path
(see :mod:`interleaf.flows.dispatch`).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed
from pydantic import Field

from interleaf.errors import InterleafError
from interleaf.flows.dispatch import STOPPED_STATE_NAME, run_shard_blocking, stop_runs_on_sigterm
from interleaf.flows.shard_work import ShardJob
from interleaf.flows.shards import shard_at
from interleaf.models.health import reset_endpoint_health
from interleaf.seeds import read_seeds

SHARD_FLOW_NAME = "interleaf-shard"


class ShardMismatchError(InterleafError):
    """The seeds file no longer holds the shard the parent flow run dispatched."""


@flow(name=SHARD_FLOW_NAME, persist_result=False, log_prints=True)
def shard_flow(
    graph: str,
    store: str,
    seeds: str,
    graph_hash: str,
    shard_index: Annotated[int, Field(ge=0)],
    shard_size: Annotated[int, Field(ge=1)],
    content_hash: str,
    limit: Annotated[int, Field(ge=1)] | None = None,
    concurrency: Annotated[int, Field(ge=1)] | None = None,
    limit_names: list[str] | None = None,
    rate_limits: bool = False,
) -> Any:
    """Run one shard of a generate run that an ``interleaf-generate`` flow run opened.

    Args:
        graph: Graph YAML path or built-in graph name (as the parent resolved it).
        store: The run's store URI (the parent's run, already opened).
        seeds: The seeds file the parent read (local path or s3:// URI).
        graph_hash: The run's graph hash (part of the shard's ledger key).
        shard_index: Which shard: the shard_index-th slice of shard_size seeds.
        shard_size: Seeds per shard in the parent flow run.
        content_hash: The shard's content hash as the parent computed it (a changed seeds file is refused).
        limit: The parent's limit (only the first N seeds of the file).
        concurrency: Dialogues in flight in this shard (default: the graph's defaults.concurrency).
        limit_names: Prefect global concurrency limits each dialogue holds a slot of.
        rate_limits: Pass the graph's request/token rate limits on the Prefect server (the parent created them).
    """
    logger = get_run_logger()
    shard = shard_at(read_seeds(seeds, limit=limit), shard_index, shard_size)
    if shard is None or shard.content_hash != content_hash:
        raise ShardMismatchError(
            f"{seeds}: shard {shard_index} (size {shard_size}) is not the shard the parent flow run "
            "dispatched: the seeds file changed since; start the generate flow again")
    job = ShardJob(graph=graph, store=store, seeds=seeds, graph_hash=graph_hash, concurrency=concurrency,
                   limit_names=tuple(limit_names or ()), rate_limits=rate_limits)
    reset_endpoint_health()  # a shard run in a long-lived process must not inherit an old "down"
    restore = stop_runs_on_sigterm(logger)
    try:
        payload = run_shard_blocking(job, shard)  # raises ShardFailedError: the flow run fails
    finally:
        restore()
    if payload["stopped"]:
        return Failed(name=STOPPED_STATE_NAME, message=payload["stopped"], data=payload)
    verb = "was done already" if payload["skipped"] else "done"
    logger.info("%s %s (%d seeds)", shard.name, verb, len(shard.seeds))
    return Completed(message=f"{shard.name} {verb}", data=payload)
