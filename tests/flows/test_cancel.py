"""A cancelled (SIGTERM'd) flow run stops its shards within seconds, records them, and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interleaf import RunManifest, ShardRecord, layout
from tests.fixtures.prefect import PrefectServer
from tests.runner.graphs import chain_graph, count_lines, seeds_file

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigterm_stops_the_shards_and_the_run_resumes(prefect_server: PrefectServer, tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=2, delay=1.0, concurrency=2)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 12)
    out = tmp_path / "out"
    env = {**prefect_server.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "interleaf", "run", str(graph), "--seeds", str(seeds), "--out", str(out),
           "--orchestrate", "--shard-size", "4", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while count_lines(counter) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no shard started"
        time.sleep(0.05)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - signalled < 30, "the shards kept running after the signal"
    assert proc.returncode == 3, stdout + stderr
    assert "SIGTERM" in stdout
    calls_at_stop = count_lines(counter)
    assert calls_at_stop < 24

    store = layout.open_store(out)
    manifest = RunManifest.load(store)
    assert manifest is not None and manifest.invocations[-1].outcome == "stopped"
    assert manifest.invocations[-1].totals.calls == calls_at_stop  # what was sent, honestly
    assert not store.exists(layout.LOCK)
    assert any(r.status == "failed" and "SIGTERM" in (r.error or "") for r in ShardRecord.load_all(store))

    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = RunManifest.load(store)
    assert manifest is not None and manifest.counts.done == 12
    assert count_lines(counter) <= 24 + 4  # at most the steps in flight at the signal ran twice
