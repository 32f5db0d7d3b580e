"""Crash safety: SIGKILL mid-run then resume, and a run that rides out an S3 outage."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from interleaf import RunManifest, RunOptions, open_run
from interleaf.launch import run_from_cli
from interleaf.run.layout import dialogue_key, open_store, status_key
from interleaf.seeds import read_seeds
from interleaf.storage.store import ObjectStore
from tests.runner.graphs import chain_graph, count_lines, seeds_file, strip_timings

REPO = Path(__file__).resolve().parents[2]
N_SEEDS, STEPS, CONCURRENCY, DELAY = 20, 3, 4, 0.04


def _interleaf(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "interleaf", "run", *args, "--quiet"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _dialogues(store: ObjectStore) -> dict[str, object]:
    return {k: strip_timings(store.get_json(k)) for k in store.list("dialogues")}


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(f"kill-test-{backend}")
    total_calls = N_SEEDS * STEPS
    kill_after = rng.randint(10, total_calls - 15)
    seeds = seeds_file(tmp_path / "seeds.jsonl", N_SEEDS)

    # The uninterrupted reference run (same graph shape and seeds; its own call log).
    ref_counter = tmp_path / "ref-calls.txt"
    ref_graph = chain_graph(tmp_path / "ref.yaml", ref_counter, delay=0.0, concurrency=CONCURRENCY)
    ref = run_from_cli(RunOptions(graph=str(ref_graph), seeds=seeds, out=tmp_path / "ref", progress=False))
    assert ref.totals.done == N_SEEDS and count_lines(ref_counter) == total_calls and ref.exit_code == 0

    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, delay=DELAY, concurrency=CONCURRENCY)
    out = tmp_path / "out"
    args = [str(graph), "--seeds", str(seeds), "--out", str(out)]
    if backend == "s3":
        moto = request.getfixturevalue("s3_env")
        args += ["--store", f"s3://{moto.create_bucket()}/runs/kill"]

    proc = subprocess.Popen(_interleaf(args), cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while count_lines(counter) < kill_after:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"run ended before the kill point ({kill_after} calls): {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run made no progress towards the kill point")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    calls_at_kill = count_lines(counter)
    assert calls_at_kill < total_calls, "killed after the run had finished"

    resumed = subprocess.run(_interleaf(args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "0 failed" in resumed.stdout
    # The killed writer's lock was left behind; its pid is gone, so the resume took it over.
    assert "taking over the lock" in resumed.stdout + resumed.stderr

    run_store = open_store(out)
    ref_store = ObjectStore(tmp_path / "ref")
    ours, theirs = _dialogues(run_store), _dialogues(ref_store)
    assert sorted(ours) == sorted(theirs) == sorted(dialogue_key(f"seed-{i:03d}") for i in range(N_SEEDS))
    assert ours == theirs
    for i in range(N_SEEDS):
        assert run_store.get_json(status_key(f"seed-{i:03d}"))["status"] == "done"

    # Calls: every step made at least once; only steps in flight at the kill were made twice.
    calls = Counter(counter.read_text().splitlines())
    assert set(calls) == set(Counter(ref_counter.read_text().splitlines()))
    repeated = sum(n - 1 for n in calls.values())
    assert sum(calls.values()) == total_calls + repeated
    assert repeated <= CONCURRENCY, f"{repeated} calls repeated; at most {CONCURRENCY} steps were in flight"
    assert max(calls.values()) <= 2
    # The resumed invocation counts what it sent itself, not the killed process's calls.
    manifest = RunManifest.load(run_store)
    assert manifest is not None and len(manifest.invocations) == 1
    assert manifest.invocations[0].totals.calls == sum(calls.values()) - calls_at_kill
    assert not run_store.exists("lock.json")


async def test_run_finishes_through_an_s3_outage(
    tmp_path: Path, s3_env, flaky_s3, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    # The relay is the S3 endpoint the run sees; stopping it refuses and resets every
    # connection (as a dead server would) while moto keeps the bucket's contents.
    bucket = s3_env.create_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", flaky_s3.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint_url)
    counter = tmp_path / "calls.txt"
    n_seeds = 12
    graph = chain_graph(tmp_path / "g.yaml", counter, delay=0.03, concurrency=4)
    seeds = seeds_file(tmp_path / "seeds.jsonl", n_seeds)
    run = open_run(graph, tmp_path / "out", f"s3://{bucket}/outage")
    try:
        task = asyncio.create_task(run.arun_seeds(read_seeds(seeds)))
        while count_lines(counter) < 8:
            assert not task.done(), "run finished before the outage"
            await asyncio.sleep(0.005)
        flaky_s3.stop()
        await asyncio.sleep(3.0)
        calls_during_outage = count_lines(counter)
        flaky_s3.start()
        summary = await asyncio.wait_for(task, timeout=60)
    finally:
        await run.aclose()
        run.release()
    assert (summary.done, summary.failed) == (n_seeds, 0)
    assert calls_during_outage < n_seeds * 3  # the outage really hit the middle of the run
    assert count_lines(counter) == n_seeds * 3  # writes were retried, no step was redone
    store = ObjectStore(f"s3://{bucket}/outage")
    assert len(store.list("dialogues")) == n_seeds
    assert all(store.get_json(status_key(f"seed-{i:03d}"))["status"] == "done" for i in range(n_seeds))
