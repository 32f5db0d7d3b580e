"""Micro-batching: concurrent requests with equal settings become one pipeline call.

Requests wait at most ``max_wait`` for company; a group that reaches ``max_batch``
goes at once. Calls run in a worker thread (``asyncio.to_thread``) so the event loop
keeps serving model calls while the accelerator works, and requests arriving during
a call gather into the next batch.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from interleaf.imaging.execution import run_jobs
from interleaf.imaging.jobs import BatchShape, ImageJob, ImageResult
from interleaf.imaging.pool import LoadedPipeline, PipelineKey

_Pending = tuple[ImageJob, "asyncio.Future[ImageResult]"]


@dataclass
class _Group:
    items: list[_Pending] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    """Gathers jobs for one loaded pipeline on one event loop."""

    def __init__(self, loaded: LoadedPipeline, max_batch: int = 8, max_wait_s: float = 0.02):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.loaded = loaded
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self._groups: dict[BatchShape, _Group] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, job: ImageJob) -> ImageResult:
        """Queue ``job`` and wait for its image; raises the job's own error if it failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ImageResult] = loop.create_future()
        group = self._groups.setdefault(job.shape, _Group())
        entry = (job, future)
        group.items.append(entry)
        if len(group.items) >= self.max_batch:
            self._flush(job.shape)
        elif group.timer is None:
            group.timer = loop.call_later(self.max_wait_s, self._flush, job.shape)
        try:
            return await future
        except asyncio.CancelledError:
            # Not yet sent: take it out so the batch does not compute an unwanted image.
            waiting = self._groups.get(job.shape)
            if waiting is not None and entry in waiting.items:
                waiting.items.remove(entry)
            raise

    def _flush(self, shape: BatchShape) -> None:
        group = self._groups.pop(shape, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        items = [item for item in group.items if not item[1].done()]
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self._run(items))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, items: list[_Pending]) -> None:
        try:
            outcomes = await asyncio.to_thread(run_jobs, self.loaded, [job for job, _ in items])
        except BaseException as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), outcome in zip(items, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def drain(self) -> None:
        """Send every waiting group now and wait for all running batches."""
        for shape in list(self._groups):
            self._flush(shape)
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


_BatcherKey = tuple[PipelineKey, int, float]
_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_BatcherKey, MicroBatcher]] = (
    weakref.WeakKeyDictionary()
)


def batcher_for(loaded: LoadedPipeline, max_batch: int, max_wait_s: float) -> MicroBatcher:
    """The running loop's batcher for ``loaded`` with these limits (created on first use).

    Batchers are per event loop because their futures belong to one loop; the pipeline
    and its lock are shared by all loops of the process.
    """
    loop = asyncio.get_running_loop()
    per_loop = _BATCHERS.setdefault(loop, {})
    key = (loaded.key, max_batch, max_wait_s)
    batcher = per_loop.get(key)
    if batcher is None or batcher.loaded is not loaded:
        batcher = per_loop[key] = MicroBatcher(loaded, max_batch, max_wait_s)
    return batcher
