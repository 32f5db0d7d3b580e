"""A run tells the truth: one writer per run, relocatable folders, changed seeds, exit codes.

Each test starts real ``interleaf run`` processes where a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interleaf import RunManifest, layout, run_status
from interleaf.run.layout import open_store
from tests.runner.graphs import chain_graph, count_lines, seeds_file, wait_for_calls

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "interleaf", *args]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd("run", *args, "--quiet"), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(_cmd("run", *args, "--quiet"), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_second_writer_is_refused_naming_the_holder(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    counter = tmp_path / "calls.txt"
    # Slow enough (about 10 s) that the second command starts while the first still writes.
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=2, delay=0.4, concurrency=2)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 24)
    args = [str(graph), "--seeds", str(seeds), "--out", str(tmp_path / "out")]
    if backend == "s3":
        moto = request.getfixturevalue("s3_env")
        args += ["--store", f"s3://{moto.create_bucket()}/runs/locked"]
    first = _start(*args)
    try:
        wait_for_calls(first, counter, 2)
        second = _run(*args)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "already has a writer" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "since" in second.stderr
        calls_while_refused = count_lines(counter)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    # Every seed ran once, by the first writer only: 24 seeds x 2 steps.
    assert count_lines(counter) == 48 and calls_while_refused < 48
    store = open_store(tmp_path / "out") if backend == "file" else None
    if store is not None:
        manifest = RunManifest.load(store)
        assert manifest is not None and len(manifest.invocations) == 1
        assert not store.exists(layout.LOCK)
    # Once the first is done the same command runs (and finds everything done).
    again = _run(*args)
    assert again.returncode == 0 and "24 already done" in again.stdout, again.stdout + again.stderr


def test_moved_and_copied_runs_resume_where_they_are(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=2, delay=0.0)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 4)
    a, b, c = tmp_path / "runs" / "a", tmp_path / "runs" / "b", tmp_path / "runs" / "c"
    done = _run(str(graph), "--seeds", str(seeds), "--out", str(a))
    assert done.returncode == 0, done.stderr
    assert count_lines(counter) == 8
    shutil.move(a, b)
    moved = _run(str(graph), "--seeds", str(seeds), "--out", str(b))
    assert moved.returncode == 0 and "4 already done" in moved.stdout, moved.stdout + moved.stderr
    assert count_lines(counter) == 8  # zero new model calls
    assert not a.exists()  # nothing written at the old path

    # A copy is a run of its own: finishing seeds there leaves the original untouched.
    shutil.copytree(b, c)
    more = seeds_file(tmp_path / "more.jsonl", 6)
    grown = _run(str(graph), "--seeds", str(more), "--out", str(c))
    assert grown.returncode == 0, grown.stdout + grown.stderr
    assert count_lines(counter) == 12  # only seeds 4 and 5, in the copy
    assert len(list((c / "status").glob("*.json"))) == 6
    assert len(list((b / "status").glob("*.json"))) == 4
    assert run_status(b).totals.done == 4 and run_status(c).totals.done == 6


def test_changed_seeds_are_refused_then_redone_on_request(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=1, delay=0.0)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 5)
    out = tmp_path / "out"
    assert _run(str(graph), "--seeds", str(seeds), "--out", str(out)).returncode == 0
    lines = seeds.read_text().splitlines()
    for i in (1, 3):
        row = json.loads(lines[i])
        row["prompt"] += " (reworded)"
        lines[i] = json.dumps(row)
    seeds.write_text("\n".join(lines) + "\n")
    refused = _run(str(graph), "--seeds", str(seeds), "--out", str(out))
    assert refused.returncode == 2
    assert "2 seed(s) differ" in refused.stderr and "'seed-001'" in refused.stderr and "'seed-003'" in refused.stderr
    assert "--rerun-changed" in refused.stderr
    assert count_lines(counter) == 5

    redone = _run(str(graph), "--seeds", str(seeds), "--out", str(out), "--rerun-changed")
    assert redone.returncode == 0, redone.stdout + redone.stderr
    assert count_lines(counter) == 7  # just the two changed seeds
    redo_lines = counter.read_text().splitlines()[5:]
    assert sorted(line.split()[0] for line in redo_lines) == ["seed-001", "seed-003"]
    dialogue = json.loads((out / "dialogues" / "seed-001.json").read_text())
    assert dialogue["seed"]["prompt"].endswith("(reworded)")
    # The new file is now the run's record: the same command again is a clean resume.
    assert _run(str(graph), "--seeds", str(seeds), "--out", str(out)).returncode == 0
    assert count_lines(counter) == 7


@pytest.mark.parametrize("args", [["--limit", "-1"], ["--limit", "0"], ["--concurrency", "0"],
                                  ["--shard-size", "0"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=1, delay=0.0)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 2)
    result = _run(str(graph), "--seeds", str(seeds), "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert args[0] in result.stderr
    assert count_lines(counter) == 0 and not (tmp_path / "out").exists()


def test_failed_seeds_exit_1_and_are_listed(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=1, delay=0.0, fail_seed="seed-002")
    seeds = seeds_file(tmp_path / "seeds.jsonl", 4)
    result = _run(str(graph), "--seeds", str(seeds), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "finished with failed seeds" in result.stdout and "3 done, 1 failed" in result.stdout
    status = subprocess.run(_cmd("status", str(tmp_path / "out"), "--json"), cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1
    data = json.loads(status.stdout)
    assert (data["seeds"], data["done"], data["failed"], data["pending"]) == (4, 3, 1, 0)
    assert data["failed_reasons"] == {"RuntimeError": 1}
    assert data["calls"] == 3 and data["failed_seeds"][0]["seed_id"] == "seed-002"


def test_ctrl_c_keeps_the_run_resumable(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=3, delay=0.05, concurrency=2)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 10)
    args = [str(graph), "--seeds", str(seeds), "--out", str(tmp_path / "out")]
    proc = _start(*args)
    wait_for_calls(proc, counter, 5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "INTERRUPTED" in out and "run the same command again to resume" in out
    report = run_status(tmp_path / "out")
    assert report.totals.pending > 0 and report.totals.failed == 0
    assert report.last is not None and report.last.outcome == "interrupted"
    assert report.last.totals.calls == count_lines(counter)  # calls in flight at the interrupt count too
    assert report.holder is None  # the lock was released
    resumed = _run(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(tmp_path / "out").totals.done == 10
    assert count_lines(counter) <= 30 + 2  # at most the steps in flight at the interrupt ran twice


def test_sigterm_stops_the_batch_and_records_it(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    # Long steps: when the signal comes every slot is busy, and the stop must not wait for them.
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=2, delay=1.5, concurrency=2)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 10)
    args = [str(graph), "--seeds", str(seeds), "--out", str(tmp_path / "out")]
    proc = _start(*args)
    wait_for_calls(proc, counter, 2)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - signalled < 10, "the stop waited for the dialogues in flight"
    assert proc.returncode == 130, out + err
    assert "SIGTERM" in out
    report = run_status(tmp_path / "out")
    assert report.last is not None and report.last.outcome == "interrupted" and "SIGTERM" in (report.last.message or "")
    assert report.totals.pending > 0 and report.totals.failed == 0 and report.holder is None
    resumed = _run(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(tmp_path / "out").totals.done == 10
