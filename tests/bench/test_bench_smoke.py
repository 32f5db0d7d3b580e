"""The benchmark scripts still run: each in its smallest mode, checking the figures it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(90)
def test_engine_bench_compares_engine_and_plain_loop_on_the_same_calls() -> None:
    out = _run("engine_bench.py", "--quick", "--seeds", "2", "--phases", "text,plain")
    assert "(same calls per model)" in out
    ratio = re.search(r"engine / plain httpx loop: (\d+\.\d+)", out)
    cpu = re.search(r"engine CPU per call: (\d+\.\d+) ms", out)
    assert ratio and float(ratio.group(1)) > 0
    assert cpu and float(cpu.group(1)) > 0


@pytest.mark.timeout(60)
def test_peer_bench_runs_interleaf_and_explains_a_skipped_peer() -> None:
    out = _run("peer_bench.py", "--quick", "--seeds", "4")
    assert re.search(r"interleaf\s+4 done", out)
    assert "distilabel  skipped: not requested" in out


@pytest.mark.timeout(60)
def test_cli_bench_times_help() -> None:
    out = _run("cli_bench.py", "--quick", "--runs", "1")
    assert re.search(r"python -m interleaf --help\s+median \d+\.\d+ s", out)


@pytest.mark.parametrize("script", ["resume_bench.py", "memory_bench.py", "images_bench.py"])
def test_slow_bench_scripts_parse_their_flags(script: str) -> None:
    # These spawn CLI runs or build pipelines (tens of seconds even when quick); --help keeps them importable.
    assert "--quick" in _run(script, "--help", timeout=30)
