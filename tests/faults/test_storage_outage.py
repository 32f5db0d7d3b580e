"""The S3 endpoint goes away for 5 s in the middle of a run; the run completes anyway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from interleaf import ObjectStore, layout, open_run
from interleaf.seeds import read_seeds
from interleaf.testing.simulator import Simulator
from tests.faults.lite_graph import write_lite_graph, write_seeds
from tests.faults.run_checks import check_every_seed_ended_once
from tests.fixtures.s3 import MotoS3, TcpRelay

N_SEEDS = 6
OUTAGE_S = 5.0


@pytest.mark.slow
async def test_run_completes_through_a_5s_storage_outage(
    tmp_path: Path, sim: Simulator, s3_env: MotoS3, flaky_s3: TcpRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay is the endpoint the run knows; stopping it refuses and resets connections as a
    # dead server would, while moto (in-memory only) keeps the bucket for the restart.
    bucket = s3_env.create_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", flaky_s3.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    sim.configure(latency=0.02)
    graph = write_lite_graph(tmp_path / "g.yaml", sim.base_url, concurrency=3)
    seeds = write_seeds(tmp_path / "seeds.jsonl", N_SEEDS)
    uri = f"s3://{bucket}/outage"

    run = open_run(graph, tmp_path / "out", uri)
    try:
        task = asyncio.create_task(run.arun_seeds(read_seeds(seeds)))
        while sim.requests < 12:
            assert not task.done(), "the run finished before the outage"
            await asyncio.sleep(0.01)
        flaky_s3.stop()
        await asyncio.sleep(OUTAGE_S)
        assert not task.done(), "the run gave up (or finished) during the outage"
        flaky_s3.start()
        totals = await asyncio.wait_for(task, timeout=60)
    finally:
        await run.aclose()
        run.release()

    assert (totals.done, totals.failed, totals.skipped, totals.pending) == (N_SEEDS, 0, 0, 0)
    assert run.stopped is None
    # The outage cost storage retries, not model calls: every request sent is counted once.
    assert totals.calls == sim.requests and totals.failed_calls == 0
    store = ObjectStore(uri)
    assert check_every_seed_ended_once(store, [f"s{i:03d}" for i in range(N_SEEDS)]) == {"done": N_SEEDS, "failed": 0}
    assert not store.exists(layout.LOCK), "the writer lock outlived release()"
