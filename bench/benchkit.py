"""What every benchmark script here shares: seeds files, model endpoints, CPU clocks, a machine line."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """The 1, 5 and 15-minute load averages, as ``/proc/loadavg`` gives them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine(with_load: bool = True) -> str:
    """CPU model, cores, RAM, Python (and the load average now): one line for the results."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    line = f"{model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, Python {platform.python_version()}"
    return f"{line}, load {load_average()}" if with_load else line


def git_revision() -> str:
    """The checkout's short commit id, with " + changes" when tracked files differ from it."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":!bench/RESULTS.md"],
                               cwd=BENCH_DIR, capture_output=True, text=True, timeout=10)
        revision = out.stdout.strip() or "unknown"
        return revision + (" + changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = ("interleaf", "litellm", "langgraph", "prefect", "pydantic",
                                               "aiohttp")) -> dict[str, str]:
    """Installed versions of ``names`` in this interpreter ("-" when not installed)."""
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found


# -- running a graph the way ``interleaf run`` does -------------------------------------------
@dataclass
class GraphRun:
    """One measured batch of a graph: wall, outcome and CPU of every process that ran it."""

    seconds: float
    done: int
    failed: int
    processes: int
    cpu_parent_s: float
    cpu_workers_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        """The run's CPU: this process plus the worker processes (the simulator is another process)."""
        return self.cpu_parent_s + self.cpu_workers_s


async def run_graph(graph: Path, seeds: Path, out: Path, *, concurrency: int, workers: int | None) -> GraphRun:
    """Run every seed of ``seeds`` through ``graph`` into a fresh run at ``out``.

    ``workers`` is ``--workers`` of ``interleaf run``: None lets
    :func:`interleaf.processes.choose_processes` pick (the cores, at most one per 32 seeds),
    1 runs in this process, N > 1 runs :func:`interleaf.processes.arun_in_processes`. The
    workers' CPU comes from their own report (``stats["worker_cpu_s"]``) because they are
    children of the fork server, not of this process, so this process's rusage never sees them.
    """
    from interleaf.processes import arun_in_processes, choose_processes
    from interleaf.runner import open_run
    from interleaf.seeds import read_seeds

    with seeds.open(encoding="utf-8") as fh:
        pending = sum(1 for line in fh if line.strip())
    run = open_run(graph, out, seeds_path=seeds, concurrency=concurrency)
    try:
        processes = choose_processes(run, workers, pending)
        stats: dict[str, float] = {}
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if processes > 1:
            totals = await arun_in_processes(run, read_seeds(seeds), processes=processes, concurrency=concurrency,
                                             stats=stats)
        else:
            totals = await run.arun_seeds(read_seeds(seeds), concurrency=concurrency)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    finally:
        await run.aclose()
        run.release()
    return GraphRun(seconds, totals.done, totals.failed, processes, cpu, stats.get("worker_cpu_s", 0.0))


async def warm_graph(graph: Path, work: Path, *, concurrency: int, workers: int | None, seeds: int) -> GraphRun:
    """An unmeasured batch first: imports, litellm's first-call setup, the fork server's start.

    Runs one seed a process on as many processes as the measured batch of ``seeds`` seeds will
    get, so the fork server (which preloads litellm) is up before the clock starts. The returned
    run's ``cpu_workers_s / processes`` is about what one worker's start costs (attach, imports
    the fork server did not preload, first-call setup, one call), paid again by every batch.
    """
    from interleaf.processes import warm_up

    processes = workers if workers is not None else _default_processes(seeds)
    if processes > 1:
        warm_up()
    warm = write_seeds(work / "warm.jsonl", max(2, processes))
    return await run_graph(graph, warm, work / "warm", concurrency=concurrency, workers=processes)


def _default_processes(seeds: int) -> int:
    from interleaf.processes import MIN_SEEDS_PER_PROCESS

    # choose_processes' rule for a graph without image pipelines (it needs an open run to ask).
    return max(1, min(os.cpu_count() or 1, seeds // MIN_SEEDS_PER_PROCESS))


# -- the plain aiohttp loop (the limit a client library can reach) ------------------------------
class BodyPool:
    """The engine's recorded request bodies per model, handed out in order."""

    def __init__(self, bodies: list[dict[str, Any]]):
        self.pools: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for body in bodies:
            self.pools[body["model"]].append(body)
        self.cursor: Counter[str] = Counter()

    def counts(self) -> dict[str, int]:
        return {m: len(b) for m, b in self.pools.items()}

    def next(self, model: str) -> dict[str, Any]:
        pool = self.pools[model]
        body = pool[self.cursor[model] % len(pool)]
        self.cursor[model] += 1
        return body


async def replay(base_url: str, pool: BodyPool, plans: list[list[tuple[str, int]]], concurrency: int,
                 transport: str = "aiohttp") -> tuple[float, float]:
    """Send the pool's bodies as ``plans`` say, ``concurrency`` plans in flight: (seconds, CPU seconds).

    A plan is one dialogue's waves, ``(model, parallel calls)`` in order (one wave of one call
    for a single-step seed). ``transport`` is ``aiohttp`` or ``httpx``, one shared client either
    way; the CPU is this process's, since the loop runs here and the simulator elsewhere.
    """
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer sk-bench-local"}

    async def drive(call: Callable[[str], Awaitable[str]]) -> tuple[float, float]:
        async def dialogue(plan: list[tuple[str, int]]) -> None:
            async with gate:
                for model, width in plan:
                    await asyncio.gather(*(call(model) for _ in range(width)))

        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(dialogue(plan) for plan in plans))
        return time.perf_counter() - t0, cpu_seconds() - cpu0

    if transport == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=4 * concurrency, max_keepalive_connections=4 * concurrency)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120, headers=headers) as client:

            async def call_httpx(model: str) -> str:
                response = await client.post("/chat/completions", json=pool.next(model))
                response.raise_for_status()
                return str(response.json()["choices"][0]["message"]["content"])

            return await drive(call_httpx)
    import aiohttp

    connector = aiohttp.TCPConnector(limit=4 * concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        url = base_url + "/chat/completions"

        async def call_aiohttp(model: str) -> str:
            async with session.post(url, json=pool.next(model)) as response:
                response.raise_for_status()
                data = await response.json()
            return str(data["choices"][0]["message"]["content"])

        return await drive(call_aiohttp)


# -- memory of a process tree -------------------------------------------------------------------
class TreeMemory:
    """Samples the summed memory of a process and all its descendants (a fork server's workers
    are not children ``os.wait4`` reports on), every ``interval`` seconds, in a thread.

    ``peak_pss_mib`` is the peak of the summed proportional set size (shared pages split between
    the processes sharing them: forked workers share the fork server's preloaded litellm), the
    fair "memory this run uses"; ``peak_rss_mib`` sums RSS (counts shared pages once a process).
    """

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.peak_pss_mib = 0.0
        self.peak_rss_mib = 0.0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-memory", daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        pids = descendants(self.pid)
        pss = rss = 0.0
        for pid in pids:
            pss += _kib_field(f"/proc/{pid}/smaps_rollup", "Pss:")
            rss += _kib_field(f"/proc/{pid}/status", "VmRSS:")
        self.peak_pss_mib = max(self.peak_pss_mib, pss / 1024)
        self.peak_rss_mib = max(self.peak_rss_mib, rss / 1024)
        self.peak_processes = max(self.peak_processes, len(pids))


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it (from the parent ids in ``/proc/*/stat``)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing bracket.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _kib_field(path: str, name: str) -> float:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(name):
                    return float(line.split()[1])
    except OSError:
        pass  # the process ended between the listing and the read
    return 0.0


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    """Write a script's figures for ``bench/run_all.py`` and other tools (no-op without a path)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
