"""Shards across workers: one generate flow run, its shards as flow runs on two real process workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from interleaf import ObjectStore, RunManifest, layout
from interleaf.flows.generate import generate_flow
from tests.faults.run_checks import without_timings
from tests.fixtures.prefect import PrefectServer
from tests.flows.conftest import CountingSetup, make_counting_setup
from tests.flows.test_deploy_e2e import wait_for_final_state

REPO = Path(__file__).resolve().parents[2]
POOL = "interleaf-process"
PARENT = "interleaf-generate/local"
WORKERS = ("worker-a", "worker-b")


@dataclass
class Fleet:
    server: PrefectServer
    logs: dict[str, Path]

    def run_parent(self, params: dict[str, Any]) -> str:
        started = self.server.cli("deployment", "run", PARENT, "--params", json.dumps(params))
        match = re.search(r"UUID:\s*([0-9a-f-]{36})", started.stdout)
        assert match, started.stdout
        return match.group(1)

    def worker_output(self) -> str:
        return "\n".join(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}" for name, path in self.logs.items())


@pytest.fixture(scope="module")
def fleet(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The pool, the `local` and `shard-local` deployments, and two process workers polling every second."""
    server = prefect_server
    server.ensure_pool(POOL)
    server.cli("--no-prompt", "deploy", "--prefect-file", str(REPO / "prefect.yaml"), "--name", "local",
               "--name", "shard-local", cwd=REPO)
    root = tmp_path_factory.mktemp("workers")
    env = {**server.env, "PREFECT_WORKER_QUERY_SECONDS": "1",
           # The flow runs import the test node kind (tests.flows.kinds) from the checkout.
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs: list[subprocess.Popen[bytes]] = []
    logs: dict[str, Path] = {}
    try:
        for name in WORKERS:
            logs[name] = root / f"{name}.log"
            with logs[name].open("wb") as log:
                # --limit 2 each: the parent takes a slot of one worker, so three shards in flight
                # cannot all land on the same worker.
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
                     "--name", name, "--limit", "2"],
                    cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        yield Fleet(server=server, logs=logs)
    finally:
        for proc in procs:  # each worker and the flow-run processes it started
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def child_flow_runs(api_url: str, parent_id: str) -> list[dict[str, Any]]:
    runs = httpx.post(f"{api_url}/flow_runs/filter", timeout=10,
                      json={"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}}).json()
    return sorted(runs, key=lambda r: r["name"])  # type: ignore[no-any-return]


def export_rows(folder: Path) -> list[dict[str, Any]]:
    """The jsonl export's rows, without what differs between two runs of the same dialogues."""
    rows = [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted((without_timings(r) for r in rows), key=lambda r: json.dumps(r, sort_keys=True))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_shards_of_one_run_spread_over_two_workers(fleet: Fleet, tmp_path: Path) -> None:
    # The reference: the same seeds through the flow with its shards inside one flow run.
    reference = make_counting_setup(tmp_path / "reference", n_seeds=6)
    state = generate_flow(graph=str(reference.graph), seeds=str(reference.seeds), out=str(reference.out),
                          shard_size=2, export_format="jsonl", export_out=str(reference.root / "export"),
                          return_state=True)
    assert state.is_completed(), state.message

    setup: CountingSetup = make_counting_setup(tmp_path / "fleet", n_seeds=6)
    setup.fail_once("s3")  # shard 1 fails once: its retry is a fresh flow run
    parent_id = fleet.run_parent({
        "graph": str(setup.graph), "seeds": str(setup.seeds), "out": str(setup.out), "shard_size": 2,
        "max_parallel_shards": 3, "shard_dispatch": "deployment", "retry_delay_seconds": 0.1,
        "export_format": "jsonl", "export_out": str(setup.root / "export"),
    })
    parent = wait_for_final_state(fleet.server.api_url, parent_id, timeout=150)
    assert parent["state"]["type"] == "COMPLETED", (parent["state"], fleet.worker_output())

    shards = child_flow_runs(fleet.server.api_url, parent_id)
    names = [r["name"].removeprefix(parent["name"] + "-") for r in shards]
    assert names == ["shard-00000", "shard-00001", "shard-00001-retry1", "shard-00002"], names
    assert [r["state"]["type"] for r in shards] == ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED"]
    # Both workers ran shards, and no shard ran where the parent's lock lives: every one attached.
    ran_on = {r["labels"].get("prefect.worker.name") for r in shards}
    assert ran_on == set(WORKERS), (ran_on, fleet.worker_output())

    # No seed done twice: one call per seed, plus the one injected failure.
    assert sorted(setup.log.calls()) == ["s0", "s1", "s2", "s3", "s3", "s4", "s5"]
    manifest = RunManifest.load(ObjectStore(setup.out))
    assert manifest is not None and len(manifest.invocations) == 1  # only the parent writes the manifest
    last = manifest.invocations[-1]
    assert last.outcome == "finished"
    assert (last.totals.seeds, last.totals.done, last.totals.failed, last.totals.calls,
            last.totals.failed_calls) == (6, 6, 0, 7, 1)
    assert not (setup.out / layout.LOCK).exists()

    fleet_rows = export_rows(setup.root / "export")
    assert len(fleet_rows) == 6
    assert fleet_rows == export_rows(reference.root / "export")
