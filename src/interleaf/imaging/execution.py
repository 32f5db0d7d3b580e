"""Running a batch of jobs as one pipeline call, in a worker thread.

A batch that raises is split in halves and each half retried, down to single jobs,
so one bad request (or a batch too large for GPU memory) costs only its own image.
Jobs whose input image cannot be decoded fail before the call and never join it.
"""

from __future__ import annotations

from typing import Any

from interleaf.imaging.jobs import ImageJob, ImageResult
from interleaf.imaging.png import decode_image, encode_png
from interleaf.imaging.pool import LoadedPipeline

JobOutcome = ImageResult | Exception


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/MPS out-of-memory errors (torch raises different types per backend)."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _release_accelerator_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()


def run_jobs(loaded: LoadedPipeline, jobs: list[ImageJob]) -> list[JobOutcome]:
    """One outcome per job, in order; never raises for a job's own failure."""
    outcomes: list[JobOutcome | None] = [None] * len(jobs)
    inputs: dict[int, Any] = {}
    for i, job in enumerate(jobs):
        if job.init_image is None:
            continue
        try:
            inputs[i] = decode_image(job.init_image, (job.shape.width, job.shape.height))
        except ValueError as exc:
            outcomes[i] = exc
    runnable = [i for i, outcome in enumerate(outcomes) if outcome is None]
    # After an out-of-memory error, later batches go straight in pieces that fitted.
    step = loaded.stats.memory_batch_limit or len(runnable) or 1
    for start in range(0, len(runnable), step):
        chunk = runnable[start : start + step]
        done = _run_split(loaded, [jobs[i] for i in chunk], [inputs.get(i) for i in chunk])
        for i, outcome in zip(chunk, done, strict=True):
            outcomes[i] = outcome
    return [o if o is not None else RuntimeError("job produced no outcome") for o in outcomes]


def _run_split(loaded: LoadedPipeline, jobs: list[ImageJob], images: list[Any]) -> list[JobOutcome]:
    if not jobs:
        return []
    try:
        return list(_call(loaded, jobs, images))
    except Exception as exc:
        oom = is_out_of_memory(exc)
        if oom:
            _release_accelerator_memory(loaded.key.device)
        if len(jobs) == 1:
            return [exc]
        with loaded.lock:
            loaded.stats.splits += 1
            if oom:
                limit = loaded.stats.memory_batch_limit
                loaded.stats.memory_batch_limit = min(limit or len(jobs), max(1, len(jobs) // 2))
        mid = len(jobs) // 2
        return _run_split(loaded, jobs[:mid], images[:mid]) + _run_split(loaded, jobs[mid:], images[mid:])


def _call(loaded: LoadedPipeline, jobs: list[ImageJob], images: list[Any]) -> list[ImageResult]:
    import torch

    shape = jobs[0].shape
    if any(job.shape != shape for job in jobs):
        raise ValueError("jobs with different settings cannot share a pipeline call")
    kind = loaded.key.kind
    kwargs: dict[str, Any] = {
        "prompt": [job.prompt for job in jobs],
        "num_inference_steps": shape.steps,
        "guidance_scale": shape.guidance,
        # CPU generators: the initial noise is the same whatever device runs the model.
        "generator": [torch.Generator("cpu").manual_seed(job.seed) for job in jobs],
        "output_type": "pil",
    }
    if any(job.negative_prompt for job in jobs):
        kwargs["negative_prompt"] = [job.negative_prompt or "" for job in jobs]
    if kind == "text2img":
        kwargs["height"], kwargs["width"] = shape.height, shape.width
    else:
        if any(image is None for image in images):
            raise ValueError(f"{kind} needs an input image for every job")
        kwargs["image"] = images
        if kind == "img2img":
            kwargs["strength"] = shape.strength
        else:
            kwargs["image_guidance_scale"] = shape.image_guidance
    with loaded.lock:
        loaded.stats.calls += 1
        loaded.stats.batch_sizes.append(len(jobs))
        loaded.stats.largest_batch = max(loaded.stats.largest_batch, len(jobs))
        try:
            with torch.inference_mode():
                output = loaded.pipe(**kwargs)
        except Exception:
            loaded.stats.failed_calls += 1
            raise
        loaded.stats.images += len(jobs)
    flags = getattr(output, "nsfw_content_detected", None) or [False] * len(jobs)
    results = []
    for image, flagged in zip(output.images, flags, strict=True):
        results.append(ImageResult(encode_png(image), image.width, image.height, bool(flagged)))
    return results
