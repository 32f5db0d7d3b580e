"""Where a process's CPU goes, by part of the stack: CPU-weighted stack sampling, no extra tools.

How it measures: a thread wakes every ``interval`` seconds, reads each other thread's CPU
clock (``time.pthread_getcpuclockid``) and its Python stack (``sys._current_frames``), and
charges the CPU that thread used since the last wake to the part its current stack belongs
to. Idle threads (the event loop waiting in ``epoll``, a thread pool waiting for work) use no
CPU, so they are charged nothing; the total charged is the threads' real CPU, not wall time.
The sampler's own thread is left out and reported as overhead. Unlike cProfile it adds no
cost per function call, so call-heavy code (pydantic, LangGraph) is not inflated; the price is
sampling error (CPU used between two wakes is charged to the stack seen at the second, or to
``idle at sample`` when that stack is waiting). The sampler needs the GIL to read the stacks, so
it tends to see the others where they let go of it: in system calls (file opens and writes,
``select``) more often than in pure-Python work. Parts that are mostly system calls
(checkpoints, status writes) are likely charged more than their share, pure-Python ones
(litellm, LangGraph, pydantic) less.

Parts, decided per stack in this order ("who asked for the work", not where it ran):

``litellm``        any frame of litellm, or the innermost library frame is its HTTP stack
                   (openai, httpx, httpcore, aiohttp, anyio, h11): the client library's work
``checkpoints``    any frame of the checkpoint saver (interleaf.storage.checkpoint(_log),
                   langgraph.checkpoint) or a store call on a ``checkpoints/`` key
``status writes``  the end of a dialogue (``Run._finish``: dialogue and status files) or a
                   store call on a ``status/`` or ``dialogues/`` key
``pydantic``       the innermost library frame is pydantic (validation asked by interleaf or
                   LangGraph; pydantic work inside litellm counts as litellm's)
``LangGraph``      the innermost library frame is langgraph or langchain_core
``interleaf``      the innermost library frame is interleaf's own (nodes, runner, prompts)
``asyncio loop``   only standard-library frames of the event loop (scheduling, callbacks)
``idle at sample`` the thread was waiting when sampled (the loop in ``select``, a pool
                   thread for work): the CPU it used since the last sample went to short
                   steps that ended before it, so it cannot be charged to a part; it is the
                   sampling error made visible, spread over the parts in unknown shares
``other``          anything else (other libraries, threads without Python frames)

Store calls run on the store's thread pool, where the stack no longer shows who submitted
them; their key (a local of ``ObjectStore`` methods) says which part they belong to. Work in
C extensions has no Python frame of its own and is charged to the Python frame that called
it (pydantic-core validation to pydantic's Python wrappers such as ``BaseModel.__init__``;
a ``json.dumps`` to the code that called it; ``fsync`` to the store's write).
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType

PARTS = ("litellm", "LangGraph", "pydantic", "checkpoints", "status writes", "interleaf", "asyncio loop",
         "idle at sample", "other")
#: Where a thread waits: CPU it used since the last sample went to work it finished before waiting.
_WAITS = {("selectors.py", "select"), ("threading.py", "wait"), ("queue.py", "get"), ("thread.py", "_worker")}
_STDLIB = tuple({str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "platstdlib")})
#: The bench scripts' own frames (the driver around the event loop) count like the standard library.
_DRIVER = str(Path(__file__).resolve().parent) + "/"
_HTTP = ("openai", "httpx", "httpcore", "aiohttp", "anyio", "h11", "yarl", "multidict")
_STORE_KEY_PARTS = {"checkpoints/": "checkpoints", "status/": "status writes", "dialogues/": "status writes"}


def _package(code: CodeType) -> str:
    """The top-level package of a code object's file ("" for the standard library)."""
    filename = code.co_filename
    if filename.startswith(("<frozen ", _DRIVER)) or (filename.startswith(_STDLIB) and "site-packages" not in filename):
        return ""
    marker = "site-packages/"
    at = filename.rfind(marker)
    if at >= 0:
        return filename[at + len(marker):].split("/", 1)[0].removesuffix(".py")
    if "/interleaf/" in filename:  # an editable install: the source tree
        return "interleaf"
    return "?"


class CpuParts:
    """Charge the CPU of this process's threads to :data:`PARTS`; a context manager."""

    def __init__(self, interval: float = 0.004):
        self.interval = interval
        self.cpu = Counter[str]()
        self.top = Counter[tuple[str, str]]()  # (part, innermost library function) -> CPU seconds
        self.samples = 0
        self.sampler_cpu_s = 0.0
        self._packages: dict[CodeType, str] = {}
        self._clocks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-parts", daemon=True)
        self._switch = sys.getswitchinterval()

    def __enter__(self) -> CpuParts:
        # The sampler needs the GIL to look; a shorter switch interval lets it look on time.
        sys.setswitchinterval(self.interval)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        sys.setswitchinterval(self._switch)

    @property
    def total_s(self) -> float:
        return sum(self.cpu.values())

    def _loop(self) -> None:
        me = threading.get_ident()
        own0 = time.thread_time()
        while not self._stop.wait(self.interval):
            self._sample(me)
        self.sampler_cpu_s = time.thread_time() - own0

    def _sample(self, me: int) -> None:
        self.samples += 1
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            try:
                now = time.clock_gettime(time.pthread_getcpuclockid(ident))
            except OSError:  # the thread ended after the listing
                continue
            before = self._clocks.get(ident)
            self._clocks[ident] = now
            if before is None or now <= before:
                continue
            part, where = self.classify(frame)
            self.cpu[part] += now - before
            self.top[(part, where)] += now - before

    def _pkg(self, code: CodeType) -> str:
        pkg = self._packages.get(code)
        if pkg is None:
            pkg = self._packages[code] = _package(code)
        return pkg

    def classify(self, frame: FrameType | None) -> tuple[str, str]:
        """(part, innermost library function) of one thread's stack, innermost frame first."""
        innermost = ""
        where = "?"
        found: str | None = None
        if frame is not None and (frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_name) in _WAITS:
            # The thread is waiting now; what it spent since the last sample ran elsewhere, in
            # steps too short to catch. Charging it to the wait would inflate "asyncio loop".
            return "idle at sample", f"stdlib:{frame.f_code.co_name}"
        while frame is not None:
            code = frame.f_code
            pkg = self._pkg(code)
            if pkg and not innermost:
                innermost = pkg
                where = f"{pkg}:{code.co_name}"
            if pkg == "litellm":
                return "litellm", where
            if found is None:
                found = self._owning_part(frame, code, pkg)
            frame = frame.f_back
        if innermost in _HTTP:
            return "litellm", where
        if found is not None:
            return found, where
        if innermost == "pydantic" or innermost == "pydantic_core":
            return "pydantic", where
        if innermost in ("langgraph", "langchain_core"):
            return "LangGraph", where
        if innermost == "interleaf":
            return "interleaf", where
        if not innermost:
            return "asyncio loop", "stdlib"
        return "other", where

    @staticmethod
    def _owning_part(frame: FrameType, code: CodeType, pkg: str) -> str | None:
        """checkpoints / status writes when this frame says so (innermost such frame wins)."""
        filename = code.co_filename
        if pkg == "interleaf":
            if filename.endswith(("storage/checkpoint.py", "storage/checkpoint_log.py")):
                return "checkpoints"
            if code.co_name == "_finish" and filename.endswith("runner.py"):
                return "status writes"
            if filename.endswith("storage/store.py"):
                key = frame.f_locals.get("key") if code.co_argcount > 1 else None
                if isinstance(key, str):
                    for prefix, part in _STORE_KEY_PARTS.items():
                        if key.startswith(prefix):
                            return part
        elif pkg == "langgraph" and "/checkpoint/" in filename:
            return "checkpoints"
        return None

    def table(self, calls: int) -> list[dict[str, float | str]]:
        """One row a part: CPU seconds, ms per model call, share of the charged CPU."""
        total = self.total_s or 1.0
        return [{"part": part, "cpu_s": round(self.cpu[part], 3),
                 "ms_per_call": round(1000 * self.cpu[part] / max(1, calls), 3),
                 "share": round(self.cpu[part] / total, 4)} for part in PARTS]

    def top_functions(self, per_part: int = 3) -> dict[str, list[tuple[str, float]]]:
        """The innermost library functions that took most CPU, a few a part."""
        out: dict[str, list[tuple[str, float]]] = {}
        for (part, where), seconds in self.top.most_common():
            if len(out.setdefault(part, [])) < per_part:
                out[part].append((where, round(seconds, 3)))
        return out
