"""Per-process pipeline pool: one loaded pipeline per (model, kind, device, dtype).

Every dialogue a worker process runs shares these instances. Loading happens once,
in a worker thread, under a per-key lock (so two models load in parallel but one
model never loads twice). text2img and img2img of the same weights share modules
through ``from_pipe`` and one execution lock, so the second costs no memory.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interleaf.errors import InterleafError
from interleaf.imaging.devices import resolve_device, resolve_dtype
from interleaf.imaging.jobs import PIPELINE_KINDS, PipelineKind
from interleaf.imaging.prompts import PromptFitter

_LOAD_LOCK = threading.Lock()


class PipelineLoadError(InterleafError):
    """A diffusers pipeline could not be loaded; the message says which and why."""


@dataclass(frozen=True)
class PipelineKey:
    """Identity of a loaded pipeline; ``device`` and ``dtype`` are concrete (never ``auto``)."""

    model: str
    kind: PipelineKind
    device: str
    dtype: str


@dataclass
class PipelineStats:
    """Counters a test or a metrics exporter reads; updated under the pipeline lock."""

    calls: int = 0
    images: int = 0
    failed_calls: int = 0
    splits: int = 0
    largest_batch: int = 0
    # Set after an out-of-memory error: the largest batch size known to need splitting, halved.
    memory_batch_limit: int | None = None
    batch_sizes: list[int] = field(default_factory=list)


class LoadedPipeline:
    """A diffusers pipeline plus what running it safely needs."""

    def __init__(self, key: PipelineKey, pipe: Any, lock: threading.Lock):
        self.key = key
        self.pipe = pipe
        self.lock = lock
        self.stats = PipelineStats()
        tokenizer = getattr(pipe, "tokenizer", None)
        self.prompts = PromptFitter(copy.deepcopy(tokenizer)) if tokenizer is not None else None
        self.scheduler_name = type(getattr(pipe, "scheduler", None)).__name__

    @property
    def calls(self) -> int:
        """How many times the pipeline was called (one per batch, plus retries of split batches)."""
        return self.stats.calls

    def reset_stats(self) -> None:
        """Start the counters afresh (the out-of-memory batch limit is forgotten too)."""
        with self.lock:
            self.stats = PipelineStats()

    def fit_prompt(self, prompt: str) -> tuple[str, str | None]:
        return self.prompts.fit(prompt) if self.prompts is not None else (prompt, None)

    def __repr__(self) -> str:
        return f"LoadedPipeline({self.key}, calls={self.stats.calls})"


def is_local_model(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def quiet_library_output() -> None:
    """Silence diffusers/transformers loading bars and backend notices.

    They would interleave with the run's own progress output on stderr; real errors still raise.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


class PipelinePool:
    """Thread-safe table of loaded pipelines; use :func:`pipeline_pool` for the process's one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loading: dict[PipelineKey, threading.Lock] = {}
        self._weight_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._loaded: dict[PipelineKey, LoadedPipeline] = {}

    # -- keys ---------------------------------------------------------------------------------
    @staticmethod
    def key_for(model: str, kind: PipelineKind, device: str = "auto", dtype: str = "auto") -> PipelineKey:
        """Resolve ``auto`` device/dtype (imports torch) and normalise local paths."""
        if kind not in PIPELINE_KINDS:
            raise ValueError(f"pipeline kind {kind!r} is not one of {', '.join(PIPELINE_KINDS)}")
        concrete = resolve_device(device)
        if is_local_model(model):
            model = str(Path(model).expanduser().resolve())
        return PipelineKey(model=model, kind=kind, device=concrete, dtype=resolve_dtype(dtype, concrete))

    # -- access -------------------------------------------------------------------------------
    def get(self, key: PipelineKey) -> LoadedPipeline:
        """The loaded pipeline for ``key``, loading it on first use (blocking)."""
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                pipe = self._load(key)
                loaded = LoadedPipeline(key, pipe, self._weight_lock(key))
                with self._lock:
                    self._loaded[key] = loaded
        return loaded

    async def aget(self, model: str, kind: PipelineKind, device: str = "auto", dtype: str = "auto") -> LoadedPipeline:
        """Async :meth:`get`; key resolution and loading run off the event loop."""
        return await asyncio.to_thread(lambda: self.get(self.key_for(model, kind, device, dtype)))

    def adopt(self, key: PipelineKey, pipe: Any) -> LoadedPipeline:
        """Register a pipeline built in memory (random-weight benchmarks) under ``key``."""
        pipe.set_progress_bar_config(disable=True)
        loaded = LoadedPipeline(key, pipe, self._weight_lock(key))
        with self._lock:
            self._loaded[key] = loaded
        return loaded

    def loaded(self) -> list[LoadedPipeline]:
        with self._lock:
            return list(self._loaded.values())

    def clear(self) -> None:
        """Forget every pipeline (their memory is freed once no request holds them)."""
        with self._lock:
            self._loaded.clear()
            self._loading.clear()
            self._weight_locks.clear()

    # -- loading ------------------------------------------------------------------------------
    def _weight_lock(self, key: PipelineKey) -> threading.Lock:
        with self._lock:
            return self._weight_locks.setdefault((key.model, key.device, key.dtype), threading.Lock())

    def _sibling(self, key: PipelineKey) -> LoadedPipeline | None:
        if key.kind == "instruct_pix2pix":
            return None
        with self._lock:
            weights = (key.model, key.device, key.dtype)
            for other in self._loaded.values():
                if (
                    (other.key.model, other.key.device, other.key.dtype) == weights
                    and other.key.kind != key.kind
                    and other.key.kind in ("text2img", "img2img")
                ):
                    return other
        return None

    def _load(self, key: PipelineKey) -> Any:
        # diffusers is not safe to import or load from two threads at once: a half-initialised
        # module (ImportError for a name that exists) or a model still on the meta device
        # ("Cannot copy out of meta tensor"). Loads are rare and slow; one at a time per process.
        with _LOAD_LOCK:
            return self._load_locked(key)

    def _load_locked(self, key: PipelineKey) -> Any:
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, DiffusionPipeline

        quiet_library_output()
        auto = {"text2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image}
        sibling = self._sibling(key)
        try:
            if sibling is not None:
                # Modules are shared, the scheduler is not: it keeps per-call state.
                scheduler = type(sibling.pipe.scheduler).from_config(sibling.pipe.scheduler.config)
                pipe = auto[key.kind].from_pipe(sibling.pipe, scheduler=scheduler)
            else:
                loader = auto.get(key.kind, DiffusionPipeline)
                pipe = loader.from_pretrained(key.model, dtype=getattr(torch, key.dtype))
                pipe = pipe.to(key.device)
        except Exception as exc:
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            hint = ""
            if not is_local_model(key.model):
                hint = (
                    " The model is neither a local folder nor"
                    + (" in the Hugging Face cache (HF_HUB_OFFLINE is set)." if offline else " loadable from the hub.")
                    + " Check the name, HF_HOME / HF_HUB_CACHE, or give a local folder path."
                )
            raise PipelineLoadError(
                f"cannot load diffusers pipeline {key.model!r} as {key.kind} on {key.device} ({key.dtype}): "
                f"{type(exc).__name__}: {exc}.{hint}"
            ) from exc
        if key.kind == "instruct_pix2pix" and "InstructPix2Pix" not in type(pipe).__name__:
            raise PipelineLoadError(
                f"model {key.model!r} loads as {type(pipe).__name__}, not an InstructPix2Pix pipeline; "
                "use pipeline: img2img for it"
            )
        pipe.set_progress_bar_config(disable=True)
        return pipe


_POOL: PipelinePool | None = None
_POOL_LOCK = threading.Lock()


def pipeline_pool() -> PipelinePool:
    """The process-wide pool."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = PipelinePool()
        return _POOL


def _forget_after_fork() -> None:
    # A forked child must not reuse the parent's locks or CUDA handles.
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
