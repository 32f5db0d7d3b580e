"""prefect.yaml agrees with the flow's signature and the GPU pool's job template."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from interleaf.flows.dispatch import shard_flow_parameters
from interleaf.flows.generate import SHARD_DEPLOYMENT, generate_flow
from interleaf.flows.shard_flow import SHARD_FLOW_NAME, shard_flow
from interleaf.flows.shard_work import ShardJob
from interleaf.flows.shards import Shard
from interleaf.state import Seed

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "src/interleaf/flows/kubernetes_gpu_job_template.json"
GENERATE = ["local", "gpu-k8s", "nightly"]


def deployments() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in config["deployments"]}


def test_deployments_exist_and_point_at_the_flow() -> None:
    deps = deployments()
    assert set(deps) == {*GENERATE, "shard-local"}
    for dep in deps.values():
        path, _, name = dep["entrypoint"].partition(":")
        assert (REPO / path).is_file()
        assert name == ("shard_flow" if dep["name"] == "shard-local" else "generate_flow")


@pytest.mark.parametrize("name", GENERATE)
def test_parameters_are_flow_parameters(name: str) -> None:
    accepted = set(inspect.signature(generate_flow.fn).parameters)
    dep = deployments()[name]
    given = set(dep.get("parameters", {}))
    for schedule in dep.get("schedules") or []:
        given |= set(schedule.get("parameters", {}))
    assert given <= accepted, given - accepted
    required = {p.name for p in inspect.signature(generate_flow.fn).parameters.values() if p.default is p.empty}
    assert required <= set(dep.get("parameters", {}))


def test_nightly_schedule_keeps_its_settings_in_the_deployment() -> None:
    nightly = deployments()["nightly"]
    (schedule,) = nightly["schedules"]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "UTC" and schedule["active"] is False
    # Prefect resets a schedule's own parameters when it is switched on; deployment parameters stay.
    assert "parameters" not in schedule
    assert nightly["parameters"]["shard_size"] == 50 and nightly["parameters"]["shard_retries"] == 3


@pytest.mark.parametrize("name", GENERATE)
def test_one_flow_run_at_a_time_and_heartbeats_on(name: str) -> None:
    dep = deployments()[name]
    assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    env = dep["work_pool"]["job_variables"]["env"]
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) > 30 and env["PREFECT_LOGGING_EXTRA_LOGGERS"] == "interleaf"


def test_gpu_job_variables_are_defined_by_the_template() -> None:
    template = json.loads(TEMPLATE.read_text())
    declared = set(template["variables"]["properties"])
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= declared, used - declared
    job_variables = deployments()["gpu-k8s"]["work_pool"]["job_variables"]
    assert set(job_variables) <= declared, set(job_variables) - declared
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert job_variables["gpu_count"] >= 1


def test_shard_deployment_is_the_generate_flows_default_and_runs_shards_in_parallel() -> None:
    flow_name, _, name = SHARD_DEPLOYMENT.partition("/")
    assert flow_name == SHARD_FLOW_NAME == shard_flow.name
    assert inspect.signature(generate_flow.fn).parameters["shard_deployment"].default == SHARD_DEPLOYMENT
    shard = deployments()[name]
    local = deployments()["local"]
    assert "concurrency_limit" not in shard  # the shards of one run must not queue behind each other
    assert shard["work_pool"] == local["work_pool"] and shard["pull"] == local["pull"]
    assert not shard.get("parameters"), "every parameter comes from the parent flow run"


def test_parent_sends_exactly_the_shard_flows_parameters() -> None:
    job = ShardJob(graph="g.yaml", store="file:///r", seeds="/s.jsonl", graph_hash="h", concurrency=2,
                   limit_names=("gpu",))
    params = shard_flow_parameters(job, Shard.of(1, [Seed(id="a", prompt="x")]), shard_size=5, limit=3)
    assert set(params) == set(inspect.signature(shard_flow.fn).parameters)
    json.dumps(params)  # a flow run's parameters travel as JSON
