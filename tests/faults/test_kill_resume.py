"""SIGKILL the same run three times, resume it, and get the dataset an uninterrupted run gets.

The simulator runs as its own process (``interleaf sim``) so it outlives every killed run; its
answers are a function of (seed, request), so both runs see the same answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interleaf import ObjectStore, RunManifest, RunOptions, layout
from interleaf.launch import run_from_cli
from interleaf.storage.checkpoint_log import read_frames
from tests.faults.cli import REPO, interleaf_command, subprocess_env
from tests.faults.lite_graph import write_lite_graph, write_seeds
from tests.faults.run_checks import check_every_seed_ended_once, final_dataset
from tests.fixtures.s3 import free_port
from tests.runner.graphs import wait_until

N_SEEDS = 6
#: Kill when the run has written this share of the checkpoints the uninterrupted run wrote.
KILL_AT = (0.15, 0.4, 0.65)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the simulator process exited"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"the simulator is not listening on {port}")


@pytest.fixture
def sim_process() -> Iterator[str]:
    """``interleaf sim`` in its own process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(interleaf_command("sim", "--port", str(port), "--seed", "11", "--latency", "0.03"),
                            cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _checkpoints(root: Path) -> int:
    """Checkpoints written so far: the intact ``c`` frames of the thread logs (``checkpoints/<thread>~log``)."""
    base = root / "checkpoints"
    if not base.is_dir():
        return 0
    return sum(sum(1 for body in read_frames(p.read_bytes())[0] if body.get("k") == "c")
               for p in base.glob("*~log"))


@pytest.mark.slow
def test_three_sigkills_then_resume_give_the_uninterrupted_dataset(
    tmp_path: Path, sim_process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    graph = write_lite_graph(tmp_path / "g.yaml", sim_process, timeout=10.0, max_retries=0, concurrency=2)
    seeds = write_seeds(tmp_path / "seeds.jsonl", N_SEEDS)
    seed_ids = [f"s{i:03d}" for i in range(N_SEEDS)]

    reference = run_from_cli(RunOptions(graph=str(graph), seeds=seeds, out=tmp_path / "ref", progress=False))
    assert (reference.totals.done, reference.totals.failed, reference.totals.pending) == (N_SEEDS, 0, 0)
    assert reference.outcome == "finished" and reference.exit_code == 0
    total = _checkpoints(tmp_path / "ref")
    assert total >= 20

    out = tmp_path / "out"
    args = ["run", str(graph), "--seeds", str(seeds), "--out", str(out), "--quiet"]
    env = subprocess_env()
    for share in KILL_AT:
        target = int(total * share)
        proc = subprocess.Popen(interleaf_command(*args), cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(proc, lambda at=target: _checkpoints(out) >= at, f"the kill at {target} checkpoints", timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        # A killed writer leaves its lock behind; the next start takes it over (its pid is gone).
        assert (out / layout.LOCK).is_file()
    finished = list((out / "status").glob("*.json")) if (out / "status").is_dir() else []
    assert len(finished) < N_SEEDS, "the run had finished before the last kill"

    resumed = subprocess.run(interleaf_command(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (out / layout.LOCK).exists(), "the resumed run did not release its lock"

    store, ref_store = ObjectStore(out), ObjectStore(tmp_path / "ref")
    assert check_every_seed_ended_once(store, seed_ids) == {"done": N_SEEDS, "failed": 0}
    ours, theirs = final_dataset(store), final_dataset(ref_store)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], f"{key} differs from the uninterrupted run"
    # Killed invocations record nothing; the resumed one records how it ended and the run's counts.
    manifest = RunManifest.load(store)
    assert manifest is not None and manifest.invocations[-1].outcome == "finished"
    assert (manifest.counts.seeds, manifest.counts.done, manifest.counts.failed, manifest.counts.pending) == (
        N_SEEDS, N_SEEDS, 0, 0)
