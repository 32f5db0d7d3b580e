"""Peak memory for 1,000 vs 10,000 seeds: streamed seeds and bounded in-flight work keep it flat.

    python bench/memory_bench.py                       # 1,000 and 10,000 seeds, concurrency 32
    python bench/memory_bench.py --quick               # 100 and 1,000
    python bench/memory_bench.py --sizes 1000,5000 --workers 1 --json /tmp/memory.json

Each size is one ``interleaf run`` child process (the real CLI) of ``graphs/single-step.yaml``
(one model call a seed) against a zero-latency simulator in another process, with
``--workers`` as given (default: none given, so ``interleaf run`` picks: on this machine
the cores, i.e. the multi-process mode is on). Memory is the run's whole process tree (the
CLI, its fork server and the worker processes, which ``os.wait4`` would not report because
they are the fork server's children), sampled every 0.25 s from ``/proc``: the peak of the
summed PSS (shared pages split between the processes sharing them) is the figure; the summed
RSS and the CLI process's own peak (``os.wait4``) are printed beside it. A ratio near 1 means
memory does not grow with the number of seeds; 10 would mean something holds every seed.
``--json FILE`` writes ``{"sizes": [...], "runs": [{"seeds", "peak_pss_mib", ...}], "ratio"}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import GRAPHS, TreeMemory, load_average, machine, point_models_at, write_json, write_seeds
from simprocess import SimProcess

GRAPH = GRAPHS / "single-step.yaml"


def measure(seeds: Path, out: Path, concurrency: int, workers: int | None) -> dict[str, Any]:
    """Peak memory and wall of one ``interleaf run`` child."""
    args = [sys.executable, "-m", "interleaf", "run", str(GRAPH), "--seeds", str(seeds), "--out", str(out),
            "--concurrency", str(concurrency), "--quiet"]
    if workers is not None:
        args += ["--workers", str(workers)]
    log = out.parent / f"{out.name}.log"
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, env=os.environ.copy(), stdout=fh, stderr=subprocess.STDOUT)
        with TreeMemory(proc.pid) as tree:
            # wait4, not communicate(): its rusage is the CLI process's own peak RSS.
            _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    said = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"interleaf run failed ({proc.returncode}): {said[-2000:]}")
    return {"peak_pss_mib": tree.peak_pss_mib, "peak_rss_sum_mib": tree.peak_rss_mib,
            "peak_processes": tree.peak_processes, "cli_peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
            "seconds": seconds, "summary": said.strip().splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help="comma list of seed counts (default 1000,10000; quick 100,1000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="--workers of interleaf run (default: not given)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="scale a later size down when the first size's rate says it would take longer "
                             "(printed and written as scaled; default: never)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.quick else "1000,10000")).split(",")]
    print(f"machine: {machine()}")
    workers = "as interleaf run picks" if args.workers is None else str(args.workers)
    print(f"workload: {GRAPH.name} (1 call a seed), latency 0, concurrency {args.concurrency}, workers {workers}, "
          f"sizes {sizes}", flush=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="interleaf-memory-bench-") as tmp, SimProcess(0.0) as sim:
        work = Path(tmp)
        point_models_at(sim.base_url)
        for i, size in enumerate(sizes):
            requested = size
            if i and args.max_seconds and size / runs[0]["rate"] > args.max_seconds:
                # Not enough time on this machine: fewer seeds, said so, rather than a run cut short.
                size = max(sizes[0] + 1, int(runs[0]["rate"] * args.max_seconds) // 100 * 100)
                sizes[i] = size
                print(f"scaled: {requested} seeds would take ~{requested / runs[0]['rate']:.0f} s at "
                      f"{runs[0]['rate']:.0f} seeds/s (over --max-seconds {args.max_seconds:.0f}); running {size}",
                      flush=True)
            seeds = write_seeds(work / f"seeds-{size}.jsonl", size)
            sim.reset()
            run = measure(seeds, work / f"run-{size}", args.concurrency, args.workers)
            run.update(seeds=size, requested=requested, calls=sim.stats()["requests"], rate=size / run["seconds"])
            runs.append(run)
            print(f"{size:>7} seeds: peak PSS {run['peak_pss_mib']:7.1f} MiB over {run['peak_processes']} processes "
                  f"(RSS summed {run['peak_rss_sum_mib']:.1f}, CLI process alone {run['cli_peak_rss_mib']:.1f}), "
                  f"{run['calls']} calls, {run['seconds']:6.1f} s ({size / run['seconds']:.0f} seeds/s)", flush=True)
    print("\n== figures")
    first, last = runs[0], runs[-1]
    ratio = last["peak_pss_mib"] / first["peak_pss_mib"]
    per_seed_kib = (last["peak_pss_mib"] - first["peak_pss_mib"]) * 1024 / max(1, sizes[-1] - sizes[0])
    verdict = "met" if ratio <= 1.2 else "missed"
    print(f"peak PSS {sizes[-1]} / {sizes[0]} seeds: {ratio:.2f} (goal <= 1.2: {verdict}); "
          f"{per_seed_kib:.2f} KiB per extra seed")
    print(f"load after: {load_average()}")
    write_json(args.json, {"sizes": sizes, "runs": runs, "ratio": ratio, "per_seed_kib": per_seed_kib,
                           "concurrency": args.concurrency, "workers": args.workers, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
