"""Peer comparison: N prompts -> one completion each, through interleaf and through distilabel.

    python bench/peer_bench.py                  # N=1000, latency 1 s, concurrency 64; interleaf only
    python bench/peer_bench.py --peer           # also distilabel, installed into a venv under /tmp
    python bench/peer_bench.py --quick --peer

Both go to the same simulator process (OpenAI-compatible, fixed latency), same prompts,
same concurrency, back to back in one run. interleaf runs ``graphs/single-step.yaml``
(one ``prompt_expansion`` call a seed) through the run engine with checkpoints, statuses
and dialogues written as in any run; distilabel runs ``LoadDataFromDicts >> TextGeneration``
with ``OpenAILLM`` and ``input_batch_size`` = concurrency (its async LLM gathers a batch's
calls), in its own venv (``/tmp/interleaf-bench-distilabel``) so the project's pins stay
untouched. Without ``--peer`` or when distilabel cannot be installed, the reason is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import GRAPHS, cpu_seconds, machine, point_models_at, write_seeds
from simprocess import SimProcess

PEER_VENV = Path(tempfile.gettempdir()) / "interleaf-bench-distilabel"
PEER_SPEC = "distilabel==1.5.3"

# Runs inside the distilabel venv; prints one JSON line with its timings.
_PEER_SCRIPT = r"""
import json, sys, time, logging
from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration

base_url, seeds_path, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [{"instruction": json.loads(line)["prompt"]} for line in open(seeds_path)]
with Pipeline(name="interleaf-peer-bench") as pipeline:
    load = LoadDataFromDicts(data=rows, batch_size=concurrency)
    llm = OpenAILLM(model="bench-assistant", base_url=base_url, api_key="sk-bench-local", max_retries=0, timeout=120)
    generate = TextGeneration(llm=llm, input_batch_size=concurrency, add_raw_output=False, add_raw_input=False)
    load >> generate
t0 = time.perf_counter()
distiset = pipeline.run(use_cache=False, logging_handlers=[logging.NullHandler()])
seconds = time.perf_counter() - t0
out = distiset["default"]["train"]
done = sum(1 for g in out["generation"] if g)
print("RESULT " + json.dumps({"seconds": seconds, "rows": len(out), "done": done}))
"""


def ensure_peer() -> tuple[Path | None, str]:
    """The distilabel venv's python, or None and why not."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        check = "import distilabel, openai, requests; print(distilabel.__version__)"
        probe = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
        if probe.returncode == 0:
            return python, f"distilabel {probe.stdout.strip()} (cached venv {PEER_VENV})"
    print(f"installing {PEER_SPEC} into {PEER_VENV} (one-off) ...", flush=True)
    # distilabel 1.5.3 imports requests without declaring it as a dependency.
    steps = [[sys.executable, "-m", "venv", str(PEER_VENV)],
             [str(python), "-m", "pip", "install", "-q", PEER_SPEC, "openai", "requests"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"could not install {PEER_SPEC}: {(done.stderr or done.stdout).strip()[-600:]}"
    return python, f"{PEER_SPEC} (installed into {PEER_VENV})"


async def run_interleaf(seeds: Path, work: Path, sim: SimProcess, concurrency: int) -> tuple[float, int, float]:
    from interleaf.runner import open_run
    from interleaf.seeds import read_seeds

    graph = GRAPHS / "single-step.yaml"
    warm = write_seeds(work / "warm.jsonl", 2)
    run = open_run(graph, work / "warm", concurrency=concurrency)
    try:
        await run.arun_seeds(read_seeds(warm), concurrency=concurrency)
    finally:
        await run.aclose()
        run.release()
    run = open_run(graph, work / "interleaf", seeds_path=seeds, concurrency=concurrency)
    sim.reset()
    try:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        totals = await run.arun_seeds(read_seeds(seeds), concurrency=concurrency)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    finally:
        await run.aclose()
        run.release()
    return seconds, totals.done, cpu


def run_distilabel(python: Path, seeds: Path, sim: SimProcess, concurrency: int) -> tuple[float, int, str]:
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "ERROR"}
    sim.reset()
    done = subprocess.run([str(python), "-c", _PEER_SCRIPT, sim.base_url, str(seeds), str(concurrency)],
                          capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"distilabel run failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    return float(result["seconds"]), int(result["done"]), f"{result['rows']} rows"


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None, help="prompts (default 1000, quick 32)")
    parser.add_argument("--latency", type=float, default=None, help="simulated seconds a call (default 1.0)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--peer", action="store_true", help="also run distilabel (installs it into a /tmp venv)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = args.seeds or (32 if args.quick else 1000)
    latency = args.latency if args.latency is not None else (0.05 if args.quick else 1.0)
    print(f"machine: {machine()}")
    print(f"workload: {n} prompts -> 1 completion each, latency {latency} s, concurrency {args.concurrency}")
    peer: Path | None = None
    why = "not requested (pass --peer)"
    if args.peer:
        peer, why = ensure_peer()
    with tempfile.TemporaryDirectory(prefix="interleaf-peer-bench-") as tmp, SimProcess(latency) as sim:
        work = Path(tmp)
        point_models_at(sim.base_url)
        seeds = write_seeds(work / "seeds.jsonl", n)
        seconds, done, cpu = await run_interleaf(seeds, work, sim, args.concurrency)
        calls = sim.stats()["requests"]
        ours = done / seconds
        print(f"interleaf   {done:>6} done {seconds:8.2f} s {ours:8.1f} prompts/s  ({calls} calls, "
              f"CPU {1000 * cpu / max(1, calls):.2f} ms/call; ideal {args.concurrency / latency:.1f}/s)", flush=True)
        if peer is None:
            print(f"distilabel  skipped: {why}")
            return 0
        try:
            p_seconds, p_done, note = run_distilabel(peer, seeds, sim, args.concurrency)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"distilabel  failed: {exc}")
            return 0
        p_calls = sim.stats()["requests"]
        theirs = p_done / p_seconds
        print(f"distilabel  {p_done:>6} done {p_seconds:8.2f} s {theirs:8.1f} prompts/s  ({p_calls} calls, {note}; "
              f"{why}; pipeline.run wall, excludes interpreter start)")
    print("\n== figures")
    print(f"interleaf / distilabel throughput: {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
