"""Resume waste: kill a run with SIGKILL half-way, run the same command again, count the extra calls.

    python bench/resume_bench.py                 # N=500, latency 0.2 s, concurrency 32
    python bench/resume_bench.py --quick         # N=24 (smoke run)
    python bench/resume_bench.py --workers 1 --json /tmp/resume.json

Three runs of ``interleaf run`` (the real CLI, in child processes, ``--workers`` as given:
by default none, so the run picks and the multi-process mode is on) on the text-only bench
graph against one simulator process: an uninterrupted run; a run killed with SIGKILL once
the simulator has been sent ``--kill-at`` (default 50%) of the uninterrupted run's calls;
and the same command again, which resumes. The kill goes to the run's whole process group
(the CLI, its fork server, its workers), as a crash or an OOM kill of the machine's job
would, so no worker gets to finish anything. Waste = (killed + resumed calls - uninterrupted
calls) / uninterrupted calls. Calls in flight at the kill are lost by nature (their answers
never arrived), so part of the waste is set by concurrency x calls in flight, not the engine.
``--json FILE`` writes ``{"calls", "killed_sent", "killed_answered", "resumed", "extra", "waste", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import GRAPHS, load_average, machine, point_models_at, write_json, write_seeds
from simprocess import SimProcess

GRAPH = GRAPHS / "engine-2turn-text.yaml"


def interleaf_run(seeds: Path, out: Path, concurrency: int, workers: int | None) -> subprocess.Popen[bytes]:
    """``interleaf run`` in its own process group (so one killpg reaches its workers too)."""
    args = [sys.executable, "-m", "interleaf", "run", str(GRAPH), "--seeds", str(seeds), "--out", str(out),
            "--concurrency", str(concurrency), "--quiet"]
    if workers is not None:
        args += ["--workers", str(workers)]
    return subprocess.Popen(args, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a run; a failed run stops the benchmark with its stderr."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"interleaf run failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")


def done_count(out: Path) -> int:
    """Dialogues whose status file says done."""
    count = 0
    for path in (out / "status").glob("*.json"):
        try:
            count += json.loads(path.read_text()).get("status") == "done"
        except (OSError, ValueError):
            pass
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None, help="dialogues (default 500, quick 24)")
    parser.add_argument("--latency", type=float, default=None, help="simulated seconds a call (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of the calls after which to SIGKILL")
    parser.add_argument("--workers", type=int, default=None, help="--workers of interleaf run (default: not given)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = args.seeds or (24 if args.quick else 500)
    latency = args.latency if args.latency is not None else (0.05 if args.quick else 0.2)
    print(f"machine: {machine()}")
    print(f"workload: {n} dialogues of {GRAPH.name}, latency {latency} s, concurrency {args.concurrency}, "
          f"SIGKILL at {args.kill_at:.0%} of the calls, workers "
          f"{'as interleaf run picks' if args.workers is None else args.workers}", flush=True)
    with tempfile.TemporaryDirectory(prefix="interleaf-resume-bench-") as tmp, SimProcess(latency) as sim:
        work = Path(tmp)
        point_models_at(sim.base_url)
        seeds = write_seeds(work / "seeds.jsonl", n)

        sim.reset()
        t0 = time.perf_counter()
        finish(interleaf_run(seeds, work / "whole", args.concurrency, args.workers))
        whole_s = time.perf_counter() - t0
        whole = sim.stats()["requests"]
        print(f"uninterrupted: {whole} calls, {done_count(work / 'whole')} done, {whole_s:.1f} s", flush=True)

        sim.reset()
        target = int(whole * args.kill_at)
        proc = interleaf_run(seeds, work / "killed", args.concurrency, args.workers)
        while proc.poll() is None and sim.stats()["requests"] < target:
            time.sleep(0.02)
        if proc.poll() is not None:
            raise RuntimeError("the run finished before the kill point; use more --seeds")
        # The simulator finishes a request even when its client is gone, so "answered" after the
        # kill includes answers nobody read: what was in flight is read just before the kill.
        before = sim.stats()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)  # let the simulator count the requests whose connections just closed
        killed = sim.stats()
        print(f"killed: SIGKILL after {killed['requests']} calls sent ({killed['completed']} answered), "
              f"{done_count(work / 'killed')} dialogues done", flush=True)

        sim.reset()
        t0 = time.perf_counter()
        finish(interleaf_run(seeds, work / "killed", args.concurrency, args.workers))
        resumed = sim.stats()["requests"]
        done = done_count(work / "killed")
        resumed_s = time.perf_counter() - t0
        print(f"resumed: {resumed} calls, {done} done in all, {resumed_s:.1f} s", flush=True)

    extra = killed["requests"] + resumed - whole
    # Sent by the kill and not answered before it (a call answered in the few milliseconds
    # between the reading and the kill counts here too).
    lost_in_flight = killed["requests"] - before["completed"]
    waste = extra / whole
    print("\n== figures")
    print(f"extra calls: {extra} of {whole} = {waste:.2%} (goal <= 1%: {'met' if waste <= 0.01 else 'missed'})")
    print(f"of which in flight at the kill (sent, not answered before it): {lost_in_flight}; "
          f"re-run after being answered: {extra - lost_in_flight}")
    print(f"load after: {load_average()}")
    write_json(args.json, {"seeds": n, "latency": latency, "concurrency": args.concurrency, "workers": args.workers,
                           "calls": whole, "whole_s": whole_s, "killed_sent": killed["requests"],
                           "killed_answered": killed["completed"], "resumed": resumed, "resumed_s": resumed_s,
                           "extra": extra, "lost_in_flight": lost_in_flight, "waste": waste, "done": done,
                           "machine": machine()})
    if done != n:
        print(f"WARNING: {done} of {n} dialogues done after the resume")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
