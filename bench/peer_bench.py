"""Peer comparison: N prompts -> one completion each, through interleaf, a plain aiohttp loop and distilabel.

    python bench/peer_bench.py                     # N=1000, latency 1 s, 64 in flight; interleaf + aiohttp
    python bench/peer_bench.py --peer              # also distilabel, installed into a venv under /tmp
    python bench/peer_bench.py --latency 1.0,0.2   # a sweep: each latency is one simulator, all phases
    python bench/peer_bench.py --workers 1         # interleaf in this process (default: as `interleaf run`)
    python bench/peer_bench.py --breakdown --json /tmp/peer.json
    python bench/peer_bench.py --quick --peer

Phases, back to back for each latency, against one simulator process (OpenAI-compatible,
fixed latency; its CPU is not counted):

``interleaf``  ``graphs/single-step.yaml`` (one ``assistant_turn`` call a seed) through the run
               engine with checkpoints, statuses and dialogues written as in any run, on
               ``--workers`` processes (default: what ``interleaf run`` picks, the cores with at
               most one per 32 seeds, via ``interleaf.processes.choose_processes``; 1 = this
               process). CPU per call = this process's CPU + the workers' (their own report)
               over the calls the simulator answered: interleaf's and litellm's CPU together.
               Requests in flight are capped at ``--concurrency`` by the model's
               ``max_concurrency``, as a graph caps them for a provider; ``--dialogues``
               (default 1.5x that) dialogues are open at once, so a freed request slot goes to a
               dialogue that is ready to send instead of waiting for the next dialogue's first
               steps. The simulator's peak of requests in flight is printed for every phase.
``aiohttp``    the limit: the bodies interleaf sent, replayed through one ``aiohttp.ClientSession``
               with the same number in flight, in this process (``benchkit.replay``, the same
               loop ``engine_bench.py`` uses).
``distilabel`` (``--peer``) ``LoadDataFromDicts >> TextGeneration`` with ``OpenAILLM`` and
               ``input_batch_size`` = concurrency (its async LLM gathers a batch's calls), in its
               own venv (``/tmp/interleaf-bench-distilabel``) so the project's pins stay
               untouched; timed around ``pipeline.run``. Without ``--peer`` or when it cannot be
               installed, the reason is printed (and written as ``skipped`` in the JSON).
``breakdown``  (``--breakdown``) interleaf again, in this process (workers=1), with
               ``cpuparts.CpuParts`` charging its CPU to litellm, LangGraph, pydantic,
               checkpoints, status writes and the rest (see ``bench/cpuparts.py`` for how).

``--json FILE`` writes the figures of the first latency of the sweep (the goal's) as
``{"interleaf": {"per_s", "cpu_ms_per_call", "peak_in_flight", ...}, "distilabel": {"per_s": float | null,
"skipped": why (only when skipped)}, "aiohttp": {"per_s", ...}, "latency", "seeds",
"concurrency", "workers", "machine", "runs": [every latency's figures, same shape],
"breakdown": {...} (with --breakdown)}``. ``per_s`` is prompts (= calls) per second.
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
from typing import Any

import yaml
from benchkit import (
    GRAPHS,
    BodyPool,
    cpu_seconds,
    load_average,
    machine,
    point_models_at,
    replay,
    run_graph,
    warm_graph,
    write_json,
    write_seeds,
)
from simprocess import SimProcess

GRAPH = GRAPHS / "single-step.yaml"
#: Dialogues open at once per request slot, unless ``--dialogues`` says otherwise.
DIALOGUES_PER_SLOT = 1.5
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


def run_distilabel(python: Path, seeds: Path, sim: SimProcess, concurrency: int) -> tuple[float, int, str]:
    """(seconds of ``pipeline.run``, rows with a generation, a note) of one distilabel run."""
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "ERROR"}
    sim.reset()
    done = subprocess.run([str(python), "-c", _PEER_SCRIPT, sim.base_url, str(seeds), str(concurrency)],
                          capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"distilabel run failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    return float(result["seconds"]), int(result["done"]), f"{result['rows']} rows"


def _line(label: str, done: int, seconds: float, calls: int, extra: str) -> str:
    return f"{label:<11} {done:>6} done {seconds:8.2f} s {done / seconds:8.1f} prompts/s  ({calls} calls{extra})"


def capped_graph(work: Path, concurrency: int) -> Path:
    """:data:`GRAPH` with its model's ``max_concurrency`` set to ``concurrency``, written into ``work``.

    The cap is what a graph gives a provider: the endpoint never sees more requests in flight,
    however many dialogues are open.
    """
    spec = yaml.safe_load(GRAPH.read_text(encoding="utf-8"))
    for model in spec["models"].values():
        model["max_concurrency"] = concurrency
    path = work / GRAPH.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


async def bench_latency(latency: float, n: int, args: argparse.Namespace, peer: Path | None,
                        why: str) -> dict[str, Any]:
    """Every phase at one latency, one simulator; the figures as ``--json`` writes them."""
    dialogues = args.dialogues
    out: dict[str, Any] = {"latency": latency, "seeds": n, "concurrency": args.concurrency, "dialogues": dialogues,
                           "ideal_per_s": args.concurrency / latency if latency else None}
    print(f"\n== latency {latency} s: {n} prompts -> 1 completion each, {args.concurrency} in flight "
          f"(interleaf: {dialogues} dialogues open)", flush=True)
    with tempfile.TemporaryDirectory(prefix="interleaf-peer-bench-") as tmp, \
            SimProcess(latency, record=True) as sim:
        work = Path(tmp)
        point_models_at(sim.base_url)
        graph = capped_graph(work, args.concurrency)
        seeds = write_seeds(work / "seeds.jsonl", n)
        warm = await warm_graph(graph, work, concurrency=dialogues, workers=args.workers, seeds=n)
        sim.reset()
        ours = await run_graph(graph, seeds, work / "interleaf", concurrency=dialogues, workers=args.workers)
        stats = sim.stats()
        calls = stats["requests"]
        bodies = sim.bodies()
        cpu_ms = 1000 * ours.cpu_s / max(1, calls)
        out["workers"] = ours.processes
        out["interleaf"] = {"per_s": ours.done / ours.seconds, "cpu_ms_per_call": cpu_ms, "seconds": ours.seconds,
                            "done": ours.done, "failed": ours.failed, "calls": calls, "workers": ours.processes,
                            "peak_in_flight": stats["peak"],
                            "cpu_parent_s": ours.cpu_parent_s, "cpu_workers_s": ours.cpu_workers_s,
                            # One worker's fixed start (from the warm-up batch, one seed a worker).
                            "worker_start_cpu_s": warm.cpu_workers_s / warm.processes if warm.processes > 1 else 0.0}
        print(_line("interleaf", ours.done, ours.seconds, calls,
                    f", {ours.processes} process{'es' if ours.processes > 1 else ''}, CPU {cpu_ms:.2f} ms/call = "
                    f"{ours.cpu_parent_s:.1f} s here + {ours.cpu_workers_s:.1f} s workers, "
                    f"peak {stats['peak']} in flight"), flush=True)
        if ours.processes > 1:
            start = out["interleaf"]["worker_start_cpu_s"]
            print(f"{'':<11} a worker's start costs ~{start:.2f} s CPU (warm-up batch): "
                  f"~{1000 * start * ours.processes / max(1, calls):.2f} ms of each call's CPU here", flush=True)

        # The same bodies, one call a prompt, the same number in flight.
        pool = BodyPool(bodies)
        plans = [[(model, 1)] for model, count in pool.counts().items() for _ in range(count)]
        sim.reset()
        seconds, cpu = await replay(sim.base_url, pool, plans, args.concurrency, "aiohttp")
        replayed = sim.stats()
        answered = replayed["completed"]
        out["aiohttp"] = {"per_s": answered / seconds, "cpu_ms_per_call": 1000 * cpu / max(1, answered),
                          "seconds": seconds, "calls": answered, "peak_in_flight": replayed["peak"]}
        print(_line("aiohttp", answered, seconds, answered, f", CPU {1000 * cpu / max(1, answered):.2f} ms/call, "
                                                            f"peak {replayed['peak']} in flight"), flush=True)

        if peer is None:
            out["distilabel"] = {"per_s": None, "skipped": why}
            print(f"distilabel  skipped: {why}")
        else:
            try:
                p_seconds, p_done, note = run_distilabel(peer, seeds, sim, args.concurrency)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                out["distilabel"] = {"per_s": None, "skipped": f"failed: {str(exc)[-300:]}"}
                print(f"distilabel  failed: {exc}")
            else:
                p_stats = sim.stats()
                p_calls = p_stats["requests"]
                out["distilabel"] = {"per_s": p_done / p_seconds, "seconds": p_seconds, "done": p_done,
                                     "calls": p_calls, "version": why, "peak_in_flight": p_stats["peak"]}
                print(_line("distilabel", p_done, p_seconds, p_calls,
                            f", {note}; {why}; pipeline.run wall, excludes interpreter start; "
                            f"peak {p_stats['peak']} in flight"), flush=True)

        if args.breakdown:
            out["breakdown"] = await breakdown(graph, seeds, work, sim, dialogues)

    ratios = {"interleaf / aiohttp": out["interleaf"]["per_s"] / out["aiohttp"]["per_s"]}
    if out["distilabel"]["per_s"]:
        ratios["interleaf / distilabel"] = out["interleaf"]["per_s"] / out["distilabel"]["per_s"]
    out["ratios"] = ratios
    for label, value in ratios.items():
        print(f"{label}: {value:.2f}")
    return out


async def breakdown(graph: Path, seeds: Path, work: Path, sim: SimProcess, dialogues: int) -> dict[str, Any]:
    """interleaf in this process with :class:`cpuparts.CpuParts` on: its CPU by part, per call."""
    from cpuparts import CpuParts

    # The measured run may have been on worker processes: warm this one up on its own first.
    await warm_graph(graph, work / "breakdown-warm", concurrency=dialogues, workers=1, seeds=2)
    sim.reset()
    cpu0 = cpu_seconds()
    with CpuParts() as parts:
        run = await run_graph(graph, seeds, work / "breakdown", concurrency=dialogues, workers=1)
    process_cpu = cpu_seconds() - cpu0
    calls = sim.stats()["requests"]
    rows = parts.table(calls)
    print(f"\nCPU by part (in this process, workers=1, {calls} calls, {run.seconds:.1f} s, {parts.samples} samples; "
          f"process CPU {1000 * process_cpu / max(1, calls):.2f} ms/call, of which charged "
          f"{1000 * parts.total_s / max(1, calls):.2f}, sampler {1000 * parts.sampler_cpu_s / max(1, calls):.2f}):")
    top = parts.top_functions()
    for row in rows:
        where = ", ".join(f"{w} {s:.2f} s" for w, s in top.get(str(row["part"]), []))
        print(f"  {row['part']:<14} {row['ms_per_call']:6.2f} ms/call  {100 * float(row['share']):5.1f} %   {where}")
    return {"calls": calls, "seconds": run.seconds, "process_cpu_ms_per_call": 1000 * process_cpu / max(1, calls),
            "charged_ms_per_call": 1000 * parts.total_s / max(1, calls),
            "sampler_ms_per_call": 1000 * parts.sampler_cpu_s / max(1, calls), "samples": parts.samples,
            "parts": rows, "top": top,
            "method": "CPU-weighted stack sampling in-process (bench/cpuparts.py), workers=1"}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None, help="prompts (default 1000, quick 64)")
    parser.add_argument("--latency", default=None,
                        help="simulated seconds a call; a comma list sweeps (default 1.0, quick 0.05)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight (interleaf: the model's max_concurrency; default 64)")
    parser.add_argument("--dialogues", type=int, default=None,
                        help=f"interleaf's dialogues open at once (default {DIALOGUES_PER_SLOT}x --concurrency)")
    parser.add_argument("--workers", type=int, default=None,
                        help="interleaf processes (default: as `interleaf run` picks; 1 = in this process)")
    parser.add_argument("--peer", action="store_true", help="also run distilabel (installs it into a /tmp venv)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also charge an in-process run's CPU to its parts (bench/cpuparts.py)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (schema in the docstring)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.dialogues is None:
        args.dialogues = max(args.concurrency, round(DIALOGUES_PER_SLOT * args.concurrency))
    elif args.dialogues < 1:
        parser.error("--dialogues must be at least 1")
    n = args.seeds or (64 if args.quick else 1000)
    latencies = [float(x) for x in (args.latency or ("0.05" if args.quick else "1.0")).split(",") if x.strip()]
    print(f"machine: {machine()}", flush=True)
    peer: Path | None = None
    why = "not requested (pass --peer)"
    if args.peer:
        peer, why = ensure_peer()
    started = time.time()
    runs = [await bench_latency(latency, n, args, peer, why) for latency in latencies]
    print(f"\nload after: {load_average()}")
    result = {**runs[0], "machine": machine(), "runs": runs, "wall_s": time.time() - started}
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
