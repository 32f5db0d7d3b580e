"""The one door to MLLMs: a litellm client per YAML ``models:`` entry.

Per call it resolves the API key from the environment (never stored), waits for a slot
under the model's concurrency cap, sends the request through ``litellm.acompletion`` and
retries transient failures (429, 5xx, timeouts, broken responses) with jittered
exponential backoff. This is the only retry layer: litellm's ``num_retries`` is 0 and the
OpenAI SDK's ``max_retries`` is 0, so attempts never multiply.

Each call is accounted (tokens, cost from litellm's cost map - None for models it does not
price - latency, attempts). With ``cache: true`` and a run store, answers are kept under
``cache/responses/<sha>.json`` and a repeated request makes no network call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from interleaf.graphs.spec import ModelSpec, env_refs, resolve_env
from interleaf.state import ModelCall

if TYPE_CHECKING:
    from interleaf.runtime import Runtime

log = logging.getLogger(__name__)

#: Loggers that print every request at INFO (and cost CPU doing it).
_NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "openai._base_client", "LiteLLM", "LiteLLM Router")
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
CACHE_PREFIX = "cache/responses"


class ToolCallRequest(BaseModel):
    """A function call the model asked for; ``arguments`` is the raw JSON text as sent."""

    id: str
    name: str
    arguments: str


class Completion(BaseModel):
    """One answer: text, requested tool calls, and the call's accounting."""

    text: str = ""
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)
    finish_reason: str | None = None
    call: ModelCall
    raw_message: dict[str, Any] = Field(default_factory=dict)


class ModelTotals(BaseModel):
    """Sums over a client's calls; ``cost`` is None once any call's cost is unknown."""

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    latency_s: float = 0.0

    @classmethod
    def of(cls, calls: Iterable[ModelCall]) -> ModelTotals:
        """Totals of recorded calls (e.g. every provenance of a stored run)."""
        totals = cls()
        for call in calls:
            totals.add(call)
        return totals

    def add(self, call: ModelCall) -> None:
        self.calls += 1
        self.cached_calls += int(call.cached)
        self.attempts += call.attempts
        self.prompt_tokens += call.prompt_tokens or 0
        self.completion_tokens += call.completion_tokens or 0
        self.latency_s += call.latency_s
        if self.cost is not None:
            self.cost = None if call.cost is None else self.cost + call.cost


class ModelCallError(Exception):
    """A completion failed for good (after retries, or a non-retryable error)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff between attempts (seconds)."""

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0

    def delay(self, retry: int, rng: random.Random, floor: float = 0.0) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**retry)
        return min(self.maximum, max(floor, rng.uniform(ceiling / 2, ceiling)))


_litellm_ready = False


def _litellm() -> Any:
    """Import litellm once, offline-safe and quiet."""
    global _litellm_ready
    # The bundled price map keeps cost accounting reproducible and avoids a network fetch at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    if not _litellm_ready:
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        _litellm_ready = True
    return litellm


def _is_retryable(exc: BaseException) -> bool:
    litellm = _litellm()
    if isinstance(exc, (asyncio.TimeoutError, litellm.Timeout, litellm.APIConnectionError)):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in _RETRY_STATUS or status >= 500
    # Errors without a status (unparseable bodies, dropped connections) are transient here.
    return isinstance(exc, (litellm.APIError, litellm.InternalServerError, json.JSONDecodeError))


def _retry_after(exc: BaseException) -> float:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return 0.0
    try:
        return max(0.0, float(headers.get("retry-after", 0) or 0))
    except (TypeError, ValueError):
        return 0.0


def cache_key(model: str, params: dict[str, Any], messages: list[dict[str, Any]],
              tools: list[dict[str, Any]] | None, tag: str) -> str:
    """Content hash of everything that determines an answer (never the API key or base URL)."""
    blob = json.dumps(
        {"model": model, "params": params, "messages": messages, "tools": tools or [], "tag": tag},
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ModelClient:
    """Completion calls to one named model (one ``models:`` entry of a graph)."""

    def __init__(self, name: str, spec: ModelSpec, runtime: Runtime | None = None):
        self.name = name
        self.spec = spec
        self.runtime = runtime
        self.totals = ModelTotals()
        self.backoff = Backoff()
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"ModelClient({self.name!r}, model={self.spec.model!r})"

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._limits.get(loop)
        if sem is None:
            sem = asyncio.Semaphore(self.spec.max_concurrency)
            self._limits[loop] = sem
        return sem

    def _api_key(self) -> str | None:
        if self.spec.api_key is None:
            return None
        try:
            return resolve_env(self.spec.api_key) or None
        except KeyError as exc:
            raise ModelCallError(
                f"model {self.name!r}: api_key needs environment variable {exc.args[0]!r}, which is not set"
            ) from None

    def _scrub(self, text: str, secret: str | None) -> str:
        if secret:
            text = text.replace(secret, "***")
        return text[:500]

    def _store(self) -> Any:
        if not self.spec.cache or self.runtime is None:
            return None
        return self.runtime.store

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
        cache_tag: str = "",
    ) -> Completion:
        """One chat completion. Raises :class:`ModelCallError` when it cannot get an answer."""
        merged = {**self.spec.params, **(params or {})}
        store = self._store()
        key = cache_key(self.spec.model, merged, messages, tools, cache_tag) if store is not None else ""
        if store is not None:
            hit = await self._cache_get(store, key)
            if hit is not None:
                self.totals.add(hit.call)
                return hit
        completion = await self._call(messages, tools, merged)
        self.totals.add(completion.call)
        if store is not None:
            await store.aput_json(f"{CACHE_PREFIX}/{key}.json", completion.model_dump(mode="json"))
        return completion

    async def _cache_get(self, store: Any, key: str) -> Completion | None:
        path = f"{CACHE_PREFIX}/{key}.json"
        started = time.perf_counter()
        try:
            data = await store.aget_json(path)
            done = Completion.model_validate(data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        original = done.call
        done.call = ModelCall(
            model=self.name, provider_model=self.spec.model, prompt_tokens=original.prompt_tokens,
            completion_tokens=original.completion_tokens, cost=None if original.cost is None else 0.0,
            latency_s=round(time.perf_counter() - started, 6), attempts=0, cached=True,
        )
        return done

    async def _call(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> Completion:
        litellm = _litellm()
        api_key = self._api_key()
        request: dict[str, Any] = {
            "model": resolve_env(self.spec.model),
            "messages": messages,
            "timeout": self.spec.timeout,
            "max_retries": 0,
            "num_retries": 0,
            "drop_params": True,
            **params,
        }
        if tools:
            request["tools"] = tools
        # "${INTERLEAF_API_BASE:-}" resolving to "" means the provider's default endpoint.
        api_base = resolve_env(self.spec.api_base) if self.spec.api_base else ""
        if api_base:
            request["api_base"] = api_base
        if api_key:
            request["api_key"] = api_key
        started = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            try:
                async with self._limit():
                    response = await litellm.acompletion(**request)
                break
            except Exception as exc:
                reason = self._scrub(f"{type(exc).__name__}: {exc}", api_key)
                if not _is_retryable(exc):
                    self.totals.failed_calls += 1
                    raise ModelCallError(f"model {self.name!r}: {reason}") from None
                if attempts > self.spec.max_retries:
                    self.totals.failed_calls += 1
                    raise ModelCallError(
                        f"model {self.name!r}: gave up after {attempts} attempts; last error: {reason}"
                    ) from None
                delay = self.backoff.delay(attempts - 1, self._rng, floor=_retry_after(exc))
                log.debug("model %s attempt %d failed (%s); retrying in %.2fs", self.name, attempts, reason, delay)
                await asyncio.sleep(delay)
        return self._completion(response, request["model"], attempts, time.perf_counter() - started)

    def _completion(self, response: Any, provider_model: str, attempts: int, seconds: float) -> Completion:
        choice = response.choices[0]
        message = choice.message
        calls = [
            ToolCallRequest(id=tc.id or f"call_{i}", name=tc.function.name or "", arguments=tc.function.arguments or "")
            for i, tc in enumerate(message.tool_calls or [])
        ]
        text = message.content or ""
        raw: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            raw["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        call = ModelCall(
            model=self.name,
            provider_model=provider_model,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            cost=float(cost) if isinstance(cost, (int, float)) else None,
            latency_s=round(seconds, 6),
            attempts=attempts,
        )
        return Completion(text=text, tool_calls=calls, finish_reason=choice.finish_reason, call=call, raw_message=raw)

    def api_key_env(self) -> list[str]:
        """Names of the environment variables the API key comes from (safe to show)."""
        return env_refs(self.spec.api_key or "")

    async def aclose(self) -> None:
        """Nothing to release: litellm owns its HTTP clients and shares them per process."""
        return None
