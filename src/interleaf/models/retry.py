"""What a failed model request means: retry it, give up on it, or suspect the endpoint.

litellm wraps every failure in its own exception classes, and not always faithfully: a
refused connection arrives as ``InternalServerError`` with ``status_code=500``, a body that
is not JSON as the same class, a gateway's 504 as ``Timeout``. :func:`classify` therefore
reads the exception's cause chain first (connect errors, client-side timeouts, unreadable
bodies) and only then the HTTP status. The result is a :class:`Failure`:

============================  ========  =============================  ======================
kind                          retried   counts toward a systemic stop  typical cause
============================  ========  =============================  ======================
``bad_request`` (400, 422..)  no        no                             this request's content
``auth`` (401, 402, 403)      no        yes, each request              bad or missing key
``not_found`` (404)           no        yes, each request              unknown model or path
``config``                    no        yes, each call                 unset key variable,
                                                                       unknown provider, no
                                                                       API key (not sent)
``rate_limit`` (429)          yes       no                             load
``transient`` (408/409/425)   yes       no                             load, races
``server_error`` (5xx)        yes       yes, once the call gives up    server trouble
``timeout``                   yes       yes, each request              a hanging endpoint
``unreachable``               yes       yes, each request              refused, DNS, no route
``broken_response``           yes       no                             truncated or non-JSON
``unknown``                   no        no                             anything else
============================  ========  =============================  ======================

Example:
    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> Backoff(initial=1.0, maximum=4.0).delay(0, random.Random(0), floor=30.0)
    4.0
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

FailureKind = Literal[
    "bad_request", "auth", "not_found", "config", "rate_limit", "transient", "server_error",
    "timeout", "unreachable", "broken_response", "unknown",
]

_RETRIED: frozenset[str] = frozenset(
    {"rate_limit", "transient", "server_error", "timeout", "unreachable", "broken_response"}
)
#: Kinds that say something about the endpoint (not about one request), counted per request.
_SYSTEMIC_PER_REQUEST: frozenset[str] = frozenset({"auth", "not_found", "config", "timeout", "unreachable"})
#: 5xx are often blips, so they count only when a call has spent its retries on them.
_SYSTEMIC_WHEN_GIVEN_UP: frozenset[str] = frozenset({"server_error"})
_TRANSIENT_STATUS = frozenset({408, 409, 425})
_AUTH_STATUS = frozenset({401, 402, 403})
#: What the provider SDKs say when they refuse to build a request without a key. litellm reports
#: it as a 500, so without this it would be retried as a server error that was never sent.
_NO_KEY = re.compile(
    r"missing credentials|api_key client option must be set|missing [a-z ]{0,40}api key", re.IGNORECASE
)


@dataclass(frozen=True)
class Failure:
    """A classified failed request."""

    kind: FailureKind
    status: int | None = None
    retry_after: float | None = None

    @property
    def retried(self) -> bool:
        """Whether another attempt may succeed."""
        return self.kind in _RETRIED

    @property
    def sent(self) -> bool:
        """Whether the failed request reached the endpoint: a ``config`` failure was never built, and an
        ``unreachable`` one never connected (refused, DNS, connect timeout), so neither is a request sent."""
        return self.kind not in ("config", "unreachable")

    @property
    def systemic_per_request(self) -> bool:
        """Whether each such request counts toward the endpoint's systemic-failure threshold."""
        return self.kind in _SYSTEMIC_PER_REQUEST

    @property
    def systemic_when_given_up(self) -> bool:
        """Whether a call that gave up on this kind counts (once) toward the threshold."""
        return self.kind in _SYSTEMIC_WHEN_GIVEN_UP


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff between attempts (seconds).

    The delay before retry ``n`` (0-based) is drawn from ``[c/2, c]`` with
    ``c = min(maximum, initial * factor**n)``; a server's ``Retry-After`` raises it to that
    value, but never past ``maximum``.
    """

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0

    def delay(self, retry: int, rng: random.Random, floor: float = 0.0) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**retry)
        return min(self.maximum, max(floor, rng.uniform(ceiling / 2, ceiling)))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _names(exc: BaseException) -> set[str]:
    """Qualified class names of everything in the cause chain (and their bases)."""
    out: set[str] = set()
    for e in _chain(exc):
        for cls in type(e).__mro__:
            out.add(f"{cls.__module__}.{cls.__qualname__}")
    return out


def parse_retry_after(value: Any, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait (delta seconds or an HTTP date)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` a failed request carried, if any (litellm keeps it in several places)."""
    for e in _chain(exc):
        sources = [getattr(e, "headers", None), getattr(getattr(e, "response", None), "headers", None),
                   getattr(e, "litellm_response_headers", None)]
        for headers in sources:
            if not headers:
                continue
            try:
                value = headers.get("retry-after") or headers.get("Retry-After")
            except AttributeError:
                continue
            seconds = parse_retry_after(value)
            if seconds is not None:
                return seconds
    return None


def _status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        status = getattr(e, "status_code", None)
        if isinstance(status, int):
            return status
        code = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(code, int):
            return code
    return None


def classify(exc: BaseException) -> Failure:
    """Classify the exception one request raised (see the table in the module docstring).

    >>> classify(TimeoutError()).kind
    'timeout'
    >>> classify(ConnectionRefusedError()).kind
    'unreachable'
    >>> classify(RuntimeError("Missing credentials. Please pass an `api_key`")).kind
    'config'
    """
    names = _names(exc)
    # The cause chain first: litellm reports these with made-up statuses (500, 408).
    if names & {"httpx.ConnectError", "httpx.ConnectTimeout", "builtins.ConnectionRefusedError",
                "socket.gaierror", "aiohttp.client_exceptions.ClientConnectorError"}:
        return Failure("unreachable")
    if names & {"httpx.TimeoutException", "asyncio.exceptions.TimeoutError", "builtins.TimeoutError",
                "aiohttp.client_exceptions.ServerTimeoutError"}:
        return Failure("timeout")
    if names & {"json.decoder.JSONDecodeError", "httpx.ReadError", "httpx.RemoteProtocolError",
                "aiohttp.client_exceptions.ClientPayloadError", "openai.APIResponseValidationError"}:
        return Failure("broken_response")
    if "litellm.exceptions.LiteLLMUnknownProvider" in names or "LLM Provider NOT provided" in str(exc):
        # litellm refused the model string itself: every call will fail the same way.
        return Failure("config")
    status = _status(exc)
    if status in (None, 500) and any(_NO_KEY.search(str(e)) for e in _chain(exc)):
        # The SDK refused to send without a key: no endpoint was asked, so it is this config's fault.
        return Failure("config")
    if "httpx.HTTPStatusError" not in names:
        # No HTTP answer behind a timeout or connection error: litellm's own timer, a dropped socket.
        if names & {"litellm.exceptions.Timeout", "openai.APITimeoutError"}:
            return Failure("timeout")
        if "openai.APIConnectionError" in names:
            return Failure("broken_response")
    if status is None:
        return Failure("unknown")
    if status in _AUTH_STATUS:
        return Failure("auth", status)
    if status == 404:
        return Failure("not_found", status)
    if status == 429:
        return Failure("rate_limit", status, retry_after(exc))
    if status in _TRANSIENT_STATUS:
        return Failure("transient", status, retry_after(exc))
    if status >= 500:
        return Failure("server_error", status, retry_after(exc))
    if 400 <= status < 500:
        return Failure("bad_request", status)
    return Failure("unknown", status)
