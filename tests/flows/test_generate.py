"""The generate flow under ``prefect_test_harness``: retries, skipping, shared limits, artifacts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from interleaf import ObjectStore, RunManifest, RunOptions, RunReader, RunTotals, layout
from interleaf.flows.artifacts import artifact_key
from interleaf.flows.generate import generate_flow
from interleaf.flows.shard_work import ShardJob, execute_shard
from interleaf.flows.shards import ShardLedger, iter_shards
from interleaf.launch import run_from_cli
from interleaf.seeds import read_seeds
from tests.flows.conftest import CountingSetup, make_counting_setup

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run_flow(setup: CountingSetup, **params: Any) -> Any:
    params = {"shard_size": 2, "shard_retries": 2, "retry_delay_seconds": 0.05, "export_format": None,
              "max_parallel_shards": 3, **params}
    return generate_flow(graph=str(setup.graph), seeds=str(setup.seeds), out=str(setup.out),
                         return_state=True, **params)


def result_of(state: Any) -> dict[str, Any]:
    data = state.result(raise_on_failure=False)
    assert isinstance(data, dict), f"flow ended without a result: {state!r} {data!r}"
    return data


def totals_of(data: dict[str, Any]) -> RunTotals:
    """The flow result's totals, which must be a valid RunTotals record."""
    return RunTotals.model_validate(data["totals"])


def check_recorded(setup: CountingSetup, data: dict[str, Any], invocations: int) -> RunManifest:
    """The flow released the run's lock and recorded its invocation with the totals it returned."""
    store = ObjectStore(data["store"])
    assert not store.exists(layout.LOCK), "the flow did not release the run's writer lock"
    manifest = RunManifest.load(store)
    assert manifest is not None and manifest.run_id == data["run_id"] and manifest.graph_name == data["graph"]
    assert len(manifest.invocations) == invocations
    last = manifest.invocations[-1]
    assert last.outcome == data["outcome"] and last.message == data["message"]
    assert last.totals.to_dict() == data["totals"]
    return manifest


async def task_runs_of(flow_run_id: UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r for r in runs}


async def artifacts_of(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_three_shards_one_fails_once_and_is_retried(counting: CountingSetup) -> None:
    counting.fail_once("s3")  # second shard: s2, s3
    state = run_flow(counting)

    assert state.is_completed(), state.message
    data = result_of(state)
    totals = totals_of(data)
    assert (totals.seeds, totals.done, totals.failed, totals.pending, totals.skipped) == (6, 6, 0, 0, 0)
    assert data["outcome"] == "finished" and data["message"] is None and data["graph"] == "counting"
    assert data["shards"] == {"run": 3, "skipped": 0, "failed": {}}
    calls = counting.log.calls()
    assert sorted(calls) == ["s0", "s1", "s2", "s3", "s3", "s4", "s5"]
    # Every call is counted, the failed attempt's too.
    assert (totals.calls, totals.failed_calls) == (len(calls), 1)
    manifest = check_recorded(counting, data, invocations=1)
    assert (manifest.counts.done, manifest.counts.failed, manifest.counts.pending) == (6, 0, 0)

    flow_run_id = state.state_details.flow_run_id
    runs = asyncio.run(task_runs_of(flow_run_id))
    shard_runs = {name: r for name, r in runs.items() if name.startswith("shard-")}
    assert sorted(shard_runs) == ["shard-00000", "shard-00001", "shard-00002"]
    assert all(r.state.is_completed() for r in shard_runs.values())
    assert [shard_runs[n].run_count for n in sorted(shard_runs)] == [1, 2, 1]

    ledger = ShardLedger(ObjectStore(data["store"]))
    records = sorted(ledger.records(), key=lambda r: r.index)
    assert [(r.index, r.status, r.attempts) for r in records] == [(0, "done", 1), (1, "done", 2), (2, "done", 1)]
    # The retried shard counts its dialogues once, although s2 was "skipped" by the second attempt,
    # and the calls of both attempts (s2, s3 failed; then s3 again).
    assert (records[1].totals.done, records[1].totals.failed, records[1].totals.skipped) == (2, 0, 0)
    assert (records[1].totals.calls, records[1].totals.failed_calls) == (3, 1)
    assert [r.totals.calls for r in records] == [2, 3, 2]

    artifacts = asyncio.run(artifacts_of(flow_run_id))
    report = next(a for a in artifacts if a.type == "markdown")
    assert report.key == artifact_key("counting", ObjectStore(counting.out).uri)  # one history per output
    assert report.key.startswith(f"interleaf-counting-{counting.out.name}-")
    assert "Shards: 3 run, 0 skipped (finished earlier), 0 failed." in report.data
    table = next(a for a in artifacts if a.type == "table")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(r["shard"], r["attempts"]) for r in rows] == [(0, 1), (1, 2), (2, 1)]


def test_rerun_skips_finished_shards_in_and_outside_prefect(counting: CountingSetup) -> None:
    first = run_flow(counting)
    assert first.is_completed(), first.message
    assert len(counting.log.calls()) == 6

    second = run_flow(counting)
    assert second.is_completed(), second.message
    data = result_of(second)
    assert len(counting.log.calls()) == 6, "a finished shard ran again"
    totals = totals_of(data)
    assert (totals.seeds, totals.skipped, totals.done, totals.failed, totals.calls) == (6, 6, 0, 0, 0)
    assert data["shards"]["skipped"] == 3 and data["shards"]["run"] == 0
    check_recorded(counting, data, invocations=2)

    # Outside Prefect: the shard function itself consults the same ledger.
    info = result_of(first)
    records = ShardLedger(ObjectStore(info["store"])).records()
    shard = next(iter_shards(read_seeds(counting.seeds), 2))
    job = ShardJob(graph=str(counting.graph), store=info["store"], seeds=str(counting.seeds),
                   graph_hash=records[0].graph_hash)
    outcome = asyncio.run(execute_shard(job, shard))
    assert outcome.skipped and len(counting.log.calls()) == 6
    assert outcome.record.key == shard.cache_key(job.graph_hash) and outcome.record.status == "done"

    # New seeds appended: only the shard whose content is new runs.
    with counting.seeds.open("a") as fh:
        fh.write(json.dumps({"id": "s6", "prompt": "prompt number 6"}) + "\n")
    third = run_flow(counting)
    assert third.is_completed(), third.message
    assert counting.log.calls()[6:] == ["s6"]
    assert result_of(third)["shards"] == {"run": 1, "skipped": 3, "failed": {}}


def test_shard_failing_after_retries_fails_the_flow_and_reruns_next_time(counting: CountingSetup) -> None:
    counting.fail_once("s4")
    state = run_flow(counting, shard_retries=0)
    assert state.is_failed()
    data = result_of(state)
    totals = totals_of(data)
    assert (totals.done, totals.failed, totals.pending) == (5, 1, 0)
    assert totals.failed_reasons == {"RuntimeError": 1} and totals.calls == 6
    # Failed seeds do not stop the run: it finished, with failures, and says so.
    assert data["outcome"] == "finished"
    assert list(data["shards"]["failed"]) == ["2"] and "injected failure for seed s4" in data["shards"]["failed"]["2"]
    manifest = check_recorded(counting, data, invocations=1)
    assert (manifest.counts.done, manifest.counts.failed, manifest.counts.failed_reasons) == (5, 1, {"RuntimeError": 1})

    again = run_flow(counting, shard_retries=0)
    assert again.is_completed(), again.message
    data = result_of(again)
    assert data["shards"] == {"run": 1, "skipped": 2, "failed": {}}
    assert counting.log.calls().count("s4") == 2
    manifest = check_recorded(counting, data, invocations=2)
    assert (manifest.counts.done, manifest.counts.failed, manifest.counts.pending) == (6, 0, 0)


async def create_limit(name: str, size: int) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, size)


async def read_limit(name: str) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_global_concurrency_limit_by_name(name)


def test_shared_concurrency_limit_caps_dialogues_across_shards(tmp_path: Path) -> None:
    free = make_counting_setup(tmp_path / "free", n_seeds=4, sleep=0.15)
    state = run_flow(free, concurrency=4)
    assert state.is_completed(), state.message
    assert free.log.max_overlap() > 1, "without a limit shards should overlap; the check below would prove nothing"

    limited = make_counting_setup(tmp_path / "limited", n_seeds=4, sleep=0.15, concurrency_key="tests-endpoint")
    asyncio.run(create_limit("tests-endpoint", 1))
    state = run_flow(limited, concurrency=4, concurrency_limits=["tests-gpu-pool"],
                     limit_sizes={"tests-gpu-pool": 2})
    assert state.is_completed(), state.message
    assert len(limited.log.calls()) == 4
    assert limited.log.max_overlap() == 1
    assert asyncio.run(read_limit("tests-gpu-pool")).limit == 2
    endpoint = asyncio.run(read_limit("tests-endpoint"))
    assert endpoint.limit == 1 and endpoint.active_slots == 0


def test_unknown_limit_without_a_size_is_a_clear_error(counting: CountingSetup) -> None:
    state = run_flow(counting, concurrency_limits=["tests-no-such-limit"])
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert "tests-no-such-limit" in str(error) and "prefect gcl create" in str(error)
    assert counting.log.calls() == []


def test_export_step_runs_at_the_end(counting: CountingSetup) -> None:
    target = counting.root / "export"
    state = run_flow(counting, export_format="jsonl", export_out=str(target))
    assert state.is_completed(), state.message
    note = result_of(state)["export"]
    try:
        import interleaf.datasets.export  # noqa: F401
    except ImportError:
        assert note is None  # the exporter is not part of this build yet; the step logged and skipped
    else:
        assert note is not None and target.exists() and any(target.iterdir())


def test_run_generate_is_the_orchestrated_cli_path(counting: CountingSetup) -> None:
    opts = RunOptions(graph=str(counting.graph), seeds=counting.seeds, out=counting.out, store=None,
                      concurrency=2, limit=5, force_new_run=False, orchestrate=True, shard_size=2, progress=False)
    outcome = run_from_cli(opts)
    assert (outcome.totals.seeds, outcome.totals.done, outcome.totals.failed, outcome.totals.calls) == (5, 5, 0, 5)
    assert outcome.outcome == "finished" and outcome.exit_code == 0 and outcome.graph == "counting"
    assert sorted(counting.log.calls()) == ["s0", "s1", "s2", "s3", "s4"]
    manifest = RunManifest.load(ObjectStore(counting.out))
    assert manifest is not None and manifest.run_id == outcome.run_id
    assert not (counting.out / layout.LOCK).exists()


def test_calls_of_a_rerun_shard_are_not_counted_again_by_later_invocations(counting: CountingSetup) -> None:
    """Each invocation records what it sent and finished; the run's totals add up to what was sent in all."""
    counting.fail_once("s4")
    first = result_of(run_flow(counting, shard_retries=0))
    assert totals_of(first).calls == 6
    second = result_of(run_flow(counting, shard_retries=0))
    assert len(counting.log.calls()) == 7  # only s4 ran again
    manifest = check_recorded(counting, second, invocations=2)
    assert [inv.totals.calls for inv in manifest.invocations] == [6, 1]
    again = totals_of(second)
    # This invocation finished s4 only; s5 (same shard) was done by the first one.
    assert (again.done, again.skipped, again.failed, again.failed_calls) == (1, 5, 0, 0)
    totals = RunReader.open(second["store"]).totals()
    assert (totals.calls, totals.failed_calls, totals.done) == (7, 1, 6)


def test_a_second_flow_run_on_the_same_output_is_refused_and_duplicates_nothing(tmp_path: Path) -> None:
    import threading
    import time

    # Each shard's seeds take `sleep` together and the shards run one after the other: the first
    # run must still hold the lock when the second flow run gets going, which on a busy machine
    # took more than a second (0.4 s a shard was not enough).
    setup = make_counting_setup(tmp_path / "two", n_seeds=4, sleep=2.0)
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(state=run_flow(setup, max_parallel_shards=1)))
    runner.start()
    deadline = time.monotonic() + 60
    while not setup.log.calls():  # the first flow run holds the run's writer lock from here on
        assert time.monotonic() < deadline and runner.is_alive(), "the first flow run made no call"
        time.sleep(0.02)
    second = run_flow(setup)
    runner.join(timeout=120)
    assert second.is_failed() and "already has a writer" in (second.message or ""), second.message
    assert first["state"].is_completed(), first["state"].message
    assert sorted(setup.log.calls()) == ["s0", "s1", "s2", "s3"]  # each seed once: nothing done twice
