"""Peak memory for 1,000 vs 10,000 seeds: streamed seeds and bounded in-flight work keep it flat.

    python bench/memory_bench.py                       # 1,000 and 10,000 seeds, concurrency 32
    python bench/memory_bench.py --quick               # 100 and 1,000
    python bench/memory_bench.py --sizes 1000,5000

Each size is one ``interleaf run`` child process (the real CLI) of ``graphs/single-step.yaml``
(one model call a seed) against a zero-latency simulator in another process; the child's
peak RSS comes from ``os.wait4``. A ratio near 1 means memory does not grow with the
number of seeds; 10 would mean something holds every seed or dialogue.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import GRAPHS, machine, point_models_at, write_seeds
from simprocess import SimProcess

GRAPH = GRAPHS / "single-step.yaml"


def peak_rss_mib(seeds: Path, out: Path, concurrency: int) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one ``interleaf run`` child."""
    args = [sys.executable, "-m", "interleaf", "run", str(GRAPH), "--seeds", str(seeds), "--out", str(out),
            "--concurrency", str(concurrency), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"interleaf run failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help="comma list of seed counts (default 1000,10000; quick 100,1000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.quick else "1000,10000")).split(",")]
    print(f"machine: {machine()}")
    print(f"workload: {GRAPH.name} (1 call a seed), latency 0, concurrency {args.concurrency}, sizes {sizes}")
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="interleaf-memory-bench-") as tmp, SimProcess(0.0) as sim:
        work = Path(tmp)
        point_models_at(sim.base_url)
        for size in sizes:
            seeds = write_seeds(work / f"seeds-{size}.jsonl", size)
            sim.reset()
            peak, seconds = peak_rss_mib(seeds, work / f"run-{size}", args.concurrency)
            calls = sim.stats()["requests"]
            peaks.append(peak)
            print(f"{size:>7} seeds: peak RSS {peak:7.1f} MiB, {calls} calls, {seconds:6.1f} s "
                  f"({size / seconds:.0f} seeds/s)", flush=True)
    print("\n== figures")
    ratio = peaks[-1] / peaks[0]
    per_seed_kib = (peaks[-1] - peaks[0]) * 1024 / max(1, sizes[-1] - sizes[0])
    verdict = "near 1: met" if ratio <= 1.25 else "GROWS with seeds"
    print(f"peak RSS {sizes[-1]} / {sizes[0]} seeds: {ratio:.2f} ({verdict}); "
          f"{per_seed_kib:.2f} KiB per extra seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
