"""A worker killed mid-shard: its flow run is marked Crashed without a person, and a retry finishes it.

Opt-in (``INTERLEAF_CRASH_E2E=1``): Prefect sends heartbeats at most every 30 s, so noticing a
dead run takes a heartbeat interval plus the window, and the test about two minutes in all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from interleaf import ObjectStore, RunManifest
from interleaf.flows.setup import WINDOW_ENV
from tests.fixtures.prefect import PrefectServer
from tests.flows.conftest import make_counting_setup
from tests.flows.test_deploy_e2e import wait_for_final_state
from tests.flows.test_fleet import POOL, REPO, Fleet

#: Crash window for this test: just over the deployments' heartbeat frequency (35 s).
WINDOW_S = 45


def flow_run_pids(log_file: Path) -> set[int]:
    """Pids of the processes that made the counting calls (the flow-run process)."""
    if not log_file.exists():
        return set()
    return {int(line.split()[3]) for line in log_file.read_text().splitlines() if line.strip()}


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("INTERLEAF_CRASH_E2E"),
                    reason="about two minutes (heartbeats are >= 30 s apart): set INTERLEAF_CRASH_E2E=1")
def test_killed_worker_run_is_crashed_and_a_retry_finishes_it(prefect_server_with_services: PrefectServer,
                                                              tmp_path: Path) -> None:
    server = prefect_server_with_services
    env = {**server.env, WINDOW_ENV: str(WINDOW_S), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    setup_out = subprocess.run([sys.executable, "-m", "interleaf", "prefect", "setup"], cwd=REPO, env=env,
                               text=True, capture_output=True, timeout=120)
    assert setup_out.returncode == 0 and f"crash after {WINDOW_S} s" in setup_out.stdout, setup_out
    server.cli("--no-prompt", "deploy", "--prefect-file", str(REPO / "prefect.yaml"), "--name", "local", cwd=REPO)

    setup = make_counting_setup(tmp_path / "crash", n_seeds=6, sleep=1.0)
    flow_run_id = Fleet(server=server, logs={}).run_parent({
        "graph": str(setup.graph), "seeds": str(setup.seeds), "out": str(setup.out), "shard_size": 2,
        "max_parallel_shards": 1, "concurrency": 1, "export_format": None,
    })
    worker_cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"]
    with (tmp_path / "dying-worker.log").open("wb") as log:
        worker = subprocess.Popen([*worker_cmd, "--name", "dying"], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(setup.log.calls()) < 2:  # mid-shard: the second seed's call has started
            assert time.monotonic() < deadline and worker.poll() is None, (tmp_path / "dying-worker.log").read_text()
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker, as a dead machine would: no goodbye
        worker.wait()
    for pid in flow_run_pids(setup.log.path):  # and its flow-run child, if it left the group
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed_at = time.monotonic()
    assert httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()["state"]["type"] == "RUNNING"
    calls_at_kill = len(setup.log.calls())

    # Nobody touches it: the automation marks it Crashed once its heartbeats stop.
    while True:
        state = httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()["state"]
        if state["type"] == "CRASHED":
            break
        assert state["type"] == "RUNNING", state
        assert time.monotonic() - killed_at < WINDOW_S + 60, "the dead run was never marked Crashed"
        time.sleep(1)

    server.cli("flow-run", "retry", flow_run_id)
    retried = subprocess.run([*worker_cmd, "--run-once"], cwd=tmp_path, env=env, text=True,
                             capture_output=True, timeout=180)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    final = wait_for_final_state(server.api_url, flow_run_id, timeout=60)
    assert final["state"]["type"] == "COMPLETED", (final["state"], retried.stdout[-3000:])

    # Every seed done once; at most the dialogue in flight at the kill ran twice.
    calls = setup.log.calls()
    assert sorted(set(calls)) == [f"s{i}" for i in range(6)]
    assert len(calls) <= 6 + 1 and calls_at_kill >= 2
    statuses = {p.stem: json.loads(p.read_text())["status"] for p in (setup.out / "status").glob("*.json")}
    assert statuses == {f"s{i}": "done" for i in range(6)}
    manifest = RunManifest.load(ObjectStore(setup.out))
    assert manifest is not None and (manifest.counts.done, manifest.counts.pending) == (6, 0)
