"""Task runners offered by the flow: threads, and a local Dask cluster of worker processes."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from interleaf.errors import InterleafError
from interleaf.flows.generate import generate_flow
from interleaf.flows.taskrunners import check_task_runner
from interleaf.run.layout import open_store
from interleaf.run.records import read_statuses
from tests.flows.conftest import CountingSetup

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("prefect_dask", reason="the dask extra (pip install 'interleaf[dask]') is not installed")


def test_only_tested_runners_are_offered() -> None:
    check_task_runner("dask")
    with pytest.raises(InterleafError, match="unknown task_runner 'ray'"):
        check_task_runner("ray")


@pytest.mark.usefixtures("prefect_harness")
def test_shards_run_in_two_dask_worker_processes(counting: CountingSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    # The workers are fresh processes: the test node kinds are found on PYTHONPATH, as a plugin would be.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    state = generate_flow(graph=str(counting.graph), seeds=str(counting.seeds), out=str(counting.out),
                          shard_size=2, max_parallel_shards=2, task_runner="dask", export_format=None,
                          preflight=False, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["totals"]["done"] == 6 and result["shards"]["run"] == 3
    pids = {line.split()[3] for line in counting.log.path.read_text().splitlines()}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two worker processes, not this one
    assert Counter(counting.log.calls()) == {f"s{i}": 1 for i in range(6)}  # every seed once
    statuses = read_statuses(open_store(counting.out))
    assert sorted(s.status for s in statuses.values()) == ["done"] * 6
