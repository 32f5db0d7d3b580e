"""``interleaf run --workers N``: one batch over N processes, same results, honest stops.

The export of a two-process run equals a one-process run's, byte for byte after dropping
timings; every request the simulator received is counted once; Ctrl-C to the whole process
group and a worker killed mid-batch both leave the run resumable with nothing duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from interleaf import RunOptions, run_status
from interleaf.datasets.export import export_run
from interleaf.launch import run_from_cli
from interleaf.processes import MIN_SEEDS_PER_PROCESS, choose_processes, may_use_processes, split_width
from interleaf.runner import open_run
from interleaf.testing.simulator import Simulator
from tests.faults.cli import REPO, interleaf_command, subprocess_env
from tests.faults.lite_graph import write_lite_graph, write_seeds
from tests.runner.graphs import chain_graph, count_lines, seeds_file, strip_timings, wait_for_calls, wait_until


def _start(*args: str) -> subprocess.Popen[str]:
    # Its own session: a Ctrl-C at a terminal reaches the whole process group, workers included.
    return subprocess.Popen(interleaf_command("run", *args, "--quiet"), cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(interleaf_command("run", *args, "--quiet"), cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=180)


def _start_chain_run(tmp_path: Path, *, steps: int, delay: float,
                     calls_before: int) -> tuple[subprocess.Popen[str], list[str], Path]:
    """24 seeds of a ``steps``-long chain on ``--workers 2``, once ``calls_before`` calls were made."""
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=steps, delay=delay, concurrency=4)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 24)
    args = [str(graph), "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--workers", "2"]
    proc = _start(*args)
    wait_for_calls(proc, counter, calls_before, timeout=90)
    return proc, args, counter


def _export_rows(run: Path, out: Path) -> list[object]:
    export_run(run, "jsonl", out)
    rows = []
    for path in sorted(out.rglob("*.jsonl")):
        rows += [strip_timings(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def test_two_processes_export_what_one_process_exports(tmp_path: Path, sim: Simulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    graph = write_lite_graph(tmp_path / "g.json", sim.base_url, k=2, max_turns=2)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 6)
    outcomes = {}
    for workers in (1, 2):
        sim.reset_counters()
        opts = RunOptions(graph=str(graph), seeds=seeds, out=tmp_path / f"w{workers}", progress=False,
                          preflight=False, workers=workers)
        outcome = run_from_cli(opts)
        assert outcome.exit_code == 0, outcome.describe()
        assert outcome.totals.calls == sim.stats()["requests"]  # each request counted once, in any process
        outcomes[workers] = outcome
    assert "2 worker processes" in outcomes[2].notes
    assert "worker processes" not in " ".join(outcomes[1].notes)
    one, two = (outcomes[w].totals for w in (1, 2))
    assert (two.done, two.calls, two.prompt_tokens, two.completion_tokens) == (
        one.done, one.calls, one.prompt_tokens, one.completion_tokens)
    rows_one = _export_rows(tmp_path / "w1", tmp_path / "x1")
    rows_two = _export_rows(tmp_path / "w2", tmp_path / "x2")
    assert rows_one and rows_one == rows_two
    report = run_status(tmp_path / "w2")
    assert report.totals.done == 6 and report.last is not None and report.last.processes == 2


def test_workers_resolve_the_graph_with_the_environment_of_their_batch(tmp_path: Path, sim: Simulator,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The fork server outlives a batch and keeps the environment it started with; a second batch
    # in the same process, with the endpoint moved, must reach the new endpoint.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    graph = write_lite_graph(tmp_path / "g.json", "${INTERLEAF_TEST_ENDPOINT}", k=1, max_turns=1)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 2)
    monkeypatch.setenv("INTERLEAF_TEST_ENDPOINT", sim.base_url)
    first = run_from_cli(RunOptions(graph=str(graph), seeds=seeds, out=tmp_path / "first", progress=False,
                                    preflight=False, workers=2))
    assert first.exit_code == 0, first.describe()
    assert sim.stats()["requests"] == first.totals.calls > 0
    with Simulator(seed=1) as moved:
        monkeypatch.setenv("INTERLEAF_TEST_ENDPOINT", moved.base_url)
        sim.reset_counters()
        second = run_from_cli(RunOptions(graph=str(graph), seeds=seeds, out=tmp_path / "second", progress=False,
                                         preflight=False, workers=2))
        assert second.exit_code == 0, second.describe()
        assert moved.stats()["requests"] == second.totals.calls > 0
        assert sim.stats()["requests"] == 0


def test_ctrl_c_to_the_process_group_stops_every_worker_and_resumes(tmp_path: Path) -> None:
    proc, args, counter = _start_chain_run(tmp_path, steps=3, delay=0.1, calls_before=12)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, out + err
    assert "INTERRUPTED" in out
    report = run_status(tmp_path / "out")
    assert report.last is not None and report.last.outcome == "interrupted"
    assert report.totals.pending > 0 and report.totals.failed == 0 and report.holder is None
    # Calls of dialogues the workers had in flight are counted too.
    assert report.last.totals.calls == count_lines(counter)
    resumed = _run(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(tmp_path / "out").totals.done == 24
    assert count_lines(counter) <= 3 * 24 + 4  # at most the steps in flight at the interrupt ran twice


def test_a_killed_worker_stops_the_run_resumably(tmp_path: Path) -> None:
    proc, args, counter = _start_chain_run(tmp_path, steps=2, delay=0.2, calls_before=6)
    # Workers are forked from the fork server, a child of the run's process.
    servers = [p for p in psutil.Process(proc.pid).children() if "forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1
    workers = servers[0].children()
    assert len(workers) == 2, [p.cmdline() for p in workers]
    workers[0].kill()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, out + err
    assert "worker process" in out and "signal 9" in out
    report = run_status(tmp_path / "out")
    assert report.last is not None and report.last.outcome == "stopped" and report.holder is None
    assert report.totals.pending > 0
    resumed = _run(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = run_status(tmp_path / "out").totals
    assert final.done == 24 and final.failed == 0
    # Only steps of the dialogues the killed worker had in flight may have run twice.
    assert count_lines(counter) <= 2 * 24 + 2 * 4


def test_how_many_processes_a_batch_gets(tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    graph = write_lite_graph(tmp_path / "g.json", sim.base_url)
    run = open_run(str(graph), tmp_path / "out")
    try:
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        assert choose_processes(run, 3, 100) == 3  # asked for: honoured
        assert choose_processes(run, 3, 2) == 2  # never more processes than seeds
        assert choose_processes(run, None, MIN_SEEDS_PER_PROCESS - 1) == 1  # too small to be worth a start
        assert choose_processes(run, None, 2 * MIN_SEEDS_PER_PROCESS) == 2
        assert choose_processes(run, None, 100 * MIN_SEEDS_PER_PROCESS) == 4  # at most the cores
        # Caps are totals, at least one a process: never more processes than the smallest cap.
        assert choose_processes(run, 64, 1000) == 4  # the graph's concurrency: 4 dialogues in flight
        assert choose_processes(run, 64, 1000, concurrency=2) == 2
        run.checkpoints = "sqlite"  # one SQLite file: one writer
        assert choose_processes(run, 4, 100) == 1
    finally:
        run.release()
    assert may_use_processes(None, 2 * MIN_SEEDS_PER_PROCESS) and not may_use_processes(None, 10)
    assert not may_use_processes(1, 1000) and may_use_processes(2, 2)
    assert [split_width(5, 2, i) for i in range(2)] == [3, 2]


def test_graphs_with_image_pipelines_keep_one_process_unless_asked(tmp_path: Path, sim: Simulator,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    doc = json.loads(write_lite_graph(tmp_path / "g.json", sim.base_url).read_text(encoding="utf-8"))
    doc["tools"] = {"draw": {"kind": "generate_image", "model": "tiny"}}
    (tmp_path / "g.json").write_text(json.dumps(doc), encoding="utf-8")
    run = open_run(str(tmp_path / "g.json"), tmp_path / "out")
    try:
        monkeypatch.setattr(os, "cpu_count", lambda: 8)
        assert choose_processes(run, None, 10_000) == 1  # one pipeline in memory, not eight
        assert choose_processes(run, 2, 10_000) == 2
    finally:
        run.release()


def test_workers_is_checked_before_anything_runs(tmp_path: Path) -> None:
    seeds = seeds_file(tmp_path / "seeds.jsonl", 2)
    bad = RunOptions(graph="intermt-lite", seeds=seeds, out=tmp_path / "out", workers=2, orchestrate=True)
    with pytest.raises(Exception, match="--workers is for a plain run"):
        run_from_cli(bad)
    assert not (tmp_path / "out").exists()


def test_the_help_text_states_the_real_threshold() -> None:
    from interleaf.cli import MIN_SEEDS_PER_PROCESS_HELP

    assert MIN_SEEDS_PER_PROCESS_HELP == MIN_SEEDS_PER_PROCESS


def test_the_fork_servers_preload_imports_every_name_and_starts_no_thread() -> None:
    # Workers are forked from the fork server: a thread an import started there would be copied
    # half-alive into each of them. A name the pinned versions lack would silently cost every
    # worker its start-up time again.
    from interleaf.processes import _PRELOAD as preload

    code = ("import importlib, threading\n"
            f"for name in {preload!r}:\n"
            "    importlib.import_module(name)\n"
            "print(threading.active_count())\n")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    assert {"litellm", "langgraph.pregel", "interleaf.runner"} <= set(preload)


def test_the_fork_servers_warm_up_builds_every_deferred_validator_it_names() -> None:
    # A name the pinned litellm or OpenAI SDK lacks (renamed, or no longer deferred) would cost
    # every worker its first-call build again without anyone noticing.
    code = ("import importlib, json\n"
            "from interleaf._preload import LAZY_MODELS\n"
            "out = {f'{m}.{n}': getattr(importlib.import_module(m), n).__pydantic_complete__ for m, n in LAZY_MODELS}\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout)
    assert len(built) == 10 and all(built.values()), built
    # Without the warm-up the same imports leave them unbuilt: the list names real work.
    code = ("import importlib, json, sys, litellm\n"
            "names = [name.rsplit('.', 1) for name in sys.argv[1:]]\n"
            "print(json.dumps([getattr(importlib.import_module(m), n).__pydantic_complete__ for m, n in names]))\n")
    done = subprocess.run([sys.executable, "-c", code, *built], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [False] * len(built)


def test_the_fork_server_reads_the_bundled_price_map_and_runs_one_thread() -> None:
    # A user's shell does not set LITELLM_LOCAL_MODEL_COST_MAP. Without it, the fork server's
    # import of litellm would fetch a price map over the network and start a retry thread there.
    env = {k: v for k, v in subprocess_env().items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    code = ("import sys\nfrom interleaf.processes import warm_up\nwarm_up()\nprint('up', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        servers = [p for p in psutil.Process(proc.pid).children() if "forkserver" in " ".join(p.cmdline())]
        assert len(servers) == 1
        assert servers[0].environ().get("LITELLM_LOCAL_MODEL_COST_MAP") == "True"
        # ensure_running returns once the server listens; its preload (litellm) may still be going.
        wait_until(proc, lambda: servers[0].cpu_percent(interval=0.5) <= 5, "the fork server's preload")
        assert servers[0].num_threads() == 1
    finally:
        proc.communicate("", timeout=30)
