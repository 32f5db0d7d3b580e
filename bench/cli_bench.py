"""CLI start-up: wall time of ``interleaf --help`` (the lazy imports keep it short).

    python bench/cli_bench.py            # 7 runs each, median and min
    python bench/cli_bench.py --quick    # 2 runs

Measured for the console script, ``python -m interleaf``, and a bare ``python -c pass``
(the interpreter's own start, for scale). PYTHONDONTWRITEBYTECODE is left as the
environment has it; the first run warms the file cache and is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchkit import machine


def wall(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per command (default 7, quick 2)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 7)
    script = Path(sys.executable).parent / "interleaf"
    console = str(script) if script.exists() else shutil.which("interleaf")
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "python -m interleaf --help": [sys.executable, "-m", "interleaf", "--help"]}
    if console:
        commands["interleaf --help"] = [console, "--help"]
    print(f"machine: {machine()}; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    print("\n== figures")
    for label, cmd in commands.items():
        times = wall(cmd, runs)
        print(f"{label:<28} median {statistics.median(times):.3f} s  min {min(times):.3f} s  ({runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
