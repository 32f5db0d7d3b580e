"""`interleaf prefect setup` then `prefect deploy --all` on a fresh server deploys every deployment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from interleaf.flows.setup import AUTOMATION_NAME, needed
from tests.fixtures.prefect import PrefectServer

REPO = Path(__file__).resolve().parents[2]


def _interleaf(server: PrefectServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interleaf", *args], cwd=REPO, env=server.env, text=True,
                          capture_output=True, timeout=120)


def test_needed_reads_pools_and_limits_from_prefect_yaml() -> None:
    pools, limits = needed(REPO / "prefect.yaml")
    assert pools == {"interleaf-process": "process", "interleaf-gpu": "kubernetes"}
    assert limits == {"gpu-pool-a": 8}


@pytest.mark.slow
def test_setup_then_deploy_all_on_a_fresh_server(prefect_server: PrefectServer) -> None:
    server = prefect_server
    first = _interleaf(server, "prefect", "setup")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "created work pool interleaf-gpu (kubernetes)" in first.stdout
    assert f"created automation {AUTOMATION_NAME!r}" in first.stdout
    again = _interleaf(server, "prefect", "setup")  # idempotent
    assert again.returncode == 0 and "created" not in again.stdout, again.stdout

    server.cli("--no-prompt", "deploy", "--all", "--prefect-file", str(REPO / "prefect.yaml"), cwd=REPO)
    api = server.api_url
    deployments = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
    assert set(deployments) == {"local", "gpu-k8s", "nightly", "shard-local"}
    nightly = deployments["nightly"]
    assert nightly["parameters"]["shard_size"] == 50 and nightly["parameters"]["shard_retries"] == 3
    for dep in deployments.values():
        limit = dep.get("global_concurrency_limit") or {}
        # One generate run at a time per deployment; the shards of one run go in parallel.
        assert limit.get("limit") == (None if dep["name"] == "shard-local" else 1), dep["name"]
        assert dep["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "35"

    # Switching the schedule on keeps the run settings: they are the deployment's own parameters.
    (schedule,) = nightly["schedules"]
    assert schedule["active"] is False
    server.cli("deployment", "schedule", "resume", "interleaf-generate/nightly", schedule["id"])
    after = httpx.get(f"{api}/deployments/{nightly['id']}", timeout=10).json()
    assert after["schedules"][0]["active"] is True
    assert after["parameters"]["shard_size"] == 50 and after["parameters"]["retry_delay_seconds"] == 60

    automations = httpx.post(f"{api}/automations/filter", json={}, timeout=10).json()
    (zombie,) = [a for a in automations if a["name"] == AUTOMATION_NAME]
    assert zombie["trigger"]["posture"] == "Proactive" and zombie["actions"][0]["state"] == "CRASHED"
    pools = {p["name"]: p for p in httpx.post(f"{api}/work_pools/filter", json={}, timeout=10).json()}
    template = json.loads((REPO / "src/interleaf/flows/kubernetes_gpu_job_template.json").read_text())
    assert pools["interleaf-gpu"]["base_job_template"]["variables"] == template["variables"]
