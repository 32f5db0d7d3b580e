"""What every benchmark script here shares: seeds files, model endpoints, CPU clocks, a machine line."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
GRAPHS = BENCH_DIR / "graphs"
_TOPICS = ("tides", "volcanoes", "sourdough bread", "bridges", "bees", "comets", "glaciers", "wind turbines",
           "coral reefs", "origami cranes", "lighthouses", "auroras")


def write_seeds(path: Path, count: int) -> Path:
    """A JSONL seeds file of ``count`` distinct prompts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            topic = _TOPICS[i % len(_TOPICS)]
            prompt = f"Explain how {topic} work (case {i}) and show a picture of {topic} number {i}."
            fh.write(json.dumps({"id": f"s{i:06d}", "prompt": prompt}) + "\n")
    return path


def point_models_at(base_url: str) -> None:
    """The bench graphs read their endpoint and key from the environment."""
    os.environ["INTERLEAF_API_BASE"] = base_url
    os.environ["OPENAI_API_KEY"] = "sk-bench-local"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def cpu_seconds() -> float:
    """User + system CPU of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    """CPU model, cores, RAM, Python: one line for the results."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, Python {platform.python_version()}, "
            f"load {load_average()}")


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
