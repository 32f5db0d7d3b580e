"""Process-wide health of model endpoints: when one keeps failing, stop calling it.

An endpoint is a resolved provider model at an ``api_base`` (``None``: the provider's
default). Model clients report each outcome here: a failure of a systemic kind (see
:mod:`interleaf.models.retry`) adds one to the endpoint's run of consecutive failures, any
answer resets it. When the run reaches the calling model's ``stop_after_failures`` the
endpoint is *down*: that call and every later one raise
:class:`~interleaf.errors.SystemicFailure` at once, without sending anything, until
:func:`reset_endpoint_health` (a new run, a test).

It is process-wide on purpose: all dialogues, nodes and model names that share an endpoint
learn of its outage together, so a run stops within a few failures instead of one per seed.

Example:
    >>> registry = HealthRegistry()
    >>> key = EndpointKey("openai/gpt-4o", None)
    >>> registry.failure(key, model="judge", error="401 bad key", threshold=2) is None
    True
    >>> registry.failure(key, model="judge", error="401 bad key", threshold=2).failures
    2
    >>> registry.down(key).endpoint
    'provider default'
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from interleaf.errors import SystemicFailure


@dataclass(frozen=True)
class EndpointKey:
    """Which endpoint: the resolved litellm model string and ``api_base`` (None: provider default)."""

    provider_model: str
    api_base: str | None

    @property
    def endpoint(self) -> str:
        """How the endpoint is named in messages (never with a key: keys are not part of it)."""
        return self.api_base or "provider default"


@dataclass
class _Health:
    failures: int = 0
    last_error: str = ""
    down: tuple[str, str, int] | None = None  # (model, error, failures) of the call that tripped it


class HealthRegistry:
    """Consecutive systemic failures per endpoint; thread-safe (shards may run on threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health: dict[EndpointKey, _Health] = {}

    def down(self, key: EndpointKey) -> SystemicFailure | None:
        """The failure to raise when ``key`` is down, else None."""
        with self._lock:
            health = self._health.get(key)
            if health is None or health.down is None:
                return None
            model, error, failures = health.down
        return SystemicFailure(model=model, endpoint=key.endpoint, error=error, failures=failures)

    def success(self, key: EndpointKey) -> None:
        """An answer came back: the endpoint works (a run of failures ends)."""
        with self._lock:
            health = self._health.get(key)
            if health is not None and health.down is None:
                health.failures = 0

    def failure(self, key: EndpointKey, *, model: str, error: str, threshold: int) -> SystemicFailure | None:
        """Count one systemic failure; returns the :class:`SystemicFailure` once ``threshold`` is reached."""
        with self._lock:
            health = self._health.setdefault(key, _Health())
            if health.down is None:
                health.failures += 1
                health.last_error = error
                if health.failures >= max(1, threshold):
                    health.down = (model, error, health.failures)
            if health.down is None:
                return None
            model, error, failures = health.down
        return SystemicFailure(model=model, endpoint=key.endpoint, error=error, failures=failures)

    def failures(self, key: EndpointKey) -> int:
        """The current run of consecutive systemic failures of ``key``."""
        with self._lock:
            health = self._health.get(key)
            return 0 if health is None else health.failures

    def reset(self, key: EndpointKey | None = None) -> None:
        """Forget what is known about ``key`` (every endpoint when None)."""
        with self._lock:
            if key is None:
                self._health.clear()
            else:
                self._health.pop(key, None)


_registry = HealthRegistry()


def endpoint_health() -> HealthRegistry:
    """The process-wide registry model clients report to."""
    return _registry


def reset_endpoint_health(key: EndpointKey | None = None) -> None:
    """Start afresh (a new run in this process, a test): no endpoint is known to be down.

    >>> reset_endpoint_health()
    """
    _registry.reset(key)
