"""End to end on a real Prefect server: deploy from prefect.yaml, run through a process worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from interleaf import ObjectStore, RunManifest, layout
from tests.fixtures.prefect import PrefectServer
from tests.flows.conftest import make_counting_setup

REPO = Path(__file__).resolve().parents[2]
POOL = "interleaf-process"  # the pool the `local` deployment of prefect.yaml names
DEPLOYMENT = "interleaf-generate/local"


@pytest.mark.slow
def test_deploy_local_deployment_and_run_it_with_a_worker(prefect_server: PrefectServer, tmp_path: Path) -> None:
    setup = make_counting_setup(tmp_path / "e2e", n_seeds=4)
    server = prefect_server

    server.ensure_pool(POOL)
    deployed = server.cli("--no-prompt", "deploy", "--prefect-file", str(REPO / "prefect.yaml"), "--name", "local",
                          cwd=REPO)
    assert "interleaf-generate/local" in deployed.stdout, deployed.stdout

    params = {"graph": str(setup.graph), "seeds": str(setup.seeds), "out": str(setup.out), "shard_size": 2,
              "export_format": None, "retry_delay_seconds": 0.1}
    started = server.cli("deployment", "run", DEPLOYMENT, "--params", json.dumps(params))
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", started.stdout)
    assert match, started.stdout
    flow_run_id = match.group(1)

    # The worker imports the test node kind (tests.flows.kinds) from the checkout.
    worker_env = {**server.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once", "--type", "process"],
        cwd=tmp_path, env=worker_env, text=True, capture_output=True, timeout=180,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr

    flow_run = wait_for_final_state(server.api_url, flow_run_id, timeout=30)
    assert flow_run["state"]["type"] == "COMPLETED", (flow_run["state"], worker.stdout[-3000:], worker.stderr[-3000:])
    deployment = httpx.get(f"{server.api_url}/deployments/{flow_run['deployment_id']}", timeout=10).json()
    assert deployment["name"] == "local"
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO)
    schema = deployment["parameter_openapi_schema"]["properties"]
    assert schema["shard_size"]["type"] == "integer" and schema["task_runner"]["enum"] == ["threads", "dask"]
    # Checked before money is spent: the form refuses what the flow would refuse.
    assert schema["shard_size"]["minimum"] == 1 and schema["shard_retries"]["minimum"] == 0
    export_enum = json.dumps(schema["export_format"])
    assert all(name in export_enum for name in ("jsonl", "intermt", "align-anything", "hf"))
    # Runs are named after their inputs, so experiments stay apart in the UI.
    assert flow_run["name"].startswith(f"{setup.graph.stem}-{setup.out.name}-")

    artifacts = httpx.post(f"{server.api_url}/artifacts/filter", timeout=10,
                           json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}).json()
    keys = {a["key"] for a in artifacts if a["key"]}  # the persisted result is an artifact without a key
    # One key per output (graph, folder, store hash): two experiments on one graph do not share a history.
    assert len(keys) == 2 and all(k.startswith(f"interleaf-counting-{setup.out.name}-") for k in keys)
    assert any(k.endswith("-shards") for k in keys)

    assert sorted(setup.log.calls()) == ["s0", "s1", "s2", "s3"]
    statuses = {p.stem: json.loads(p.read_text())["status"] for p in (setup.out / "status").glob("*.json")}
    assert statuses == {"s0": "done", "s1": "done", "s2": "done", "s3": "done"}
    assert len(list((setup.out / "dialogues").glob("*.json"))) == 4
    assert len(list((setup.out / "shards").glob("*.json"))) == 2
    manifest = RunManifest.load(ObjectStore(setup.out))
    assert manifest is not None and manifest.invocations[-1].outcome == "finished"
    last = manifest.invocations[-1].totals
    assert (last.seeds, last.done, last.failed, last.calls) == (4, 4, 0, 4)
    assert (manifest.counts.done, manifest.counts.pending) == (4, 0)
    assert not (setup.out / layout.LOCK).exists(), "the flow run did not release the run's writer lock"


def wait_for_final_state(api_url: str, flow_run_id: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        flow_run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        state = flow_run.get("state") or {}
        if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            return flow_run  # type: ignore[no-any-return]
        time.sleep(0.5)
