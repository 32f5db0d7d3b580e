"""The benchmark scripts still run: each in its smallest mode, checking the figures it prints."""

from __future__ import annotations

import json
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
def test_peer_bench_runs_interleaf_and_explains_a_skipped_peer(tmp_path: Path) -> None:
    figures = tmp_path / "peer.json"
    out = _run("peer_bench.py", "--quick", "--seeds", "4", "--json", str(figures))
    assert re.search(r"interleaf\s+4 done", out)
    assert re.search(r"aiohttp\s+4 done", out)
    assert "distilabel  skipped: not requested" in out
    data = json.loads(figures.read_text())
    # The schema other tools read (issue #17).
    assert data["interleaf"]["per_s"] > 0 and data["interleaf"]["cpu_ms_per_call"] > 0
    assert data["aiohttp"]["per_s"] > 0
    assert data["distilabel"]["per_s"] is None and "not requested" in data["distilabel"]["skipped"]


def test_run_all_prints_each_goal_and_rewrites_only_its_block(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    peer = {"latency": 1.0, "workers": 2, "interleaf": {"per_s": 60.0, "cpu_ms_per_call": 6.0, "calls": 1000},
            "aiohttp": {"per_s": 62.0}, "distilabel": {"per_s": None, "skipped": "not requested"}}
    by = {"peer-1.0": run_all.Bench("peer-1.0", "peer_bench.py", [], 1, data=peer),
          "resume": run_all.Bench("resume", "resume_bench.py", [], 1, data={"seeds": 500, "waste": 0.005})}
    lines = {g.number: g.line() for g in run_all.goals(by)}
    assert lines["1b"].endswith("met") and "0.97x / >= 0.95x" in lines["1b"]
    assert "missed (not measured)" in lines["1a"] and "distilabel skipped" in lines["1a"]
    assert "6.00 ms / <= 5.00 ms" in lines["3"] and "missed" in lines["3"]
    assert "0.50 % / <= 1.00 %" in lines["5"] and lines["5"].endswith("met")
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# R\n\nprose before\n\n{run_all.BEGIN}\nold figures\n{run_all.END}\n\nprose after\n")
    run_all.rewrite_results(results, "new figures")
    text = results.read_text()
    assert "old figures" not in text and "new figures" in text
    assert "prose before" in text and "prose after" in text


@pytest.mark.timeout(60)
def test_cli_bench_times_help() -> None:
    out = _run("cli_bench.py", "--quick", "--runs", "1")
    assert re.search(r"python -m interleaf --help\s+median \d+\.\d+ s", out)


@pytest.mark.parametrize("script", ["resume_bench.py", "memory_bench.py", "images_bench.py"])
def test_slow_bench_scripts_parse_their_flags(script: str) -> None:
    # These spawn CLI runs or build pipelines (tens of seconds even when quick); --help keeps them importable.
    assert "--quick" in _run(script, "--help", timeout=30)
