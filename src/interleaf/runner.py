"""The run engine: one compiled graph over a stream of seeds, resumable at any point.

Both ``interleaf run`` and the Prefect flows come through here. A run lives in one store
root (see ``docs/architecture.md``, "Run layout"). Each seed is one LangGraph thread
(``"<run_id>:<seed id>"``) checkpointed after every step with ``durability="sync"``, so
after a crash or ``kill -9`` running the same command again skips finished dialogues
(``status/<seed>.json`` says done), continues half-finished ones from their last
checkpoint, and starts the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interleaf.errors import InterleafError
from interleaf.state import DialogueState, Seed
from interleaf.storage.manifest import (
    GRAPH_KEY,
    DialogueStatus,
    Invocation,
    RunManifest,
    count_statuses,
    dialogue_key,
    graph_fingerprint,
    new_run_id,
    package_version,
    status_key,
)
from interleaf.storage.store import ObjectStore

if TYPE_CHECKING:
    from interleaf.graphs.compiler import CompiledGraph
    from interleaf.graphs.spec import GraphSpec
    from interleaf.graphs.yamlsource import YamlDocument

log = logging.getLogger(__name__)

RUN_POINTER = "run.json"
#: Prefixes a forced new run clears (blobs and caches are content-addressed and stay).
_RUN_PREFIXES = ("status", "dialogues", "checkpoints")

OnDone = Callable[[str, str], Any]


@dataclass
class RunOptions:
    """What ``interleaf run`` was asked to do."""

    graph: str
    seeds: Path
    out: Path
    store: str | None = None
    concurrency: int | None = None
    limit: int | None = None
    force_new_run: bool = False
    orchestrate: bool = False
    shard_size: int = 100
    progress: bool = True


@dataclass
class RunSummary:
    """Totals of one invocation (or several, merged). Calls and tokens come from provenance."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0
    failed_reasons: dict[str, int] = field(default_factory=dict)
    pruned_reasons: dict[str, int] = field(default_factory=dict)

    def merge(self, other: RunSummary) -> RunSummary:
        """A new summary adding ``other`` to this one (seconds add up too)."""
        cost = None if self.cost is None and other.cost is None else (self.cost or 0.0) + (other.cost or 0.0)
        return RunSummary(
            done=self.done + other.done,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=cost,
            seconds=self.seconds + other.seconds,
            failed_reasons=dict(Counter(self.failed_reasons) + Counter(other.failed_reasons)),
            pruned_reasons=dict(Counter(self.pruned_reasons) + Counter(other.pruned_reasons)),
        )

    def describe(self) -> str:
        """One human-readable paragraph."""
        parts = [f"{self.done} done, {self.failed} failed, {self.skipped} skipped"]
        parts.append(f"{self.calls} model calls, {self.prompt_tokens}+{self.completion_tokens} tokens")
        if self.cost is not None:
            parts.append(f"cost ${self.cost:.4f}")
        parts.append(f"{self.seconds:.1f}s")
        text = "; ".join(parts)
        if self.failed_reasons:
            text += "\nfailed: " + ", ".join(f"{r} x{n}" for r, n in sorted(self.failed_reasons.items()))
        if self.pruned_reasons:
            text += "\npruned: " + ", ".join(f"{r} x{n}" for r, n in sorted(self.pruned_reasons.items()))
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NODE_ID = re.compile(r"\bv\d+(?:\.\d+)*\b")


def reason_category(reason: str) -> str:
    """A reason without its specifics (node ids, scores), so the run summary can count alike ones."""
    head = reason.split(":", 1)[0]
    return _NODE_ID.sub("<node>", head).strip() or "unspecified"


def _dialogue_totals(state: DialogueState) -> RunSummary:
    out = RunSummary()
    pruned: Counter[str] = Counter()
    costs: list[float] = []
    for node in state.nodes.values():
        if node.status == "pruned":
            pruned[reason_category(node.reason or "")] += 1
        for prov in node.provenance:
            for call in prov.calls:
                if call.cached:
                    continue
                out.calls += 1
                out.prompt_tokens += call.prompt_tokens or 0
                out.completion_tokens += call.completion_tokens or 0
                if call.cost is not None:
                    costs.append(call.cost)
    out.cost = sum(costs) if costs else None
    out.pruned_reasons = dict(pruned)
    return out


def _resolve_root(spec: GraphSpec, out: Path | None, store: str | None) -> str:
    if store:
        return store
    if out is not None:
        pointer = Path(out) / RUN_POINTER
        if pointer.is_file():
            try:
                recorded = json.loads(pointer.read_text(encoding="utf-8")).get("store")
            except (OSError, ValueError) as exc:
                raise InterleafError(f"{pointer}: unreadable run pointer ({exc}); delete it or pass --store") from None
            if isinstance(recorded, str) and recorded:
                return recorded
    if spec.defaults.store:
        return spec.defaults.store
    if out is None:
        raise InterleafError("no place for the run: give --out DIR or --store URI")
    return str(Path(out).resolve())


class Run:
    """An opened run: compiled graph, store, manifest and checkpointer. Make one with :func:`open_run`."""

    def __init__(
        self,
        *,
        compiled: CompiledGraph,
        store: ObjectStore,
        manifest: RunManifest,
        out: Path | None,
        concurrency: int | None,
        checkpoints: str = "store",
    ):
        self.compiled = compiled
        self.spec: GraphSpec = compiled.spec
        self.doc: YamlDocument = compiled.doc
        self.runtime = compiled.runtime
        self.store = store
        self.manifest = manifest
        self.out = out
        self.default_concurrency = concurrency or self.spec.defaults.concurrency
        self.checkpoints = checkpoints
        self._app: Any = None
        self._saver: Any = None
        self._saver_cm: Any = None
        self._lock: asyncio.Lock | None = None

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def graph_hash(self) -> str:
        return self.manifest.graph_hash

    def thread_id(self, seed_id: str) -> str:
        return f"{self.run_id}:{seed_id}"

    async def _ensure_app(self) -> Any:
        if self._app is not None:
            return self._app
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._app is None:
                if self.checkpoints == "sqlite":
                    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                    local = self.store.local_path("checkpoints.sqlite")
                    if local is None:
                        raise InterleafError("SQLite checkpoints need a local store (file://); use the object store")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    self._saver_cm = AsyncSqliteSaver.from_conn_string(str(local))
                    self._saver = await self._saver_cm.__aenter__()
                else:
                    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

                    from interleaf.state import CHECKPOINT_TYPES
                    from interleaf.storage.checkpoint import ObjectStoreSaver

                    # Strict: a checkpoint can only rebuild our own state classes, never arbitrary types.
                    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
                    self._saver = ObjectStoreSaver(self.store, serde=serde)
                self._app = self.compiled.build(checkpointer=self._saver)
        return self._app

    async def arun_seeds(
        self,
        seeds: Iterable[Seed] | AsyncIterable[Seed],
        *,
        concurrency: int | None = None,
        on_done: OnDone | None = None,
    ) -> RunSummary:
        """Run every seed (at most ``concurrency`` in flight); ``on_done(seed_id, outcome)`` after each.

        ``outcome`` is ``"done"``, ``"failed"`` or ``"skipped"``. A dialogue whose graph raises is
        recorded failed with the reason and the batch goes on; a store that stays unreachable
        (past its retry budget) stops the batch with the store's error.
        """
        app = await self._ensure_app()
        width = max(1, concurrency or self.default_concurrency)
        started = time.perf_counter()
        # Merged as dialogues finish, so memory stays flat however many seeds stream through.
        summary = RunSummary()
        gate = asyncio.Semaphore(width)
        tasks: set[asyncio.Task[None]] = set()
        seen: set[str] = set()

        async def one(seed: Seed) -> None:
            nonlocal summary
            try:
                part = await self._run_dialogue(app, seed)
                summary = summary.merge(part)
                if on_done is not None:
                    outcome = "done" if part.done else "failed" if part.failed else "skipped"
                    result = on_done(seed.id, outcome)
                    if asyncio.iscoroutine(result):
                        await result
            finally:
                gate.release()

        try:
            async for seed in _aiter(seeds):
                if seed.id in seen:
                    log.warning("seed %r given twice in one batch; running it once", seed.id)
                    continue
                seen.add(seed.id)
                await gate.acquire()
                task = asyncio.create_task(one(seed))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                # Surface a fatal error (store gone for good) without waiting for the whole stream.
                for t in [t for t in tasks if t.done() and not t.cancelled() and t.exception()]:
                    raise t.exception()  # type: ignore[misc]
            if tasks:
                await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        summary.seconds = time.perf_counter() - started
        return summary

    async def _run_dialogue(self, app: Any, seed: Seed) -> RunSummary:
        previous = await self.store.aget_json_or_none(status_key(seed.id))
        if isinstance(previous, dict) and previous.get("status") == "done":
            return RunSummary(skipped=1)
        config: dict[str, Any] = {
            "configurable": {"thread_id": self.thread_id(seed.id)},
            "recursion_limit": self.spec.defaults.recursion_limit,
        }
        t0 = time.perf_counter()
        try:
            existing = await self._saver.aget_tuple(config)
            # With a checkpoint, resume from it: LangGraph applies the writes of tasks that
            # finished after it (those are not re-run) and runs what is left, if anything.
            # (A snapshot's empty ``next`` does not mean finished: it omits tasks with writes.)
            graph_input = {"seed": seed} if existing is None else None
            result = await app.ainvoke(graph_input, config, durability="sync")
            state = result if isinstance(result, DialogueState) else DialogueState.model_validate(result)
        except Exception as exc:
            if _is_store_outage(exc):
                raise
            reason = type(exc).__name__
            log.warning("dialogue %r failed: %s: %s", seed.id, reason, exc)
            await self._write_status(DialogueStatus(
                seed_id=seed.id, status="failed", reason=reason, error=_short(f"{reason}: {exc}"),
                seconds=round(time.perf_counter() - t0, 3), run_id=self.run_id,
            ))
            return RunSummary(failed=1, failed_reasons={reason: 1})
        if state.status == "running":
            state = state.model_copy(update={"status": "done"})
        totals = _dialogue_totals(state)
        await self.store.aput_json(dialogue_key(seed.id), state.model_dump(mode="json"))
        ok = state.status == "done"
        await self._write_status(DialogueStatus(
            seed_id=seed.id, status="done" if ok else "failed", reason=None if ok else "dialogue_failed",
            error=None if ok else _short(state.error or "the graph marked the dialogue failed"),
            calls=totals.calls, prompt_tokens=totals.prompt_tokens, completion_tokens=totals.completion_tokens,
            cost=totals.cost, seconds=round(time.perf_counter() - t0, 3), run_id=self.run_id,
        ))
        if ok:
            totals.done = 1
        else:
            totals.failed = 1
            totals.failed_reasons = {"dialogue_failed": 1}
        return totals

    async def _write_status(self, status: DialogueStatus) -> None:
        await self.store.aput_json(status_key(status.seed_id), status.model_dump(mode="json"))

    def record_invocation(self, summary: RunSummary, *, started_at: float, seeds_hash: str | None = None) -> None:
        """Add an invocation to the manifest and refresh its done/failed counts (reads the status index)."""
        manifest = RunManifest.load(self.store) or self.manifest
        manifest.invocations.append(Invocation(
            started_at=started_at, finished_at=time.time(), seeds_hash=seeds_hash, summary=summary.to_dict(),
        ))
        counts = count_statuses(self.store)
        manifest.counts = {**manifest.counts, **counts, "finished": counts["done"] + counts["failed"]}
        manifest.save(self.store)
        self.manifest = manifest

    async def aclose(self) -> None:
        """Close model clients, tools and the checkpointer."""
        await self.runtime.aclose()
        if self._saver_cm is not None:
            await self._saver_cm.__aexit__(None, None, None)
            self._saver_cm = None
        elif self._saver is not None and hasattr(self._saver, "close"):
            self._saver.close()
        self._saver = None
        self._app = None


def check_model_env(spec: GraphSpec, doc: YamlDocument) -> None:
    """Refuse a run whose models reference an unset environment variable (no default), naming the
    field, before any dialogue starts: otherwise every call of that model would fail one by one."""
    from interleaf.graphs.spec import resolve_env

    for name, model in spec.models.items():
        for attr in ("model", "api_base", "api_key"):
            value = getattr(model, attr)
            if not value:
                continue
            try:
                resolve_env(value)
            except KeyError as exc:
                var = exc.args[0]
                raise doc.error(
                    f"environment variable {var!r} is not set; set it, or give a default: ${{{var}:-...}}",
                    ("models", name, attr),
                ) from None


def _short(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_store_outage(exc: BaseException) -> bool:
    """A store error that outlived its retries: the run cannot record anything, so it stops."""
    from interleaf.storage.store import StoreUnavailableError

    return isinstance(exc, StoreUnavailableError)


async def _aiter(seeds: Iterable[Seed] | AsyncIterable[Seed]) -> Any:
    if isinstance(seeds, AsyncIterable):
        async for seed in seeds:
            yield seed
    else:
        for seed in seeds:
            yield seed


def open_run(
    graph: str | Path,
    out: Path | None,
    store: str | None,
    *,
    seeds_path: Path | None = None,
    force_new_run: bool = False,
    concurrency: int | None = None,
    checkpoints: str = "store",
) -> Run:
    """Load and compile ``graph``, open the run's store, and write or check its manifest.

    The store root is ``store`` if given, else the one ``out/run.json`` points at, else the
    graph's ``defaults.store``, else ``out`` itself. An existing run of a different graph raises
    :class:`~interleaf.errors.RunMismatchError` unless ``force_new_run`` (which clears the old
    run's statuses, dialogues and checkpoints and starts a new run id). ``checkpoints`` is
    ``"store"`` (next to the data; works on S3) or ``"sqlite"`` (one-machine local runs).
    """
    from interleaf.graphs.compiler import compile_graph, load_graph
    from interleaf.runtime import Runtime

    if checkpoints not in ("store", "sqlite"):
        raise InterleafError(f"checkpoints must be 'store' or 'sqlite', not {checkpoints!r}")
    spec, doc = load_graph(graph)
    check_model_env(spec, doc)
    out_path = Path(out) if out is not None else None
    root = _resolve_root(spec, out_path, store)
    obj_store = ObjectStore(root)
    graph_hash = graph_fingerprint(spec)

    manifest = RunManifest.load(obj_store)
    discard_old = manifest is not None and force_new_run
    if manifest is not None and not force_new_run:
        manifest.check_graph(graph_hash, spec.name, obj_store.uri)

    run_id = manifest.run_id if manifest is not None and not discard_old else new_run_id()
    runtime = Runtime(spec, store=obj_store, run_id=run_id, spec_dir=Path(doc.path).parent)
    compiled = compile_graph(spec, doc, runtime)
    if discard_old:
        # Only after the new graph compiled: a typo must not cost the old run.
        for prefix in _RUN_PREFIXES:
            obj_store.delete_prefix(prefix)
        manifest = None

    if manifest is None:
        manifest = RunManifest(
            run_id=run_id, graph_name=spec.name, graph_hash=graph_hash, package_version=package_version(),
        )
    manifest.package_version = package_version()
    manifest.params = {
        "concurrency": concurrency or spec.defaults.concurrency,
        "recursion_limit": spec.defaults.recursion_limit,
        "run_seed": spec.defaults.run_seed,
        "checkpoints": checkpoints,
    }
    if seeds_path is not None:
        from interleaf.seeds import seeds_fingerprint

        manifest.seeds_path = str(seeds_path)
        manifest.seeds_hash = seeds_fingerprint(seeds_path)
    obj_store.put_bytes(GRAPH_KEY, Path(doc.path).read_bytes())
    manifest.save(obj_store)
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        pointer = {"store": obj_store.uri, "run_id": run_id}
        (out_path / RUN_POINTER).write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
    return Run(compiled=compiled, store=obj_store, manifest=manifest, out=out_path,
               concurrency=concurrency, checkpoints=checkpoints)


def _run_plain(opts: RunOptions) -> RunSummary:
    from interleaf.seeds import read_seeds, scan_seeds

    # Check the whole seeds file first: a bad line 9,000 should not stop a run half-way.
    scan = scan_seeds(opts.seeds, limit=opts.limit)
    run = open_run(opts.graph, opts.out, opts.store, seeds_path=opts.seeds,
                   force_new_run=opts.force_new_run, concurrency=opts.concurrency)
    started_at = time.time()

    async def main() -> RunSummary:
        try:
            if not opts.progress:
                return await run.arun_seeds(read_seeds(opts.seeds, limit=opts.limit), concurrency=opts.concurrency)
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[tally]}"), TimeElapsedColumn())
            tally: Counter[str] = Counter()
            with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
                task = progress.add_task(run.spec.name, total=scan.count, tally="")

                def on_done(_seed_id: str, outcome: str) -> None:
                    tally[outcome] += 1
                    text = ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))
                    progress.update(task, advance=1, tally=text)

                return await run.arun_seeds(read_seeds(opts.seeds, limit=opts.limit),
                                            concurrency=opts.concurrency, on_done=on_done)
        finally:
            await run.aclose()

    summary = asyncio.run(main())
    run.record_invocation(summary, started_at=started_at, seeds_hash=scan.fingerprint)
    write_run_reports(run)
    return summary


def write_run_reports(run: Run) -> list[str]:
    """Rebuild the run-level reports the graph declares (no-op when it declares none)."""
    if not run.spec.reports:
        return []
    from interleaf.datasets.reports import write_reports

    return write_reports(run.store)


def run_from_cli(opts: RunOptions) -> RunSummary:
    """``interleaf run``: the Prefect flow with ``--orchestrate``, else one plain ``asyncio.run``."""
    if opts.orchestrate:
        from interleaf.flows.generate import run_generate

        return run_generate(opts)
    return _run_plain(opts)
