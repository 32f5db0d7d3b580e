"""Micro-batching against a real tiny diffusers pipeline (calls are counted, not mocked)."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from interleaf.imaging.batcher import MicroBatcher, batcher_for
from interleaf.imaging.jobs import BatchShape, ImageJob
from interleaf.imaging.png import encode_png
from interleaf.imaging.pool import LoadedPipeline, PipelinePool

# Guidance 1.0 turns classifier-free guidance off (half the work); one test keeps it on.
SHAPE = BatchShape(width=32, height=32, steps=2, guidance=1.0)
GUIDED = BatchShape(width=32, height=32, steps=2, guidance=5.0)


@pytest.fixture(scope="module")
def pool() -> PipelinePool:
    return PipelinePool()


@pytest.fixture
def text2img(pool: PipelinePool, tiny_pipeline_dir: Path) -> LoadedPipeline:
    loaded = pool.get(pool.key_for(str(tiny_pipeline_dir), "text2img"))
    loaded.reset_stats()
    return loaded


class FailingPipeline:
    """Wraps a real pipeline; raises like a real failure when a batch holds a poisoned prompt
    or (to imitate a GPU running out of memory) more than ``max_batch`` prompts."""

    def __init__(self, inner: Any, poison: str = "\0", max_batch: int = 1_000):
        self.inner, self.poison, self.max_batch = inner, poison, max_batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, **kwargs: Any) -> Any:
        if len(kwargs["prompt"]) > self.max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if any(self.poison in p for p in kwargs["prompt"]):
            raise RuntimeError("sizes of tensors must match")
        return self.inner(**kwargs)


def _jobs(n: int, shape: BatchShape = SHAPE, prefix: str = "a cat") -> list[ImageJob]:
    return [ImageJob(prompt=f"{prefix} {i}", seed=1000 + i, shape=shape) for i in range(n)]


async def test_sixteen_concurrent_requests_take_at_most_three_calls(text2img: LoadedPipeline) -> None:
    batcher = MicroBatcher(text2img, max_batch=8, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(job) for job in _jobs(16)))
    assert len(results) == 16 and all(r.width == 32 and r.height == 32 for r in results)
    assert text2img.calls <= 3
    assert text2img.stats.images == 16 and max(text2img.stats.batch_sizes) <= 8
    assert len({r.png for r in results}) == 16


async def test_stragglers_within_max_wait_join_the_batch(text2img: LoadedPipeline) -> None:
    batcher = MicroBatcher(text2img, max_batch=8, max_wait_s=0.3)

    async def late(job: ImageJob, delay: float) -> Any:
        await asyncio.sleep(delay)
        return await batcher.submit(job)

    await asyncio.gather(*(late(job, 0.01 * i) for i, job in enumerate(_jobs(5))))
    assert text2img.stats.batch_sizes == [5]


async def test_incompatible_settings_batch_separately(text2img: LoadedPipeline) -> None:
    other = BatchShape(width=48, height=32, steps=2, guidance=1.0)
    batcher = MicroBatcher(text2img, max_batch=8, max_wait_s=0.02)
    results = await asyncio.gather(*(batcher.submit(j) for j in [*_jobs(3), *_jobs(3, other)]))
    assert sorted(text2img.stats.batch_sizes) == [3, 3]
    assert [r.width for r in results] == [32, 32, 32, 48, 48, 48]


async def test_batched_and_single_runs_give_identical_bytes(text2img: LoadedPipeline) -> None:
    jobs = [*_jobs(3, GUIDED), ImageJob(prompt="a cat", seed=5, shape=GUIDED, negative_prompt="blurry")]
    batched = await asyncio.gather(*(MicroBatcher(text2img, 8, 0.02).submit(j) for j in jobs))
    single = MicroBatcher(text2img, max_batch=1, max_wait_s=0)
    alone = [await single.submit(j) for j in jobs]
    assert [r.png for r in batched] == [r.png for r in alone]


async def test_a_failing_request_fails_only_itself(pool: PipelinePool, tiny_pipeline_dir: Path) -> None:
    real = pool.get(pool.key_for(str(tiny_pipeline_dir), "text2img"))
    loaded = LoadedPipeline(real.key, FailingPipeline(real.pipe, poison="BOOM"), real.lock)
    jobs = _jobs(6)
    jobs[4] = ImageJob(prompt="BOOM goes the dynamite", seed=1, shape=SHAPE)
    batcher = MicroBatcher(loaded, max_batch=8, max_wait_s=0.02)
    outcomes = await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)
    assert isinstance(outcomes[4], RuntimeError) and "sizes of tensors" in str(outcomes[4])
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 4)
    assert loaded.stats.splits >= 1 and loaded.stats.images == 5


async def test_out_of_memory_splits_the_batch_and_retries(pool: PipelinePool, tiny_pipeline_dir: Path) -> None:
    real = pool.get(pool.key_for(str(tiny_pipeline_dir), "text2img"))
    loaded = LoadedPipeline(real.key, FailingPipeline(real.pipe, max_batch=1), real.lock)
    batcher = MicroBatcher(loaded, max_batch=8, max_wait_s=0.02)
    results = await asyncio.gather(*(batcher.submit(j) for j in _jobs(4)))
    assert len(results) == 4 and loaded.stats.images == 4
    assert loaded.stats.batch_sizes == [4, 2, 1, 1, 2, 1, 1]  # halves, depth first
    assert loaded.stats.failed_calls == 3 and loaded.stats.memory_batch_limit == 1
    again = await asyncio.gather(*(batcher.submit(j) for j in _jobs(3, prefix="a dog")))
    assert len(again) == 3
    assert loaded.stats.batch_sizes[7:] == [1, 1, 1] and loaded.stats.failed_calls == 3


async def test_undecodable_input_image_fails_alone(pool: PipelinePool, tiny_pipeline_dir: Path) -> None:
    from PIL import Image

    i2i = pool.get(pool.key_for(str(tiny_pipeline_dir), "img2img"))
    i2i.reset_stats()
    shape = BatchShape(width=32, height=32, steps=2, guidance=5.0, strength=0.5)
    source = encode_png(Image.new("RGB", (40, 24), (200, 30, 30)))
    jobs = [ImageJob(prompt=f"edit {i}", seed=i, shape=shape, init_image=source) for i in range(3)]
    jobs.append(ImageJob(prompt="edit broken", seed=9, shape=shape, init_image=b"<html>not an image</html>"))
    batcher = MicroBatcher(i2i, max_batch=8, max_wait_s=0.02)
    outcomes = await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)
    assert isinstance(outcomes[3], ValueError) and "not a readable image" in str(outcomes[3])
    assert all(not isinstance(o, BaseException) and o.width == 32 for o in outcomes[:3])
    assert i2i.stats.batch_sizes == [3]


async def test_cancelled_request_is_not_computed(text2img: LoadedPipeline) -> None:
    batcher = MicroBatcher(text2img, max_batch=8, max_wait_s=0.1)
    jobs = _jobs(3)
    tasks = [asyncio.ensure_future(batcher.submit(j)) for j in jobs]
    await asyncio.sleep(0)
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert text2img.stats.batch_sizes == [2]


async def test_batcher_for_is_shared_per_loop_and_settings(text2img: LoadedPipeline) -> None:
    assert batcher_for(text2img, 8, 0.02) is batcher_for(text2img, 8, 0.02)
    assert batcher_for(text2img, 4, 0.02) is not batcher_for(text2img, 8, 0.02)
