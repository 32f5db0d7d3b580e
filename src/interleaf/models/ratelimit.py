"""Request and token rate limits of one model endpoint (``rpm`` / ``tpm`` of a ``models:`` entry).

A concurrency cap (``max_concurrency``) bounds how many requests are in flight; a rate limit
bounds how many start per minute, which is what providers meter. :class:`RateLimiter` spaces
request starts evenly (``60 / rpm`` seconds apart, with up to one second's worth allowed at
once) and keeps a token bucket of ``tpm`` tokens a minute: a request waits while the bucket is
empty, and its real usage (prompt + completion tokens, known only from the answer) is taken
out afterwards, so a large answer delays the requests after it rather than being refused.

The limits are totals: a run spread over N processes gives each a limiter of ``1/N`` of them
(:meth:`RateLimiter.share`). It uses no event-loop objects, so one limiter serves every loop
and thread of a process.

Example (2 requests a second: the third of three back-to-back starts waits about a second):

    >>> import asyncio, time
    >>> limiter = RateLimiter(rpm=120)
    >>> async def three() -> float:
    ...     t0 = time.monotonic()
    ...     for _ in range(3):
    ...         await limiter.acquire()
    ...     return time.monotonic() - t0
    >>> 0.4 < asyncio.run(three()) < 1.5
    True
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class RateLimiter:
    """Requests-per-minute spacing and a tokens-per-minute bucket (either may be None: unlimited)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        if rpm is not None and rpm <= 0:
            raise ValueError(f"rpm must be > 0, not {rpm}")
        if tpm is not None and tpm <= 0:
            raise ValueError(f"tpm must be > 0, not {tpm}")
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._mutex = threading.Lock()
        # Request spacing: when the next request is due if requests were spaced exactly.
        self._interval = 60.0 / rpm if rpm else 0.0
        self._burst = max(1.0, (rpm or 0) / 60.0)
        self._next = clock()
        # Token bucket: level may go below zero (usage is known only after the answer).
        self._tokens = float(tpm or 0)
        self._tokens_at = clock()
        #: Seconds spent waiting for the limits, summed over every request (for reports).
        self.waited_s = 0.0

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def share(self, parts: int) -> RateLimiter:
        """A limiter with ``1/parts`` of these limits, for one of ``parts`` processes."""
        if parts <= 1:
            return RateLimiter(self.rpm, self.tpm, clock=self._clock)
        return RateLimiter(None if self.rpm is None else self.rpm / parts,
                           None if self.tpm is None else self.tpm / parts, clock=self._clock)

    def _reserve(self) -> float:
        """Take a request slot; returns how long to wait before sending (0: now)."""
        with self._mutex:
            now = self._clock()
            wait = 0.0
            if self.rpm:
                # GCRA: up to `burst` requests may start together; after that one every `interval`.
                due = max(self._next, now)
                wait = max(0.0, due - self._interval * (self._burst - 1) - now)
                self._next = due + self._interval
            if self.tpm:
                self._refill(now)
                if self._tokens <= 0:
                    wait = max(wait, -self._tokens / (self.tpm / 60.0) + 1e-3)
            return wait

    def _refill(self, now: float) -> None:
        assert self.tpm
        self._tokens = min(float(self.tpm), self._tokens + (now - self._tokens_at) * self.tpm / 60.0)
        self._tokens_at = now

    async def acquire(self) -> None:
        """Wait until a request may be sent."""
        if not self.limited:
            return
        wait = self._reserve()
        while wait > 0:
            self.waited_s += wait
            await asyncio.sleep(wait)
            if not self.tpm:
                return
            with self._mutex:
                # The bucket may have been drained meanwhile by answers that came back.
                self._refill(self._clock())
                wait = 0.0 if self._tokens > 0 else -self._tokens / (self.tpm / 60.0) + 1e-3

    def used(self, tokens: int | None) -> None:
        """Take a finished request's real token usage out of the bucket."""
        if not self.tpm or not tokens:
            return
        with self._mutex:
            self._refill(self._clock())
            self._tokens -= tokens


class RequestGate(Protocol):
    """A rate limit kept somewhere else (a Prefect server shared by every worker), passed by
    every request of the current context besides this process's own :class:`RateLimiter`."""

    async def before(self, model: str) -> None:
        """Wait until model ``model`` (a ``models:`` entry name) may be sent a request."""

    async def after(self, model: str, tokens: int) -> None:
        """Charge the ``tokens`` a request to ``model`` used."""


_gate: ContextVar[RequestGate | None] = ContextVar("interleaf_request_gate", default=None)


@contextmanager
def using_request_gate(gate: RequestGate | None) -> Iterator[None]:
    """Requests made in this context (and tasks it starts) pass ``gate`` too."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


def current_request_gate() -> RequestGate | None:
    return _gate.get()


_shared: dict[tuple[object, ...], RateLimiter] = {}
_shared_mutex = threading.Lock()


def shared_limiter(key: tuple[object, ...], rpm: float | None, tpm: float | None, *, parts: int = 1) -> RateLimiter:
    """The process's one limiter for ``key`` (a model entry), so that every client of that model
    in this process (parallel shards, several batches) draws from the same budget.

    >>> a = shared_limiter(("doc", "m"), 60, None)
    >>> a is shared_limiter(("doc", "m"), 60, None), a is shared_limiter(("doc", "m"), 30, None)
    (True, False)
    """
    full = (*key, rpm, tpm, parts)
    with _shared_mutex:
        limiter = _shared.get(full)
        if limiter is None:
            limiter = _shared[full] = RateLimiter(rpm, tpm).share(parts)
        return limiter


__all__ = ["RateLimiter", "RequestGate", "current_request_gate", "shared_limiter", "using_request_gate"]
