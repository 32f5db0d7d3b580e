"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1.

The engine reaches it through litellm exactly as it reaches a real provider
(``model: openai/<role-name>``, ``api_base: <sim.base_url>``). What it answers depends on
the requested model name:

============  ==========================================================================
contains      answer
============  ==========================================================================
``judge``     one ``[[dim, reason, \\boxed{n}]]`` line per ``DIMENSIONS:`` entry of the prompt:
              the simulator's own answers scored from their planted defects, with reasons
              that name them (or say why a clean answer is good); other text at random,
              with reasons that fit the score
``expand``    the seed plus a sentence that sets up the situation, and a ``SITUATION: ...`` line
``user``      a follow-up building on the last answer: refine, edit an earlier image, ask
              why, change one detail, or complain about what went wrong in it
``malformed`` a tool call with broken JSON arguments; repaired after an error message,
              unless the name also contains ``always``
``tool``      native ``tool_calls`` for the offered tools, then a final answer
otherwise     an assistant answer grounded in the first question's subject, each
              ``<Image, ...>`` marker right after a sentence saying what it shows
============  ==========================================================================

The texts come from templates (:mod:`interleaf.testing.sim_text`). A share of the assistant's
answers carries planted defects (``defect_rates``; kinds and defaults in
:mod:`interleaf.datasets.sim_truth`): a missing image, an image prompt contradicting the text,
a contradiction with an earlier turn, an off-topic remark, a truncated answer (sent with
``finish_reason: length``), unsafe content. The truth is never sent or stored: it is read
back from an answer's content by :func:`interleaf.datasets.sim_truth.planted_defects`, which
the judge and the pruning-quality report (:mod:`interleaf.datasets.pruning_quality`) share.
``judge_noise`` makes that share of judge lines wrong on purpose.

Answers are deterministic functions of (seed, model, request messages and sampling
params), so reruns give identical trees. Faults (429, 500, timeout, malformed JSON,
truncated body/stream) are drawn per request, so a retried request can succeed.
Counters: total requests, per model, and the peak number of requests in flight.

Endpoint problems a run must survive or stop on can be switched on too:

- ``api_key``: a request whose ``Authorization: Bearer ...`` differs gets OpenAI's 401;
- ``models``: a request for another model name gets OpenAI's 404 ``model_not_found``;
- ``hang_rate``: that share of requests never answers until the client gives up;
- a :class:`Rule` may answer with any status (``SimAnswer(status=403)``, a 429 with
  ``headers={"Retry-After": "1"}``).

``GET /stats`` (and :meth:`Simulator.stats`) tells what arrived, for checking a client's
own accounting against the server's::

    >>> import httpx
    >>> with Simulator(api_key="sk-right", models=["judge"]) as sim:
    ...     ok = httpx.post(f"{sim.base_url}/chat/completions", headers={"Authorization": "Bearer sk-right"},
    ...                     json={"model": "judge", "messages": [{"role": "user", "content": "hi"}]})
    ...     bad = httpx.post(f"{sim.base_url}/chat/completions", headers={"Authorization": "Bearer sk-wrong"},
    ...                      json={"model": "judge", "messages": [{"role": "user", "content": "hi"}]})
    ...     (ok.status_code, bad.status_code, httpx.get(f"http://127.0.0.1:{sim.port}/stats").json())
    (200, 401, {'requests': 2, 'by_model': {'judge': 2}, 'by_status': {'200': 1, '401': 1}, 'hung': 0})
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

from aiohttp import web

from interleaf.datasets.sim_truth import DEFAULT_DEFECT_RATES, DEFECT_KINDS, validate_rates
from interleaf.models.judge_format import DimensionScale, dimensions_in_prompt, render_line
from interleaf.testing.sim_text import (
    AnswerPlan,
    conversation,
    expand,
    follow_up,
    generic_reason,
    images_in,
    judge_lines,
    plan_answer,
    render_markers,
    render_placeholders,
    text_of,
)

FAULT_KINDS: tuple[str, ...] = ("429", "500", "timeout", "malformed_json", "truncated_stream")

#: Default situation tags of the expansion role (a prompt may offer its own with ``SITUATIONS: a | b``).
SITUATIONS: tuple[str, ...] = (
    "image generation with iterative refinement",
    "image editing across turns",
    "visual understanding and question answering",
    "interleaved step-by-step explanation",
    "story or scene continuation",
)

_PLACEHOLDER = re.compile(r"\[image \d+\]")
_REPAIR_HINT = "invalid arguments"
_CREATED = 1_700_000_000


@dataclass(frozen=True)
class SimOptions:
    """What shapes the scripted answers: the server's ``seed``, the planted ``defect_rates`` (a
    complete mapping, see :data:`~interleaf.datasets.sim_truth.DEFAULT_DEFECT_RATES`) and the
    judge's ``judge_noise`` (share of judge lines scored wrong on purpose)."""

    seed: int = 0
    defect_rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DEFECT_RATES))
    judge_noise: float = 0.0


@dataclass
class SimRequest:
    """A parsed chat-completions request as the rules see it."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    body: dict[str, Any]
    rng: random.Random
    options: SimOptions = field(default_factory=SimOptions)

    def texts(self, role: str | None = None) -> list[str]:
        out = []
        for m in self.messages:
            if role is not None and m.get("role") != role:
                continue
            out.append(text_of(m.get("content")))
        return out

    @property
    def last_user_text(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""

    @property
    def image_count(self) -> int:
        return sum(images_in(m.get("content")) for m in self.messages)

    @property
    def last_role(self) -> str:
        return str(self.messages[-1].get("role", "")) if self.messages else ""

    @property
    def plan_seed(self) -> int:
        """Fixed by the request up to its last real user message (not the tool rounds or re-asks
        after it), so every round of one answer plans the same answer."""
        conv_end = 0
        for i, m in enumerate(self.messages):
            if m.get("role") == "user" and not text_of(m.get("content")).lstrip().startswith(
                    ("Images in your previous answer", "These images could not be made")):
                conv_end = i + 1
        body = {**self.body, "messages": _without_image_data(self.messages[:conv_end])}
        return _seed_for(self.options.seed, self.model, body)

    @property
    def text_rng(self) -> random.Random:
        """A generator fixed by the request's text (image bytes left out), for the scripted roles:
        images from a pipeline may differ in their last bits between runs, the words must not."""
        body = {**self.body, "messages": _without_image_data(self.messages)}
        return random.Random(_seed_for(self.options.seed, self.model, body))


def _without_image_data(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [{"type": "image_url"} if isinstance(p, dict) and p.get("type") == "image_url" else p
                       for p in content]
        out.append({**m, "content": content})
    return out


@dataclass
class SimAnswer:
    """What a rule answers: text and/or tool calls (``arguments`` already JSON text).

    ``status`` other than 200 answers with an OpenAI-shaped error instead (``content`` is its
    message), with ``headers`` added, e.g. ``SimAnswer(status=429, headers={"Retry-After": "2"})``.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Rule:
    """A custom answer for requests whose model name contains ``model`` (checked before built-ins)."""

    model: str
    reply: Callable[[SimRequest], SimAnswer]


def answer_assistant(req: SimRequest) -> SimAnswer:
    """An interleaved answer with ``<Image, ...>`` markers (see :mod:`interleaf.testing.sim_text`)."""
    conv = conversation(req.messages)
    plan = plan_answer(conv, random.Random(req.plan_seed), req.options.defect_rates, req.plan_seed)
    # A truncated answer ends the way a real one cut at the token limit does.
    return SimAnswer(content=render_markers(plan), finish_reason="length" if "truncated" in plan.defects else None)


def answer_expansion(req: SimRequest) -> SimAnswer:
    """The seed rewritten into a multi-turn-ready first question, then ``SITUATION: ...``."""
    text = "\n".join(req.texts())
    offered = re.findall(r"^SITUATIONS:\s*(.+)$", text, re.MULTILINE)
    options = [s.strip() for s in offered[-1].split("|") if s.strip()] if offered else list(SITUATIONS)
    rng = req.text_rng
    answer = expand(req.last_user_text, options, rng)
    if "\nSITUATION: " not in answer:
        # A level rewrite (no situations asked for) still ends with the line the parser strips.
        answer += f"\nSITUATION: {rng.choice(options)}"
    return SimAnswer(content=answer)


def answer_follow_up(req: SimRequest) -> SimAnswer:
    """The user's next message, building on the last answer (see :func:`~interleaf.testing.sim_text.follow_up`)."""
    return SimAnswer(content=follow_up(req.last_user_text, req.text_rng))


def answer_judge(req: SimRequest) -> SimAnswer:
    """One ``[[dim, reason, \\boxed{n}]]`` line per ``DIMENSIONS:`` entry.

    Simulator answers are scored from their planted defects (clean ones at the top of every
    scale, with the reason why); anything else gets random scores with reasons that fit them.
    """
    rng = req.rng
    dims = dimensions_in_prompt("\n".join(req.texts()))
    if not dims:
        value = rng.randint(1, 10)
        return SimAnswer(content=render_line("overall", generic_reason("overall", value, DimensionScale(
            "overall", 1, 10)), value))
    judged = next((t for t in req.texts("user") if "=== " in t), "")
    known = judge_lines(judged, dims, rng, noise=req.options.judge_noise, noise_key=req.options.seed)
    if known is not None:
        return SimAnswer(content=known)
    lines = []
    for d in dims:
        # Drawn in the order earlier versions drew (a reason, then the score), so runs judged
        # with this fallback keep their scores.
        rng.random()
        value = rng.randint(d.low, d.high)
        lines.append(render_line(d.name, generic_reason(d.name, value, d), value))
    return SimAnswer(content="\n".join(lines))


def _fake_arguments(schema: dict[str, Any], caption: str, image_count: int) -> dict[str, Any]:
    """Arguments for a tool schema: every free-text field gets the image's caption."""
    args: dict[str, Any] = {}
    props = schema.get("properties", {}) or {}
    for name, prop in props.items():
        kind = prop.get("type")
        if "enum" in prop:
            args[name] = prop["enum"][0]
        elif name == "image":
            args[name] = f"image {max(1, image_count)}"
        elif kind == "string" or kind is None:
            args[name] = caption
        elif kind == "integer":
            args[name] = int(prop.get("minimum", 1))
        elif kind == "number":
            args[name] = float(prop.get("minimum", 0.5))
        elif kind == "boolean":
            args[name] = True
    return args


def _last_round_results(req: SimRequest) -> list[dict[str, Any]]:
    """The tool results answering the last assistant tool-call message (earlier, repaired rounds left out)."""
    start = max((i for i, m in enumerate(req.messages) if m.get("role") == "assistant" and m.get("tool_calls")),
                default=-1)
    results = []
    for m in req.messages[start + 1:]:
        if m.get("role") != "tool":
            continue
        text = text_of(m.get("content"))
        try:
            value = json.loads(text)
        except ValueError:
            value = {"error": text}
        results.append(value if isinstance(value, dict) else {"result": value})
    return results


def _tool_rounds(req: SimRequest) -> int:
    """Assistant tool-call messages since the last user message."""
    rounds = 0
    for m in reversed(req.messages):
        if m.get("role") == "user":
            break
        if m.get("role") == "assistant" and m.get("tool_calls"):
            rounds += 1
    return rounds


def _native_plan(req: SimRequest) -> tuple[AnswerPlan, list[str]]:
    """The answer a tool-using model plans, and the caption each offered tool (up to two) is called with."""
    conv = conversation(req.messages)
    plan = plan_answer(conv, random.Random(req.plan_seed), req.options.defect_rates, req.plan_seed, native=True)
    planned = plan.planned_captions()
    fallback = f"{plan.subject.phrase}, {plan.style} style"
    captions = [planned[i] if i < len(planned) else fallback for i in range(len(req.tools[:2]))] if planned else []
    return plan, captions


def _final_after_tools(req: SimRequest) -> SimAnswer:
    plan, captions = _native_plan(req)
    results: list[tuple[str | None, str]] = []
    for i, r in enumerate(_last_round_results(req)):
        placeholder = r.get("placeholder")
        ok = isinstance(placeholder, str) and _PLACEHOLDER.fullmatch(placeholder) is not None
        results.append((placeholder if ok else None, captions[i] if i < len(captions) else ""))
    return SimAnswer(content=render_placeholders(plan, results), finish_reason="stop")


def _tool_calls(req: SimRequest, broken: bool) -> SimAnswer:
    plan, captions = _native_plan(req)
    if not captions:
        # Nothing to picture (a "why" question): answer in words straight away.
        return SimAnswer(content=render_placeholders(plan, []), finish_reason="stop")
    calls = []
    for i, (tool, caption) in enumerate(zip(req.tools[:2], captions, strict=False)):
        fn = tool.get("function", {})
        args = _fake_arguments(fn.get("parameters", {}), caption, req.image_count)
        text = json.dumps(args)
        if broken:
            text = text[: max(1, len(text) // 2)]
        digest = hashlib.sha256(f"{fn.get('name')}|{i}|{text}".encode()).hexdigest()[:12]
        calls.append({"id": f"call_{digest}", "type": "function",
                      "function": {"name": fn.get("name", ""), "arguments": text}})
    return SimAnswer(content=None, tool_calls=calls, finish_reason="tool_calls")


def answer_tools(req: SimRequest) -> SimAnswer:
    if not req.tools:
        return answer_assistant(req)
    if req.last_role == "tool":
        return _final_after_tools(req)
    return _tool_calls(req, broken=False)


def answer_malformed(req: SimRequest) -> SimAnswer:
    if not req.tools:
        return SimAnswer(content='{"answer": "unterminated')
    repairing = any(_REPAIR_HINT in t.lower() for t in req.texts("tool") + req.texts("user"))
    if repairing and "always" not in req.model.lower():
        # First round was broken, the second (repaired) round ran: now answer.
        return _final_after_tools(req) if _tool_rounds(req) >= 2 else _tool_calls(req, broken=False)
    return _tool_calls(req, broken=True)


BUILTIN_RULES: tuple[tuple[str, Callable[[SimRequest], SimAnswer]], ...] = (
    ("judge", answer_judge),
    ("expand", answer_expansion),
    ("user", answer_follow_up),
    ("malformed", answer_malformed),
    ("tool", answer_tools),
)


def _seed_for(seed: int, model: str, body: dict[str, Any]) -> int:
    basis = {
        "seed": seed,
        "model": model,
        "messages": body.get("messages", []),
        "tools": [t.get("function", {}).get("name") for t in body.get("tools") or []],
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "request_seed": body.get("seed"),
    }
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _usage(req: SimRequest, answer: SimAnswer) -> dict[str, int]:
    prompt = sum(len(t) for t in req.texts()) // 4 + 85 * req.image_count + 8 * len(req.messages)
    out_text = (answer.content or "") + "".join(c["function"]["arguments"] for c in answer.tool_calls)
    completion = max(1, len(out_text) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
#: How often a hung request looks whether its client has given up (seconds).
_HANG_POLL = 0.01


def error_body(status: int, message: str, *, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-shaped error body (``{"error": {"message", "type", "param", "code"}}``).

    >>> error_body(404, "no such model")["error"]["code"]
    'model_not_found'
    """
    kind, default_code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error",
                                                    None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code or default_code}}


def _unit_draw(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts`` (the same request draws the same number)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Simulator:
    """The simulator server, run on a background thread; use as a context manager.

    Options beyond the scripted answers (all changeable later with :meth:`configure`):

    - ``latency``: seconds every chat request waits before its answer;
    - ``fault_rate`` / ``faults``: that share of requests gets one of the fault kinds;
    - ``api_key``: when set, a request without ``Authorization: Bearer <api_key>`` gets 401;
    - ``models``: when set, a request for a model name not in it gets 404 ``model_not_found``;
    - ``hang_rate``: that share of requests never answers (until the client closes the
      connection). The draw is fixed by the simulator's ``seed``, the request (as for its
      answer) and how often that same request arrived before, so a run is repeatable and a
      retry of a hung request draws afresh.

    Example::

        with Simulator(api_key="sk-test", hang_rate=0.1) as sim:
            ...  # point a model at sim.base_url
            print(sim.stats()["hung"])
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Iterable[str | int] = FAULT_KINDS,
        seed: int = 0,
        rules: Iterable[Rule] = (),
        timeout_delay: float = 30.0,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        hang_rate: float = 0.0,
        defect_rates: Mapping[str, float] | None = None,
        judge_noise: float = 0.0,
    ):
        self.host = host
        self.port = port
        self.seed = seed
        self.rules: list[Rule] = list(rules)
        self.timeout_delay = timeout_delay
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults: tuple[str, ...] = ()
        self.api_key: str | None = None
        self.models: frozenset[str] | None = None
        self.hang_rate = 0.0
        self.defect_rates: dict[str, float] = dict(DEFAULT_DEFECT_RATES)
        self.judge_noise = 0.0
        self.configure(latency=latency, fault_rate=fault_rate, faults=faults, api_key=api_key, models=models,
                       hang_rate=hang_rate, defect_rates=defect_rates, judge_noise=judge_noise)
        self._lock = threading.Lock()
        self._fault_rng = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping = False
        self.reset_counters()

    # -- configuration and counters ---------------------------------------------------------
    def configure(self, *, latency: float | None = None, fault_rate: float | None = None,
                  faults: Iterable[str | int] | None = None,
                  api_key: str | EllipsisType | None = ...,
                  models: Iterable[str] | EllipsisType | None = ...,
                  hang_rate: float | None = None,
                  defect_rates: Mapping[str, float] | None = None,
                  judge_noise: float | None = None) -> None:
        """Change latency, fault injection, the required key, the served models, the hang rate,
        the planted defect rates or the judge's noise while running. ``api_key=None`` /
        ``models=None`` switch those checks off; leaving an argument out keeps its current value.

        ``defect_rates`` is complete: kinds it does not name get rate 0 (``{}`` plants none;
        :data:`~interleaf.datasets.sim_truth.DEFAULT_DEFECT_RATES` are the defaults)."""
        if latency is not None:
            if latency < 0:
                raise ValueError("latency must be >= 0")
            self.latency = latency
        if fault_rate is not None:
            if not 0.0 <= fault_rate <= 1.0:
                raise ValueError("fault_rate must be within [0, 1]")
            self.fault_rate = fault_rate
        if faults is not None:
            kinds = tuple(str(f) for f in faults)
            unknown = sorted(set(kinds) - set(FAULT_KINDS))
            if unknown or not kinds:
                raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
            self.faults = kinds
        if hang_rate is not None:
            if not 0.0 <= hang_rate <= 1.0:
                raise ValueError("hang_rate must be within [0, 1]")
            self.hang_rate = hang_rate
        if defect_rates is not None:
            self.defect_rates = validate_rates(defect_rates)
        if judge_noise is not None:
            if not 0.0 <= judge_noise <= 1.0:
                raise ValueError("judge_noise must be within [0, 1]")
            self.judge_noise = judge_noise
        if not isinstance(api_key, EllipsisType):
            if api_key is not None and not api_key:
                raise ValueError("api_key must be a non-empty string or None (no check)")
            self.api_key = api_key
        if not isinstance(models, EllipsisType):
            if isinstance(models, str):
                raise ValueError("models must be a list of model names, not one string")
            self.models = None if models is None else frozenset(str(m) for m in models)

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    def reset_counters(self) -> None:
        """Zero every counter (what :meth:`stats` and ``GET /stats`` report, too), and forget how
        often each request arrived (so hang draws start over as on a fresh server)."""
        with getattr(self, "_lock", threading.Lock()):
            self.requests = 0
            self.completed = 0
            self.in_flight = 0
            self.peak_concurrency = 0
            self.hung = 0
            self.requests_by_model: Counter[str] = Counter()
            self.requests_by_status: Counter[str] = Counter()
            self.faults_injected: Counter[str] = Counter()
            self.authorizations: Counter[str] = Counter()
            self.recent: deque[dict[str, Any]] = deque(maxlen=256)
            self._seen: Counter[int] = Counter()

    def stats(self) -> dict[str, Any]:
        """What ``GET /stats`` answers: chat-completion requests received (every outcome), by
        model, by HTTP status answered, and how many were never answered (``hung``: a
        ``hang_rate`` hang, or a ``timeout`` fault the client gave up on).

        ``requests == sum(by_status.values()) + hung`` once nothing is in flight.

        >>> Simulator().stats()
        {'requests': 0, 'by_model': {}, 'by_status': {}, 'hung': 0}
        """
        with self._lock:
            return {
                "requests": self.requests,
                "by_model": dict(sorted(self.requests_by_model.items())),
                "by_status": dict(sorted(self.requests_by_status.items())),
                "hung": self.hung,
            }

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats_url(self) -> str:
        """Where ``GET /stats`` is served."""
        return f"http://{self.host}:{self.port}/stats"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Simulator:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="interleaf-sim", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._startup_error is not None:
            raise RuntimeError(f"simulator failed to start: {self._startup_error}")
        return self

    def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            # A short shutdown timeout: hung handlers end when their connection closes anyway.
            self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.SockSite(self._runner, sock).start())
        except BaseException as exc:  # reported to the starting thread
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP -------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/stats", self._stats)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _models(self, request: web.Request) -> web.Response:
        denied = self._auth_problem(request)
        if denied is not None:
            return web.json_response(error_body(401, denied), status=401)
        names = sorted(self.models or ())
        return web.json_response({"object": "list", "data": [
            {"id": n, "object": "model", "created": _CREATED, "owned_by": "interleaf-sim"} for n in names
        ]})

    def _auth_problem(self, request: web.Request) -> str | None:
        """Why the request's credentials are refused (None: accepted). Never echoes the key sent."""
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header:
            return ("You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if header != f"Bearer {self.api_key}":
            return "Incorrect API key provided (this simulator was started with another api_key)."
        return None

    def _count_request(self, model: str | None, body: dict[str, Any], authorization: str) -> None:
        with self._lock:
            self.requests += 1
            if model is not None:
                self.requests_by_model[model] += 1
            self.authorizations[authorization] += 1
            self.recent.append({"model": model, "messages": body.get("messages", [])})

    def _answered(self, status: int) -> None:
        with self._lock:
            self.requests_by_status[str(status)] += 1

    def _enter(self, model: str, body: dict[str, Any]) -> str | None:
        """A request that passed the checks is in flight; returns the fault to inject, or
        ``"hang"``, or None."""
        with self._lock:
            self.in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
            if self.hang_rate:
                # Fixed by the request, not by arrival order, so concurrent runs hang the same requests;
                # the occurrence count lets a retry of a hung request draw again.
                basis = _seed_for(self.seed, model, body)
                nth = self._seen[basis]
                self._seen[basis] += 1
                if _unit_draw("hang", self.seed, basis, nth) < self.hang_rate:
                    return "hang"
            if self.fault_rate and self._fault_rng.random() < self.fault_rate:
                kind = self._fault_rng.choice(self.faults)
                self.faults_injected[kind] += 1
                return kind
        return None

    def _leave(self, ok: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.completed += int(ok)

    def _error(self, status: int, message: str, *, code: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
        self._answered(status)
        return web.json_response(error_body(status, message, code=code), status=status, headers=headers)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        body: Any = None
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("the body must be a JSON object")
            model = str(body["model"])
            messages = body["messages"]
            if not isinstance(messages, list):
                raise ValueError("messages must be a list")
        except (ValueError, KeyError, TypeError) as exc:
            # Counted too: /stats reports every chat request that arrived, whatever became of it.
            named = body.get("model") if isinstance(body, dict) and body.get("model") is not None else None
            self._count_request(None if named is None else str(named), {}, authorization)
            return self._error(400, f"bad request: {exc}")
        self._count_request(model, body, authorization)
        denied = self._auth_problem(request)
        if denied is not None:
            return self._error(401, denied)
        if self.models is not None and model not in self.models:
            return self._error(404, f"The model `{model}` does not exist or you do not have access to it.",
                               code="model_not_found")
        fault = self._enter(model, body)
        ok = False
        try:
            if fault == "hang":
                if await self._stall(request, forever=True) and request.transport is not None:
                    request.transport.close()  # the simulator stops: drop the connection, still unanswered
                with self._lock:
                    self.hung += 1
                return web.Response(status=204)  # never delivered: the connection is gone
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault == "429":
                return self._error(429, "rate limited (simulated)", headers={"Retry-After": "0"})
            if fault == "500":
                return self._error(500, "server error (simulated)")
            if fault == "timeout" and not await self._stall(request):
                with self._lock:
                    self.hung += 1
                return web.Response(status=204)
            answer = self._answer(model, body)
            if answer.status != 200:
                return self._error(answer.status, answer.content or f"error {answer.status} (simulated)",
                                   headers=answer.headers)
            self._answered(200)
            if fault == "malformed_json":
                return web.Response(text='{"id": "chatcmpl-broken", "choices": [{"message": {"content": "Hel',
                                    content_type="application/json")
            if body.get("stream"):
                response = await self._stream(request, model, body, answer, truncate=fault == "truncated_stream")
            elif fault == "truncated_stream":
                response = await self._truncated(request, self._payload(model, body, answer))
            else:
                response = web.json_response(self._payload(model, body, answer), headers=answer.headers)
            ok = fault is None
            return response
        finally:
            self._leave(ok)

    async def _stall(self, request: web.Request, *, forever: bool = False) -> bool:
        """Wait ``timeout_delay`` seconds (or, ``forever``, until the simulator stops) unless the
        client closes the connection first; returns whether the client is still there."""
        deadline = None if forever else time.monotonic() + self.timeout_delay
        while deadline is None or time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return False
            if self._stopping:
                return True
            await asyncio.sleep(_HANG_POLL)
        return True

    def options(self) -> SimOptions:
        """The current answer options (seed, defect rates, judge noise)."""
        return SimOptions(seed=self.seed, defect_rates=dict(self.defect_rates), judge_noise=self.judge_noise)

    def _answer(self, model: str, body: dict[str, Any]) -> SimAnswer:
        req = SimRequest(model=model, messages=body.get("messages", []), tools=body.get("tools") or [], body=body,
                         rng=random.Random(_seed_for(self.seed, model, body)), options=self.options())
        lowered = model.lower()
        for rule in self.rules:
            if rule.model.lower() in lowered:
                return rule.reply(req)
        for needle, reply in BUILTIN_RULES:
            if needle in lowered:
                return reply(req)
        return answer_assistant(req)

    def _payload(self, model: str, body: dict[str, Any], answer: SimAnswer) -> dict[str, Any]:
        req = SimRequest(model=model, messages=body.get("messages", []), tools=body.get("tools") or [], body=body,
                         rng=random.Random(0))
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        finish = answer.finish_reason or ("tool_calls" if answer.tool_calls else "stop")
        digest = hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()[:24]
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(req, answer),
        }

    async def _truncated(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        data = json.dumps(payload).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    async def _stream(self, request: web.Request, model: str, body: dict[str, Any], answer: SimAnswer,
                      *, truncate: bool) -> web.StreamResponse:
        payload = self._payload(model, body, answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        base = {"id": payload["id"], "object": "chat.completion.chunk", "created": _CREATED, "model": model}
        text = answer.content or ""
        pieces = [text[i:i + 24] for i in range(0, len(text), 24)] or [""]
        chunks: list[dict[str, Any]] = [{"role": "assistant", "content": pieces[0]}]
        chunks += [{"content": p} for p in pieces[1:]]
        if answer.tool_calls:
            chunks.append({"tool_calls": [{"index": i, **c} for i, c in enumerate(answer.tool_calls)]})
        if truncate:
            chunks = chunks[: max(1, len(chunks) // 2)]
        for delta in chunks:
            event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        if truncate:
            if request.transport is not None:
                request.transport.close()
            return response
        finish = payload["choices"][0]["finish_reason"]
        final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        await response.write(f"data: {json.dumps(final)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': payload['usage']})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def parse_defect_rates(specs: Sequence[str]) -> dict[str, float]:
    """The complete defect-rate mapping that ``--defect-rate`` options ask for.

    Each spec is ``KIND=RATE`` (that kind's rate) or a bare ``RATE`` (every kind); later specs
    win, and kinds no spec names keep their default rate.

    >>> parse_defect_rates(["0", "off_topic=0.5"])["off_topic"], parse_defect_rates(["0"])["truncated"]
    (0.5, 0.0)
    >>> parse_defect_rates([]) == DEFAULT_DEFECT_RATES
    True
    """
    rates = dict(DEFAULT_DEFECT_RATES)
    for spec in specs:
        kind, sep, value = spec.partition("=")
        try:
            rate = float(value if sep else kind)
        except ValueError:
            raise ValueError(f"--defect-rate {spec!r}: expected KIND=RATE or RATE (a number in [0, 1])") from None
        if sep:
            if kind.strip() not in DEFECT_KINDS:
                raise ValueError(f"--defect-rate {spec!r}: unknown kind; choose from {', '.join(DEFECT_KINDS)}")
            rates[kind.strip()] = rate
        else:
            rates = dict.fromkeys(DEFECT_KINDS, rate)
    return validate_rates(rates)


def serve_forever(
    port: int = 8765,
    latency: float = 0.0,
    fault_rate: float = 0.0,
    seed: int = 0,
    api_key: str | None = None,
    models: list[str] | None = None,
    hang_rate: float = 0.0,
    defect_rates: Mapping[str, float] | None = None,
    judge_noise: float = 0.0,
) -> None:
    """Run the simulator in the foreground until interrupted (the ``interleaf sim`` command).

    ``api_key`` makes it refuse other keys with 401, ``models`` answer 404 for other model
    names, ``hang_rate`` leave that share of requests unanswered, ``defect_rates`` (None: the
    defaults) plant defects in that share of answers, ``judge_noise`` score that share of judge
    lines wrong (see :class:`Simulator`).
    Example: ``serve_forever(port=8765, api_key="sk-local", defect_rates=parse_defect_rates(["0.1"]))``.
    """
    sim = Simulator(port=port, latency=latency, fault_rate=fault_rate, seed=seed, api_key=api_key, models=models,
                    hang_rate=hang_rate, defect_rates=defect_rates, judge_noise=judge_noise).start()
    print(f"interleaf simulator at {sim.base_url} (Ctrl-C to stop); counters at {sim.stats_url}", flush=True)
    # The key itself is never printed: whoever started the simulator knows it.
    key_hint = "the key given with --api-key" if api_key is not None else "any value"
    served = ", ".join(sorted(models)) if models else "any name"
    print(
        f"  point a model at it:  model: openai/assistant   api_base: {sim.base_url}"
        f"   api_key: ${{SIM_API_KEY}}  ({key_hint}); models: {served}",
        flush=True,
    )
    if hang_rate:
        print(f"  {hang_rate:.0%} of requests will hang until the client gives up", flush=True)
    planted = ", ".join(f"{k} {v:.0%}" for k, v in sim.defect_rates.items() if v) or "none"
    print(f"  planted defects: {planted}; judge noise {sim.judge_noise:.0%}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
