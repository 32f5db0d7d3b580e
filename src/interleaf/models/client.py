"""The one door to MLLMs: a litellm client per YAML ``models:`` entry.

Per call it resolves the API key from the environment (never stored), waits for a slot
under the model's concurrency cap, sends the request through ``litellm.acompletion`` and
retries what another attempt can fix (429, 408/409/425, 5xx, timeouts, unreachable
endpoints, broken answers) with jittered exponential backoff that honours ``Retry-After``.
400/422 (the request's own content, a context that is too long), 401/402/403 and 404 are
never retried. This is the only retry layer: litellm's ``num_retries`` is 0 and the OpenAI
SDK's ``max_retries`` is 0, so attempts never multiply. See :mod:`interleaf.models.retry`.

Failures that say the *endpoint* is broken (refused, unreachable, timing out, bad key,
unknown model, 5xx after the retries) are reported to the process-wide
:mod:`~interleaf.models.health` registry; after ``stop_after_failures`` in a row the client
raises :class:`~interleaf.errors.SystemicFailure`, and every later call to that endpoint
raises it at once without sending anything.

Every call is counted once, by the rule of :meth:`interleaf.run.totals.RunTotals.add_call`:
the client records a :class:`~interleaf.state.ModelCall` in its own :attr:`ModelClient.ledger`
and in the ledgers of the current context (:func:`~interleaf.run.totals.record_call`), for an
answer (requests sent, tokens, cost from litellm's cost map or None), a cache hit
(``cached=True``) and a call that gave up (``error`` set, ``attempts`` = requests sent).

Example (no request is sent: the key variable is unset, so the call gives up before sending)::

    >>> import asyncio, os
    >>> os.environ.pop("DOC_UNSET_KEY", None)
    >>> client = ModelClient("judge", ModelSpec(model="openai/gpt-4o", api_key="${DOC_UNSET_KEY}"))
    >>> try:
    ...     asyncio.run(client.complete([{"role": "user", "content": "hi"}]))
    ... except ModelCallError as exc:
    ...     print(exc.kind, client.ledger.totals.failed_calls, client.ledger.totals.calls)
    config 1 0
    >>> reset_endpoint_health()
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from interleaf.errors import SystemicFailure
from interleaf.graphs.spec import ModelSpec, env_refs, resolve_env
from interleaf.models.health import EndpointKey, HealthRegistry, endpoint_health, reset_endpoint_health
from interleaf.models.ratelimit import current_request_gate, shared_limiter
from interleaf.models.retry import Backoff, Failure, FailureKind, classify
from interleaf.run.totals import CallLedger, record_call
from interleaf.state import ModelCall

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore

__all__ = [
    "Backoff", "Completion", "ModelCallError", "ModelClient", "ToolCallRequest", "cache_key", "close_litellm_logging",
    "reset_endpoint_health",
]

log = logging.getLogger(__name__)

#: Loggers that print every request at INFO (and cost CPU doing it).
_NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "openai._base_client", "LiteLLM", "LiteLLM Router")
#: Retried kinds of a normal call (a probe retries fewer, see :meth:`ModelClient.probe_client`).
_RETRIED: frozenset[FailureKind] = frozenset(
    {"rate_limit", "transient", "server_error", "timeout", "unreachable", "broken_response"}
)
#: Seconds past ``timeout`` after which a request litellm failed to time out is abandoned.
_TIMEOUT_GRACE = 5.0


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


class ModelCallError(Exception):
    """A completion failed for good (after retries, or a non-retryable error).

    ``kind`` is the :data:`~interleaf.models.retry.FailureKind` of the last failure (None when
    unknown), ``status`` its HTTP status, ``attempts`` the requests sent. ``reason`` never
    contains the API key.
    """

    def __init__(self, reason: str, *, kind: FailureKind | None = None, status: int | None = None,
                 attempts: int = 0):
        self.reason = reason
        self.kind = kind
        self.status = status
        self.attempts = attempts
        super().__init__(reason)


class _Unusable(Exception):
    """The endpoint answered, but not with a chat completion we can read."""


_litellm_ready = False


def use_bundled_price_map() -> None:
    """Make litellm read its bundled price map instead of fetching one when it is imported.

    The bundled map keeps cost accounting reproducible and the import offline: without it,
    importing litellm fetches a price map over the network and, offline, starts a retry thread
    (in a fork server, that thread would be copied into every worker). A user's own
    ``LITELLM_LOCAL_MODEL_COST_MAP`` wins.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _litellm() -> Any:
    """Import litellm once, offline-safe and quiet."""
    global _litellm_ready
    use_bundled_price_map()
    import litellm

    if not _litellm_ready:
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        _litellm_ready = True
    return litellm


def cache_key(model: str, params: dict[str, Any], messages: list[dict[str, Any]],
              tools: list[dict[str, Any]] | None, tag: str) -> str:
    """Content hash of everything that determines an answer (never the API key or base URL).

    >>> len(cache_key("openai/gpt-4o", {}, [{"role": "user", "content": "hi"}], None, "t"))
    64
    """
    blob = json.dumps(
        {"model": model, "params": params, "messages": messages, "tools": tools or [], "tag": tag},
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


async def close_litellm_logging(timeout: float = 5.0) -> None:
    """Let litellm's background logging worker finish and stop it, before this event loop closes.

    litellm keeps one logging worker per process, bound to the loop that used it first; a
    later ``asyncio.run`` (a second invocation in one process) otherwise inherits its tasks
    from a closed loop and prints "Task was destroyed but it is pending!". No-op when litellm
    was never imported.
    """
    module = sys.modules.get("litellm.litellm_core_utils.logging_worker")
    worker = getattr(module, "GLOBAL_LOGGING_WORKER", None)
    if worker is None:
        return
    try:
        await asyncio.wait_for(worker.flush(), timeout)
    except (TimeoutError, RuntimeError) as exc:  # a stuck callback must not hold up the run's end
        log.debug("litellm logging worker did not flush: %s", exc)
    await worker.stop(discard_pending=True, timeout=timeout)


def _part(total: int, parts: int) -> int:
    """One process's part of a cap shared by ``parts`` processes (at least 1).

    >>> _part(16, 3), _part(2, 4)
    (5, 1)
    """
    return max(1, total // parts)


def _describe(failure: Failure) -> str:
    return failure.kind if failure.status is None else f"{failure.kind} {failure.status}"


class ModelClient:
    """Completion calls to one named model (one ``models:`` entry of a graph).

    ``cache`` is an object store already scoped to the response cache (the run store's
    ``cache/responses`` child); answers are kept there as ``<sha>.json`` and a repeated
    request is served from it without a network call. Give it only for ``cache: true``.
    """

    def __init__(self, name: str, spec: ModelSpec, *, cache: ObjectStore | None = None,
                 processes: int = 1):
        #: How many processes share this model's caps (``max_concurrency``, ``rpm``, ``tpm`` are
        #: totals): each process gets its part.
        self.processes = max(1, processes)
        if self.processes > 1:
            spec = spec.model_copy(update={"max_concurrency": _part(spec.max_concurrency, self.processes)})
        self.name = name
        self.spec = spec
        self.cache = cache
        self.rate = shared_limiter((name, spec.model, spec.api_base), spec.rpm, spec.tpm, parts=self.processes)
        self.ledger = CallLedger()
        self.backoff = Backoff()
        #: Failure kinds worth another attempt (a preflight probe narrows them).
        self.retried: frozenset[FailureKind] = _RETRIED
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._rng = random.Random()
        self._providers: dict[tuple[str, str | None], str | None] = {}

    def __repr__(self) -> str:
        return f"ModelClient({self.name!r}, model={self.spec.model!r})"

    def probe_client(self, *, timeout: float = 15.0) -> ModelClient:
        """A copy for a preflight probe: no cache, a short timeout, one quick retry on 429/5xx/a
        broken answer only (a refused connection or a timeout fails it at once)."""
        spec = self.spec.model_copy(update={"timeout": min(self.spec.timeout, timeout), "max_retries": 1,
                                            "cache": False})
        probe = ModelClient(self.name, spec)
        probe.backoff = Backoff(initial=0.2, maximum=1.0)
        probe.retried = frozenset({"rate_limit", "transient", "server_error", "broken_response"})
        return probe

    # -- what to call -----------------------------------------------------------------------
    def endpoint(self) -> EndpointKey:
        """The resolved endpoint of this model; raises :class:`ModelCallError` (kind ``config``)
        when the model string or ``api_base`` needs an unset environment variable."""
        try:
            model = resolve_env(self.spec.model)
            # "${INTERLEAF_API_BASE:-}" resolving to "" means the provider's default endpoint.
            base = resolve_env(self.spec.api_base) if self.spec.api_base else ""
        except KeyError as exc:
            raise ModelCallError(
                f"model {self.name!r}: needs environment variable {exc.args[0]!r}, which is not set", kind="config"
            ) from None
        return EndpointKey(model, base or None)

    def api_key_env(self) -> list[str]:
        """Names of the environment variables the API key comes from (safe to show)."""
        return env_refs(self.spec.api_key or "")

    def _api_key(self) -> str | None:
        if self.spec.api_key is None:
            return None
        try:
            return resolve_env(self.spec.api_key) or None
        except KeyError as exc:
            raise ModelCallError(
                f"model {self.name!r}: api_key needs environment variable {exc.args[0]!r}, which is not set",
                kind="config",
            ) from None

    def _provider_problem(self, litellm: Any, key: EndpointKey) -> str | None:
        """Why litellm cannot route this model string (checked once; no request is sent)."""
        cached = (key.provider_model, key.api_base)
        if cached not in self._providers:
            try:
                litellm.get_llm_provider(model=key.provider_model, api_base=key.api_base)
                self._providers[cached] = None
            except Exception as exc:  # litellm raises BadRequestError or ValueError for unknown providers
                self._providers[cached] = f"litellm cannot route model {key.provider_model!r}: {exc}"[:500]
        return self._providers[cached]

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._limits.get(loop)
        if sem is None:
            sem = asyncio.Semaphore(self.spec.max_concurrency)
            self._limits[loop] = sem
        return sem

    @staticmethod
    def _scrub(text: str, secret: str | None) -> str:
        # A placeholder like "x" is no secret, and replacing it would garble every word with an x.
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
        return text[:500]

    def _record(self, call: ModelCall) -> None:
        self.ledger.record(call)
        record_call(call)

    # -- calling ----------------------------------------------------------------------------
    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
        cache_tag: str = "",
    ) -> Completion:
        """One chat completion.

        Raises :class:`ModelCallError` when this call cannot get an answer, and
        :class:`~interleaf.errors.SystemicFailure` when the endpoint is down.
        """
        merged = {**self.spec.params, **(params or {})}
        key = ""
        if self.cache is not None:
            key = cache_key(self.spec.model, merged, messages, tools, cache_tag)
            hit = await self._cache_get(key)
            if hit is not None:
                self._record(hit.call)
                return hit
        completion = await self._call(messages, tools, merged)
        if self.cache is not None:
            await self.cache.aput_json(f"{key}.json", completion.model_dump(mode="json"))
        return completion

    async def _cache_get(self, key: str) -> Completion | None:
        assert self.cache is not None
        path = f"{key}.json"
        started = time.perf_counter()
        try:
            data = await self.cache.aget_json(path)
            done = Completion.model_validate(data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        original = done.call
        done.call = ModelCall(
            model=self.name, provider_model=original.provider_model, prompt_tokens=original.prompt_tokens,
            completion_tokens=original.completion_tokens, cost=None if original.cost is None else 0.0,
            latency_s=round(time.perf_counter() - started, 6), attempts=0, cached=True,
        )
        return done

    async def _call(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> Completion:
        started = time.perf_counter()
        health = endpoint_health()
        # "attempts": requests that reached the network (what the ledger counts); "tries": every try,
        # including connections that never got through (what the retry budget counts).
        state: dict[str, Any] = {"attempts": 0, "tries": 0, "provider_model": self.spec.model, "secret": None}
        try:
            return await self._attempts(messages, tools, params, health, state, started)
        except BaseException as exc:
            # Every call that gave up is counted, with the requests it really sent.
            if isinstance(exc, ModelCallError):
                error = exc.reason
            elif isinstance(exc, SystemicFailure):
                error = f"endpoint down: {exc.error}"
            elif isinstance(exc, asyncio.CancelledError):
                error = "cancelled"
            else:
                error = self._scrub(f"{type(exc).__name__}: {exc}", state["secret"])
            self._record(ModelCall(
                model=self.name, provider_model=state["provider_model"],
                latency_s=round(time.perf_counter() - started, 6), attempts=state["attempts"], error=error or "failed",
            ))
            raise

    async def _attempts(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any],
        health: HealthRegistry, state: dict[str, Any], started: float,
    ) -> Completion:
        litellm = _litellm()
        threshold = self.spec.stop_after_failures
        try:
            key = self.endpoint()
        except ModelCallError as exc:
            # Without a resolved model string the spec's own text names the endpoint.
            key = EndpointKey(self.spec.model, self.spec.api_base)
            raise self._count(health, key, exc, threshold) from None
        state["provider_model"] = key.provider_model
        down = health.down(key)
        if down is not None:
            raise down
        try:
            api_key = self._api_key()
        except ModelCallError as exc:
            raise self._count(health, key, exc, threshold) from None
        state["secret"] = api_key
        problem = self._provider_problem(litellm, key)
        if problem is not None:
            raise self._count(health, key, ModelCallError(f"model {self.name!r}: {problem}", kind="config"), threshold)
        request: dict[str, Any] = {
            "model": key.provider_model, "messages": messages, "timeout": self.spec.timeout,
            "max_retries": 0, "num_retries": 0, "drop_params": True, **params,
        }
        if tools:
            request["tools"] = tools
        if key.api_base:
            request["api_base"] = key.api_base
        if api_key:
            request["api_key"] = api_key
        gate = current_request_gate()
        while True:
            error: BaseException | None = None
            async with self._limit():
                # Checked again after queueing for a slot: the endpoint may have gone down meanwhile.
                down = health.down(key)
                if down is not None:
                    raise down
                await self.rate.acquire()
                if gate is not None:
                    await gate.before(self.name)
                state["attempts"] += 1
                state["tries"] += 1
                try:
                    async with asyncio.timeout(self.spec.timeout + _TIMEOUT_GRACE):
                        response = await litellm.acompletion(**request)
                    completion = self._completion(response, key.provider_model, state["attempts"],
                                                  time.perf_counter() - started)
                except Exception as exc:  # classified below; CancelledError is not an Exception
                    error = exc
            if error is None:
                health.success(key)
                tokens = (completion.call.prompt_tokens or 0) + (completion.call.completion_tokens or 0)
                self.rate.used(tokens)
                if gate is not None:
                    await gate.after(self.name, tokens)
                self._record(completion.call)
                return completion
            await self._after_failure(error, key, health, state, api_key, threshold)

    async def _after_failure(self, error: BaseException, key: EndpointKey, health: HealthRegistry,
                             state: dict[str, Any],
                             api_key: str | None, threshold: int) -> None:
        """Count a failed attempt, then sleep before the next one or raise."""
        failure = Failure("broken_response") if isinstance(error, _Unusable) else classify(error)
        if not failure.sent:
            # Never reached the endpoint (no key; connection refused): the ledger counts no request.
            state["attempts"] -= 1
        attempts = state["tries"]
        reason = self._scrub(f"[{_describe(failure)}] {type(error).__name__}: {error}", api_key)
        if failure.kind == "config" and api_key is None:
            reason = f"{self._no_key_hint(key)}; {reason}"
        if failure.systemic_per_request:
            tripped = health.failure(key, model=self.name, error=reason, threshold=threshold)
            if tripped is not None:
                raise tripped from None
        retry = failure.kind in self.retried and failure.retried
        if not retry or attempts > self.spec.max_retries:
            if failure.systemic_when_given_up:
                tripped = health.failure(key, model=self.name, error=reason, threshold=threshold)
                if tripped is not None:
                    raise tripped from None
            text = f"model {self.name!r}: {reason}" if not retry else (
                f"model {self.name!r}: gave up after {attempts} attempt{'s' if attempts != 1 else ''}; "
                f"last error: {reason}")
            raise ModelCallError(text, kind=failure.kind, status=failure.status, attempts=state["attempts"]) from None
        delay = self.backoff.delay(attempts - 1, self._rng, floor=failure.retry_after or 0.0)
        log.debug("model %s attempt %d failed (%s); retrying in %.2fs", self.name, attempts, reason, delay)
        await asyncio.sleep(delay)

    def _no_key_hint(self, key: EndpointKey) -> str:
        """What to set when litellm refuses to send without a key (names variables, never values)."""
        try:
            missing = list(_litellm().validate_environment(model=key.provider_model, api_base=key.api_base)
                           .get("missing_keys") or [])
        except Exception:  # an unknown provider has no list; the message still says what to do
            missing = []
        refs = self.api_key_env()
        given = f"api_key {self.spec.api_key!r} resolves to nothing" if refs else "no api_key in the spec"
        wanted = f"set {' or '.join(missing)}" if missing else "set the provider's key variable"
        # litellm's openai provider needs some key even for a server that checks none (any value works there).
        return f"no API key ({given}): {wanted}, or give api_key: ${{VAR}}"

    def _count(self, health: HealthRegistry, key: EndpointKey, exc: ModelCallError, threshold: int) -> BaseException:
        """A configuration problem (no request sent) counts toward the stop like a 401 would."""
        tripped = health.failure(key, model=self.name, error=exc.reason, threshold=threshold)
        return tripped if tripped is not None else exc

    def _completion(self, response: Any, provider_model: str, attempts: int, seconds: float) -> Completion:
        try:
            choice = response.choices[0]
            message = choice.message
            calls = [
                ToolCallRequest(id=tc.id or f"call_{i}", name=tc.function.name or "",
                                arguments=tc.function.arguments or "")
                for i, tc in enumerate(message.tool_calls or [])
            ]
            text = message.content or ""
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise _Unusable(f"the answer is not a chat completion ({type(exc).__name__}: {exc})") from None
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

    async def aclose(self) -> None:
        """Nothing to release: litellm owns its HTTP clients and shares them per process."""
        return None
