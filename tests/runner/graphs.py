"""Graph YAML and seed files for runner tests."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def chain_graph(path: Path, counter: Path, *, steps: int = 3, delay: float = 0.03, concurrency: int = 4,
                fail_seed: str | None = None, name: str = "counter-chain") -> Path:
    """A linear graph of ``steps`` SlowCounter nodes that log every call to ``counter``."""
    params = {"counter_file": str(counter), "delay": delay}
    if fail_seed is not None:
        params["fail_seed"] = fail_seed
    names = [f"step{i}" for i in range(steps)]
    lines = [f"name: {name}", f"defaults: {{concurrency: {concurrency}}}", "nodes:"]
    for n in names:
        lines.append(f'  {n}: {{kind: "tests.runner.kinds:SlowCounter", params: {json.dumps(params)}}}')
    lines.append("edges:")
    chain = ["START", *names, "END"]
    for a, b in itertools.pairwise(chain):
        lines.append(f"  - {{from: {a}, to: {b}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seeds_file(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"seed-{i:03d}", "prompt": f"question number {i}", "topic": i % 3}) + "\n")
    return path


def wait_until(proc: subprocess.Popen[Any], reached: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``reached`` until it holds; fail with the run's output if the run ends or stalls first."""
    deadline = time.monotonic() + timeout
    while not reached():
        if proc.poll() is not None:
            out, err = (_text(part) for part in proc.communicate())
            pytest.fail(f"run ended before {what} (rc {proc.returncode}): {out[-1500:]} {err[-1500:]}")
        assert time.monotonic() < deadline, f"the run made no progress towards {what}"
        time.sleep(0.01)


def wait_for_calls(proc: subprocess.Popen[str], counter: Path, n: int, timeout: float = 60) -> None:
    """Wait until ``counter`` has ``n`` lines; fail with the run's output if it ends or stalls first."""
    wait_until(proc, lambda: count_lines(counter) >= n, f"{n} calls", timeout)


def _text(part: str | bytes | None) -> str:
    if isinstance(part, bytes):
        return part.decode("utf-8", "replace")
    return part or ""


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def strip_timings(value: object) -> object:
    """Drop wall-clock fields so two runs' dialogues compare by content."""
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if k not in ("seconds", "latency_s")}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value
