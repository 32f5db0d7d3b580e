"""Engine overhead: the run engine vs hand-written asyncio loops (aiohttp, httpx), same calls, same run.

    python bench/engine_bench.py                    # N=500, latency 1 s, concurrency 64
    python bench/engine_bench.py --quick            # N=16, latency 0.05 s (smoke run)
    python bench/engine_bench.py --seeds 200 --phases text,plain
    python bench/engine_bench.py --phases text,aiohttp --workers 1 --json /tmp/engine.json

Phases, back to back in one process and one event loop (the simulator runs in a child
process so its CPU is not counted):

``text``   the engine on ``graphs/engine-2turn-text.yaml`` (2 turns, k=2, no image tools):
           pure engine overhead, on ``--workers`` processes (default: what ``interleaf run``
           picks, via ``interleaf.processes.choose_processes``; 1 = this process). The
           simulator records every request body.
``plain``  a hand-written loop: per dialogue, the same waves of calls the graph makes
           (expand; k answers; k judges; follow-up; k answers; k judges; global judges),
           replaying the bodies the engine sent, through one ``httpx.AsyncClient``, with the
           same number of dialogues in flight.
``aiohttp`` the same loop through one ``aiohttp.ClientSession`` (the limit, and the baseline of
           the goal: httpx's pool costs more CPU per call as requests queue, see STACK-NOTES).
``images`` the engine on ``graphs/engine-2turn.yaml`` (the same graph with generate/edit image
           tools on tiny random-weight pipelines, 64x64, 2 steps). Image CPU and wall time are
           measured around each pipeline call and reported apart from the engine's own.

CPU per call is the user+system CPU during the phase of this process and of the worker
processes (their own report) divided by the model calls the simulator answered (image CPU
excluded, litellm included). torch runs on one thread so the image CPU is the
pipeline-calling thread's own clock. The images phase runs in this process (graphs with
image pipelines get one process unless told otherwise, and the image clock is patched in
here). ``--json FILE`` writes the figures: ``{"engine": {"per_s", "cpu_ms_per_call", ...},
"aiohttp": {...}, "httpx": {...}, "images": {...}, "ratios": {...}}`` (phases run only).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import (
    GRAPHS,
    BodyPool,
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


@dataclass
class Phase:
    label: str
    dialogues: int
    seconds: float
    cpu_s: float
    calls: int
    peak_in_flight: int
    by_model: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    image_wall_s: float = 0.0
    image_cpu_s: float = 0.0
    images: int = 0
    processes: int = 1

    @property
    def per_second(self) -> float:
        return self.dialogues / self.seconds

    @property
    def engine_cpu_ms_per_call(self) -> float:
        return 1000 * (self.cpu_s - self.image_cpu_s) / max(1, self.calls)

    def figures(self) -> dict[str, Any]:
        """What ``--json`` writes for this phase."""
        out = {"per_s": self.per_second, "cpu_ms_per_call": self.engine_cpu_ms_per_call, "seconds": self.seconds,
               "dialogues": self.dialogues, "calls": self.calls, "failed": self.failed, "processes": self.processes,
               "by_model": self.by_model}
        if self.images:
            out.update(images=self.images, image_wall_s=self.image_wall_s, image_cpu_s=self.image_cpu_s)
        return out

    def line(self) -> str:
        text = (f"{self.label:<22} {self.dialogues:>5} dialogues {self.seconds:8.2f} s  "
                f"{self.per_second:7.2f} dialogues/s  {self.calls:>6} calls  {self.calls / self.seconds:7.1f} calls/s  "
                f"peak {self.peak_in_flight:>4} in flight  "
                f"CPU {self.cpu_s:6.1f} s = {self.engine_cpu_ms_per_call:5.2f} ms/call")
        if self.images:
            text += (f" (excl. images)\n{'':<22} {self.images} images, pipeline wall {self.image_wall_s:.1f} s, "
                     f"image CPU {self.image_cpu_s:.1f} s")
        if self.processes > 1:
            text += f"  ({self.processes} processes)"
        if self.failed:
            text += f"  ({self.failed} dialogues failed)"
        return text


class ImageClock:
    """Seconds during which at least one diffusers pipeline call ran (the union, since calls on
    different pipelines overlap), their summed thread CPU, and the images made; patched in for
    the bench only."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.images = 0
        self._active = 0
        self._busy_since = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        import interleaf.imaging.execution as execution

        inner = execution._call

        def timed(loaded: Any, jobs: list[Any], images: list[Any]) -> Any:
            with self._lock:
                if self._active == 0:
                    self._busy_since = time.perf_counter()
                self._active += 1
            c0 = time.thread_time()
            try:
                return inner(loaded, jobs, images)
            finally:
                with self._lock:
                    self._active -= 1
                    if self._active == 0:
                        self.wall += time.perf_counter() - self._busy_since
                    self.cpu += time.thread_time() - c0
                    self.images += len(jobs)

        execution._call = timed


async def run_engine(label: str, graph: Path, seeds: Path, work: Path, sim: SimProcess, concurrency: int,
                     clock: ImageClock | None = None, workers: int | None = 1) -> Phase:
    """One engine phase through ``benchkit.run_graph`` (``workers`` as ``interleaf run --workers``)."""
    sim.reset()
    before = (clock.wall, clock.cpu, clock.images) if clock else (0.0, 0.0, 0)
    ran = await run_graph(graph, seeds, work / label, concurrency=concurrency, workers=workers)
    stats = sim.stats()
    phase = Phase(label, ran.done + ran.failed, ran.seconds, ran.cpu_s, stats["requests"], stats["peak"],
                  stats["by_model"], ran.failed, processes=ran.processes)
    if clock:
        phase.image_wall_s = clock.wall - before[0]
        phase.image_cpu_s = clock.cpu - before[1]
        phase.images = clock.images - before[2]
    return phase


def dialogue_waves(by_model: dict[str, int], dialogues: int) -> list[tuple[str, int]]:
    """The calls one dialogue of the 2-turn graph makes, as (model, parallel calls) waves in order.

    Derived from the per-model totals of the engine's run (the last wave, the global judge,
    rounded; :func:`plan_dialogues` hands out the remainder so the totals match exactly).
    """
    per = {m: n / dialogues for m, n in by_model.items()}
    turns = round(per.get("bench-user", 0)) + 1
    k = round(per.get("bench-assistant", 0) / turns)
    rate = round(per.get("bench-judge", 0) - k * turns)
    waves: list[tuple[str, int]] = [("bench-expand", round(per.get("bench-expand", 0)))]
    for turn in range(turns):
        waves += [("bench-assistant", k), ("bench-judge", k)]
        if turn < turns - 1:
            waves.append(("bench-user", 1))
    waves.append(("bench-judge", rate))
    return [(m, n) for m, n in waves if n > 0]


def plan_dialogues(by_model: dict[str, int], dialogues: int) -> list[list[tuple[str, int]]]:
    """One wave list per dialogue; the last wave of some is one call wider or narrower so that
    every model gets exactly as many calls as in the engine's run."""
    waves = dialogue_waves(by_model, dialogues)
    plans = [list(waves) for _ in range(dialogues)]
    planned: Counter[str] = Counter()
    for model, width in waves:
        planned[model] += width * dialogues
    for model, total in by_model.items():
        diff = total - planned[model]
        step = 1 if diff > 0 else -1
        for i in range(abs(diff)):
            plan = plans[i % dialogues]
            last = max(j for j, (m, _) in enumerate(plan) if m == model) if any(m == model for m, _ in plan) else None
            if last is None:
                plan.append((model, 1))
            else:
                plan[last] = (model, plan[last][1] + step)
    return [[(m, n) for m, n in plan if n > 0] for plan in plans]


async def run_plain(sim: SimProcess, bodies: list[dict[str, Any]], dialogues: int, concurrency: int,
                    transport: str) -> Phase:
    """The hand-written loop (``benchkit.replay``): ``transport`` is ``httpx`` or ``aiohttp``."""
    pool = BodyPool(bodies)
    plans = plan_dialogues(pool.counts(), dialogues)
    sim.reset()
    seconds, cpu = await replay(sim.base_url, pool, plans, concurrency, transport)
    stats = sim.stats()
    return Phase(f"plain asyncio+{transport}", dialogues, seconds, cpu, stats["requests"], stats["peak"],
                 stats["by_model"])


def ideal_seconds(phase: Phase, latency: float, concurrency: int, waves: int) -> tuple[float, float]:
    """(issue's bound: calls x latency / concurrency + image time, wave bound: critical path per dialogue)."""
    calls_bound = phase.calls * latency / concurrency + phase.image_wall_s
    wave_bound = max(1.0, phase.dialogues / concurrency) * waves * latency + phase.image_wall_s
    return calls_bound, wave_bound


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None, help="dialogues per phase (default 500, quick 16)")
    parser.add_argument("--image-seeds", type=int, default=None,
                        help="dialogues in the images phase (default: --seeds, at most 100)")
    parser.add_argument("--latency", type=float, default=None, help="simulated seconds a call (default 1.0)")
    parser.add_argument("--concurrency", type=int, default=64, help="dialogues in flight")
    parser.add_argument("--phases", default="text,plain,aiohttp,images",
                        help="comma list of text, plain (httpx), aiohttp, images")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--workers", type=int, default=None,
                        help="engine processes for the text phase (default: as `interleaf run` picks; 1 = here)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write cProfile stats of the text phase here and print the top functions "
                             "(runs the text phase in this process: cProfile sees no other process)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (see the docstring)")
    args = parser.parse_args(argv)
    seeds_n = args.seeds or (16 if args.quick else 500)
    image_n = args.image_seeds or min(seeds_n, 100)
    latency = args.latency if args.latency is not None else (0.05 if args.quick else 1.0)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if {"plain", "aiohttp"} & set(phases) and "text" not in phases:
        parser.error("the plain loop replays the calls of the text phase: add 'text' to --phases")

    import torch

    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    print(f"workload: {seeds_n} dialogues (images phase {image_n}), latency {latency} s, "
          f"concurrency {args.concurrency} dialogues")
    results: dict[str, Phase] = {}
    with tempfile.TemporaryDirectory(prefix="interleaf-engine-bench-") as tmp, SimProcess(latency, record=True) as sim:
        work = Path(tmp)
        point_models_at(sim.base_url)
        seeds = write_seeds(work / "seeds.jsonl", seeds_n)
        clock = ImageClock()
        if "images" in phases:
            import os

            from interleaf.testing.tiny_pipelines import ensure_tiny_pipeline

            models = Path(tempfile.gettempdir()) / "interleaf-bench-models"
            os.environ["INTERLEAF_T2I_MODEL"] = str(ensure_tiny_pipeline(models, "text2img"))
            os.environ["INTERLEAF_EDIT_MODEL"] = str(ensure_tiny_pipeline(models, "instruct_pix2pix"))
            clock.install()
        # Warm-up: imports, litellm's first-call setup, the fork server, pipeline loading; not measured.
        workers = 1 if args.profile else args.workers
        if "images" in phases:
            warm_seeds = write_seeds(work / "warm-images.jsonl", 2)
            await run_engine("warm-up", GRAPHS / "engine-2turn.yaml", warm_seeds, work, sim, args.concurrency, clock)
        if "text" in phases:
            await warm_graph(GRAPHS / "engine-2turn-text.yaml", work, concurrency=args.concurrency, workers=workers,
                             seeds=seeds_n)
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            results["text"] = await run_engine("engine (text)", GRAPHS / "engine-2turn-text.yaml", seeds, work, sim,
                                               args.concurrency, workers=workers)
            if profiler:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            print(results["text"].line(), flush=True)
            bodies = sim.bodies()
        if "plain" in phases:
            results["plain"] = await run_plain(sim, bodies, seeds_n, args.concurrency, "httpx")
            print(results["plain"].line(), flush=True)
        if "aiohttp" in phases:
            results["aiohttp"] = await run_plain(sim, bodies, seeds_n, args.concurrency, "aiohttp")
            print(results["aiohttp"].line(), flush=True)
        if "images" in phases:
            image_seeds = write_seeds(work / "image-seeds.jsonl", image_n)
            results["images"] = await run_engine("engine (images)", GRAPHS / "engine-2turn.yaml", image_seeds, work,
                                                 sim, args.concurrency, clock, workers=1)
            print(results["images"].line(), flush=True)

    print("\n== figures")
    text = results.get("text")
    if text:
        waves = dialogue_waves(text.by_model, text.dialogues)
        calls_bound, wave_bound = ideal_seconds(text, latency, args.concurrency, len(waves))
        print(f"calls per dialogue: {text.calls / text.dialogues:.1f} in {len(waves)} waves {waves}")
        print(f"engine (text): {text.per_second:.2f} dialogues/s; ideal bound ratio {calls_bound / text.seconds:.2f} "
              f"(calls x latency / concurrency), {wave_bound / text.seconds:.2f} (waves x latency x N / concurrency)")
        print(f"engine CPU per call: {text.engine_cpu_ms_per_call:.2f} ms ({text.processes} process(es), "
              f"litellm included)")
    plain = results.get("plain")
    if text and plain:
        ratio = text.per_second / plain.per_second
        same = "same" if plain.by_model == text.by_model else f"DIFFERENT: {plain.by_model} vs {text.by_model}"
        print(f"plain loop: {plain.per_second:.2f} dialogues/s, CPU {plain.engine_cpu_ms_per_call:.2f} ms/call "
              f"({same} calls per model)")
        print(f"engine / plain httpx loop: {ratio:.2f} (httpx's pool is a weak baseline, see STACK-NOTES)")
    fast = results.get("aiohttp")
    if text and fast:
        ratio = text.per_second / fast.per_second
        same = "same" if fast.by_model == text.by_model else f"DIFFERENT: {fast.by_model} vs {text.by_model}"
        verdict = "met" if ratio >= 0.9 else "missed"
        print(f"plain aiohttp loop: {fast.per_second:.2f} dialogues/s, CPU {fast.engine_cpu_ms_per_call:.2f} ms/call "
              f"({same} calls per model)")
        print(f"engine / plain aiohttp loop: {ratio:.2f} (goal >= 0.9: {verdict})")
    images = results.get("images")
    if images:
        waves = dialogue_waves(images.by_model, images.dialogues)
        calls_bound, wave_bound = ideal_seconds(images, latency, args.concurrency, len(waves))
        print(f"engine (images): {images.per_second:.2f} dialogues/s; {images.images} images "
              f"({images.image_wall_s:.1f} s pipeline wall); ideal bound ratio {calls_bound / images.seconds:.2f} "
              f"(calls x latency / concurrency + image time), "
              f"{wave_bound / images.seconds:.2f} (wave bound + image time)")
        print(f"engine CPU per call (images phase, image CPU excluded): {images.engine_cpu_ms_per_call:.2f} ms")
    if results:
        print(f"load after: {load_average()}")
    figures: dict[str, Any] = {"seeds": seeds_n, "image_seeds": image_n, "latency": latency,
                               "concurrency": args.concurrency, "machine": machine()}
    names = {"text": "engine", "plain": "httpx", "aiohttp": "aiohttp", "images": "images"}
    for key, phase in results.items():
        figures[names[key]] = phase.figures()
    if text:
        figures["ratios"] = {f"engine / {names[k]}": text.per_second / results[k].per_second
                             for k in ("plain", "aiohttp") if k in results}
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
