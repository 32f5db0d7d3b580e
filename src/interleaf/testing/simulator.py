"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1.

The engine reaches it through litellm exactly as it reaches a real provider
(``model: openai/<role-name>``, ``api_base: <sim.base_url>``). What it answers depends on
the requested model name:

============  ==========================================================================
contains      answer
============  ==========================================================================
``judge``     one ``[[dim, reason, \\boxed{n}]]`` line per ``DIMENSIONS:`` entry of the prompt
``expand``    a rewritten, multi-turn-ready question and a ``SITUATION: ...`` line
``user``      a follow-up question (sometimes asking to edit an earlier image)
``malformed`` a tool call with broken JSON arguments; repaired after an error message,
              unless the name also contains ``always``
``tool``      native ``tool_calls`` for the offered tools, then a final answer
otherwise     an assistant answer with 0-2 inline ``<Image, ...>`` markers
============  ==========================================================================

Answers are deterministic functions of (seed, model, request messages and sampling
params), so reruns give identical trees. Faults (429, 500, timeout, malformed JSON,
truncated body/stream) are drawn per request, so a retried request can succeed.
Counters: total requests, per model, and the peak number of requests in flight.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from interleaf.models.judge_format import dimensions_in_prompt, render_line

FAULT_KINDS: tuple[str, ...] = ("429", "500", "timeout", "malformed_json", "truncated_stream")

#: Default situation tags of the expansion role (a prompt may offer its own with ``SITUATIONS: a | b``).
SITUATIONS: tuple[str, ...] = (
    "image generation with iterative refinement",
    "image editing across turns",
    "visual understanding and question answering",
    "interleaved step-by-step explanation",
    "story or scene continuation",
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_STOP = frozenset(
    "a an and are as at be by can could do for from how i in is it me my of on or please show "
    "that the this to was what with you your would make draw give tell about".split()
)
_PLACEHOLDER = re.compile(r"\[image \d+\]")
_REPAIR_HINT = "invalid arguments"
_CREATED = 1_700_000_000


@dataclass
class SimRequest:
    """A parsed chat-completions request as the rules see it."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    body: dict[str, Any]
    rng: random.Random

    def texts(self, role: str | None = None) -> list[str]:
        out = []
        for m in self.messages:
            if role is not None and m.get("role") != role:
                continue
            out.append(_text_of(m.get("content")))
        return out

    @property
    def last_user_text(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""

    @property
    def image_count(self) -> int:
        return sum(_image_count(m.get("content")) for m in self.messages)

    @property
    def last_role(self) -> str:
        return str(self.messages[-1].get("role", "")) if self.messages else ""


@dataclass
class SimAnswer:
    """What a rule answers: text and/or tool calls (``arguments`` already JSON text)."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class Rule:
    """A custom answer for requests whose model name contains ``model`` (checked before built-ins)."""

    model: str
    reply: Callable[[SimRequest], SimAnswer]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image_count(content: Any) -> int:
    if isinstance(content, list):
        return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return 0


def _topic(text: str, rng: random.Random, words: int = 4) -> str:
    found = [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and not w.lower().startswith("image")]
    if not found:
        return "the scene"
    start = rng.randrange(max(1, len(found) - words + 1))
    return " ".join(found[start:start + words])


def _marker(caption: str, rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"<Image, {caption}>"
    if style == 1:
        return f"<Image: {caption}>"
    return f"<[Image] {caption}>"


def answer_assistant(req: SimRequest) -> SimAnswer:
    rng = req.rng
    topic = _topic(req.last_user_text, rng)
    wants_edit = re.search(r"\bedit\b|\bchange\b|\bmodify\b", req.last_user_text, re.IGNORECASE)
    opening = rng.choice(["Here is a careful answer about", "Let me walk you through", "Good question about"])
    pieces = [f"{opening} {topic}."]
    if wants_edit and req.image_count:
        n = 1 + rng.randrange(req.image_count)
        pieces.append(_marker(f"edit of image {n}: {rng.choice(['brighter colours', 'add a sunset', 'make it blue'])}",
                              rng))
    for i in range(rng.randrange(3)):
        style = rng.choice(["a photo of", "an illustration of", "a diagram of", "a sketch of"])
        pieces.append(f"Step {i + 1} shows {topic}.")
        pieces.append(_marker(f"{style} {topic}", rng))
    pieces.append(rng.choice(["I hope this helps.", "Let me know what to change.", "Shall I go on?"]))
    return SimAnswer(content=" ".join(pieces))


def answer_expansion(req: SimRequest) -> SimAnswer:
    rng = req.rng
    text = "\n".join(req.texts())
    offered = re.findall(r"^SITUATIONS:\s*(.+)$", text, re.MULTILINE)
    options = [s.strip() for s in offered[-1].split("|") if s.strip()] if offered else list(SITUATIONS)
    topic = _topic(req.last_user_text, rng, words=6)
    question = (
        f"I'd like to explore {topic} step by step. Could you start with an overview and an image, "
        "so we can refine it together over the next turns?"
    )
    return SimAnswer(content=f"{question}\nSITUATION: {rng.choice(options)}")


def answer_follow_up(req: SimRequest) -> SimAnswer:
    rng = req.rng
    topic = _topic("\n".join(req.texts()), rng)
    if req.image_count and rng.random() < 0.35:
        n = 1 + rng.randrange(req.image_count)
        change = rng.choice(["make the sky darker", "add a small red boat", "use warmer colours"])
        return SimAnswer(content=f"Nice. Could you edit image {n} so that you {change}?")
    return SimAnswer(
        content=rng.choice([
            f"Can you go deeper into {topic} and show another picture?",
            f"How would {topic} look from a different angle?",
            f"What should I pay attention to about {topic}?",
        ])
    )


def answer_judge(req: SimRequest) -> SimAnswer:
    rng = req.rng
    dims = dimensions_in_prompt("\n".join(req.texts()))
    if not dims:
        return SimAnswer(content=render_line("overall", "no dimensions were given", rng.randint(1, 10)))
    lines = [
        render_line(d.name, rng.choice(["clear and relevant", "partly helpful", "images match the text",
                                        "misses a detail"]), rng.randint(d.low, d.high))
        for d in dims
    ]
    return SimAnswer(content="\n".join(lines))


def _fake_arguments(schema: dict[str, Any], topic: str, image_count: int) -> dict[str, Any]:
    args: dict[str, Any] = {}
    props = schema.get("properties", {}) or {}
    for name, prop in props.items():
        kind = prop.get("type")
        if "enum" in prop:
            args[name] = prop["enum"][0]
        elif name == "image":
            args[name] = f"image {max(1, image_count)}"
        elif kind == "string" or kind is None:
            args[name] = f"an illustration of {topic}"
        elif kind == "integer":
            args[name] = int(prop.get("minimum", 1))
        elif kind == "number":
            args[name] = float(prop.get("minimum", 0.5))
        elif kind == "boolean":
            args[name] = True
    return args


def _tool_results(req: SimRequest) -> list[dict[str, Any]]:
    results = []
    for m in req.messages:
        if m.get("role") != "tool":
            continue
        text = _text_of(m.get("content"))
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


def _final_after_tools(req: SimRequest) -> SimAnswer:
    topic = _topic(req.last_user_text, req.rng)
    parts = [f"Here is what I found about {topic}."]
    for r in _tool_results(req):
        placeholder = r.get("placeholder")
        if isinstance(placeholder, str) and _PLACEHOLDER.fullmatch(placeholder):
            parts.append(f"See {placeholder} for it.")
        elif "error" in r:
            parts.append("One of the tools failed, so I describe that part in words instead.")
    return SimAnswer(content=" ".join(parts), finish_reason="stop")


def _tool_calls(req: SimRequest, broken: bool) -> SimAnswer:
    topic = _topic(req.last_user_text, req.rng)
    calls = []
    for i, tool in enumerate(req.tools[:2]):
        fn = tool.get("function", {})
        args = _fake_arguments(fn.get("parameters", {}), topic, req.image_count)
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


class Simulator:
    """The simulator server, run on a background thread; use as a context manager."""

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
    ):
        self.host = host
        self.port = port
        self.seed = seed
        self.rules: list[Rule] = list(rules)
        self.timeout_delay = timeout_delay
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults: tuple[str, ...] = ()
        self.configure(latency=latency, fault_rate=fault_rate, faults=faults)
        self._lock = threading.Lock()
        self._fault_rng = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.reset_counters()

    # -- configuration and counters ---------------------------------------------------------
    def configure(self, *, latency: float | None = None, fault_rate: float | None = None,
                  faults: Iterable[str | int] | None = None) -> None:
        """Change latency / fault injection while running."""
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

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    def reset_counters(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.requests = 0
            self.completed = 0
            self.in_flight = 0
            self.peak_concurrency = 0
            self.requests_by_model: Counter[str] = Counter()
            self.faults_injected: Counter[str] = Counter()
            self.authorizations: Counter[str] = Counter()
            self.recent: deque[dict[str, Any]] = deque(maxlen=256)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

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
            self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
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
        app.router.add_get("/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    def _enter(self, model: str, body: dict[str, Any]) -> str | None:
        with self._lock:
            self.requests += 1
            self.requests_by_model[model] += 1
            self.in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
            self.recent.append({"model": model, "messages": body.get("messages", [])})
            if self.fault_rate and self._fault_rng.random() < self.fault_rate:
                kind = self._fault_rng.choice(self.faults)
                self.faults_injected[kind] += 1
                return kind
        return None

    def _leave(self, ok: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.completed += int(ok)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            model = str(body["model"])
            messages = body["messages"]
            if not isinstance(messages, list):
                raise ValueError("messages must be a list")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}},
                                     status=400)
        fault = self._enter(model, body)
        with self._lock:
            self.authorizations[request.headers.get("Authorization", "")] += 1
        ok = False
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault == "429":
                return web.json_response({"error": {"message": "rate limited (simulated)", "type": "rate_limit"}},
                                         status=429, headers={"Retry-After": "0"})
            if fault == "500":
                return web.json_response({"error": {"message": "server error (simulated)", "type": "server_error"}},
                                         status=500)
            if fault == "timeout":
                await self._stall(request)
            answer = self._answer(model, body)
            if fault == "malformed_json":
                return web.Response(text='{"id": "chatcmpl-broken", "choices": [{"message": {"content": "Hel',
                                    content_type="application/json")
            if body.get("stream"):
                response = await self._stream(request, model, body, answer, truncate=fault == "truncated_stream")
            elif fault == "truncated_stream":
                response = await self._truncated(request, self._payload(model, body, answer))
            else:
                response = web.json_response(self._payload(model, body, answer))
            ok = fault is None
            return response
        finally:
            self._leave(ok)

    async def _stall(self, request: web.Request) -> None:
        deadline = time.monotonic() + self.timeout_delay
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.01)

    def _answer(self, model: str, body: dict[str, Any]) -> SimAnswer:
        req = SimRequest(model=model, messages=body.get("messages", []), tools=body.get("tools") or [], body=body,
                         rng=random.Random(_seed_for(self.seed, model, body)))
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


def serve_forever(port: int = 8765, latency: float = 0.0, fault_rate: float = 0.0, seed: int = 0) -> None:
    """Run the simulator in the foreground until interrupted (the ``interleaf sim`` command)."""
    sim = Simulator(port=port, latency=latency, fault_rate=fault_rate, seed=seed).start()
    print(f"interleaf simulator at {sim.base_url} (Ctrl-C to stop)", flush=True)
    print(
        f"  point a model at it:  model: openai/assistant   api_base: {sim.base_url}"
        "   api_key: ${SIM_API_KEY}  (any value)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
