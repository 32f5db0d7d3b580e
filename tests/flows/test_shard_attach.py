"""A shard only attaches to the run the flow opened: it never writes the run's own files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from interleaf import layout, open_run
from interleaf.flows.shard_work import ShardFailedError, ShardJob, execute_shard
from interleaf.flows.shards import iter_shards
from interleaf.run.layout import RunNotFoundError
from interleaf.seeds import read_seeds
from tests.flows.conftest import CountingSetup


def test_rerunning_a_shard_leaves_the_run_files_byte_identical(
    counting: CountingSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = open_run(counting.graph, counting.out, None, seeds_path=counting.seeds)
    run.release()  # the flow would hold it; shards never take it
    store = run.store
    files = (layout.MANIFEST, layout.GRAPH)
    before = {k: store.get_bytes(k) for k in files}
    # A worker elsewhere: its own working directory, the store URI only.
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    monkeypatch.chdir(worker_dir)
    counting.fail_once("s1")
    shard = next(iter_shards(read_seeds(counting.seeds), 3))
    job = ShardJob(graph=str(counting.graph), store=store.uri, seeds=str(counting.seeds), graph_hash=run.graph_hash)
    with pytest.raises(ShardFailedError):
        asyncio.run(execute_shard(job, shard))  # first attempt: s1 fails
    outcome = asyncio.run(execute_shard(job, shard))  # the retry finishes it
    assert outcome.record.status == "done" and outcome.record.attempts == 2
    assert {k: store.get_bytes(k) for k in files} == before
    assert not store.exists(layout.LOCK) and not store.exists(layout.RUN_POINTER)
    assert os.listdir(worker_dir) == []  # nothing written on the worker's disk
    assert sorted(counting.log.calls()) == ["s0", "s1", "s1", "s2"]


def test_a_shard_refuses_a_store_that_holds_no_run(counting: CountingSetup, tmp_path: Path) -> None:
    shard = next(iter_shards(read_seeds(counting.seeds), 3))
    job = ShardJob(graph=str(counting.graph), store=str(tmp_path / "nothing"), seeds=str(counting.seeds),
                   graph_hash="x")
    with pytest.raises(RunNotFoundError, match="no run to attach to"):
        asyncio.run(execute_shard(job, shard))
    assert not (tmp_path / "nothing" / layout.MANIFEST).exists()
