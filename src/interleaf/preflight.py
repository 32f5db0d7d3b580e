"""Before a run: can every model and tool of the graph work, and what will the run make and cost?

:func:`apreflight` checks, per model that some node uses,

1. the environment variables its ``model``, ``api_base`` and ``api_key`` reference are set
   (the message names the variable and the model, never a value);
2. litellm can route the model string, and has a key for the provider when the spec gives
   none (``validate_environment``). litellm's ``openai/`` provider needs *some* key even for
   a custom ``api_base`` whose server checks none: the OpenAI SDK refuses to send without one;
3. with ``probe=True``, the endpoint answers: ONE tiny request (``max_tokens: 1``) per distinct
   endpoint (resolved model string and ``api_base``, as the health registry counts them), sent through
   :meth:`ModelClient.probe_client <interleaf.models.client.ModelClient.probe_client>` so it
   is counted like any call (wrap the preflight in :func:`~interleaf.run.totals.using_ledger`
   and the ledger has it) and fails fast: a refused connection, 401/403 or 404 is not retried,
   a hang ends after ``timeout`` seconds;

and per tool some node uses, its own :meth:`Tool.preflight <interleaf.tools.base.Tool.preflight>`
(an image tool loads its pipeline and makes one smallest image, counted as an image).

Probes report to the process-wide endpoint health registry like other calls; the preflight
forgets what it learnt there for the probed endpoints afterwards, so a failed probe never
stops the later run by itself (and an endpoint marked down earlier in this process is probed
afresh).

:func:`estimate` needs no network: it derives from the graph's settings (prompt variants or
levels, candidates per turn ``k``, ``keep``, turns, judges) how many model calls and images
a number of seeds makes when nothing fails, and prices the calls with litellm's bundled price
map under stated token assumptions.

Example (no request is sent: ``probe=False``)::

    >>> import asyncio
    >>> from interleaf.graphs.spec import GraphSpec
    >>> from interleaf.runtime import Runtime
    >>> spec = GraphSpec.model_validate({
    ...     "name": "g", "models": {"m": {"model": "openai/gpt-4o", "api_key": "${DOC_PREFLIGHT_KEY}"}},
    ...     "nodes": {"n": {"kind": "follow_up", "model": "m"}}, "edges": []})
    >>> report = asyncio.run(apreflight(Runtime(spec), probe=False))
    >>> report.ok, report.lines[0].detail
    (False, "environment variable DOC_PREFLIGHT_KEY (api_key) is not set; model 'm' needs it")
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from interleaf.errors import PreflightError, SystemicFailure
from interleaf.graphs.spec import GraphSpec, ModelSpec, resolve_env
from interleaf.models.client import ModelCallError, ModelClient, _litellm
from interleaf.models.health import EndpointKey, reset_endpoint_health
from interleaf.nodes.assistant_turn import AssistantTurnParams
from interleaf.nodes.consistency import ConsistencyCheckParams
from interleaf.nodes.expansion import PromptExpansionParams
from interleaf.nodes.planner import TurnPlannerParams
from interleaf.nodes.pruning import BranchPrunerParams
from interleaf.nodes.seed_answers import SeedAnswersParams
from interleaf.storage.store import ObjectStore
from interleaf.tools.base import ToolContext

if TYPE_CHECKING:
    from interleaf.runtime import Runtime
__all__ = [
    "TOKEN_ASSUMPTIONS", "Estimate", "ModelEstimate", "PreflightLine", "PreflightReport", "TokenAssumption",
    "ToolEstimate", "apreflight", "estimate",
]

#: The probe's one message and its completion params: as little work for the endpoint as possible.
PROBE_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Reply with the single word OK."}]
PROBE_PARAMS: dict[str, Any] = {"max_tokens": 1}
#: Providers whose credentials usually come from a default chain (instance role, gcloud login),
#: not from environment variables: a missing variable is no failure there, the probe decides.
AMBIENT_CREDENTIAL_PROVIDERS = frozenset({
    "bedrock", "bedrock_converse", "sagemaker", "sagemaker_chat", "vertex_ai", "vertex_ai_beta",
})
#: Seconds a probe may take beyond its client's own bounds before the preflight abandons it.
_PROBE_GRACE = 10.0


# ---------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class PreflightLine:
    """The outcome of one check: a model (``endpoint`` set, never with a key) or a tool."""

    kind: Literal["model", "tool"]
    name: str
    ok: bool
    detail: str
    endpoint: str | None = None

    def __str__(self) -> str:
        where = f" ({self.endpoint})" if self.endpoint else ""
        return f"{'ok' if self.ok else 'FAILED':<6}  {self.kind} {self.name!r}{where}: {self.detail}"


@dataclass
class PreflightReport:
    """One line per model and tool a node uses; ``ok`` when none failed.

    >>> r = PreflightReport([PreflightLine("model", "judge", False, "401: key refused")])
    >>> r.ok, len(r.failures)
    (False, 1)
    >>> r.raise_for_failure()
    Traceback (most recent call last):
    ...
    interleaf.errors.PreflightError: preflight failed (1 of 1 checks): FAILED  model 'judge': 401: key refused
    """

    lines: list[PreflightLine] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines)

    @property
    def failures(self) -> list[PreflightLine]:
        return [line for line in self.lines if not line.ok]

    def text(self) -> str:
        """The report for a console, one check a line."""
        head = "preflight ok" if self.ok else f"preflight FAILED ({len(self.failures)} of {len(self.lines)} checks)"
        return "\n".join([f"{head} in {self.seconds:.1f}s", *(f"  {line}" for line in self.lines)])

    def raise_for_failure(self) -> None:
        """Raise :class:`~interleaf.errors.PreflightError` listing every failed line (nothing when ok)."""
        failed = self.failures
        if not failed:
            return
        listing = f" {failed[0]}" if len(failed) == 1 else "".join(f"\n  {line}" for line in failed)
        raise PreflightError(f"preflight failed ({len(failed)} of {len(self.lines)} checks):{listing}")


# ---------------------------------------------------------------------------------------------
# what the graph uses


def used_models(spec: GraphSpec) -> list[str]:
    """Names of the ``models:`` entries some node uses, in ``models:`` order."""
    used = {m for node in spec.nodes.values() for m in node.model_names()}
    return [name for name in spec.models if name in used]


def used_tools(spec: GraphSpec) -> list[str]:
    """Names of the ``tools:`` entries some node uses, in ``tools:`` order."""
    used = {t for node in spec.nodes.values() for t in node.tools}
    return [name for name in spec.tools if name in used]


def safe_endpoint(provider_model: str, api_base: str | None) -> str:
    """How an endpoint is shown: the model string and ``api_base`` without user info or query
    (where a key could hide).

    >>> safe_endpoint("openai/x", "https://user:sk-secret@host.example/v1?key=sk-secret")
    'openai/x at https://host.example/v1'
    """
    if not api_base:
        return f"{provider_model} at the provider's default endpoint"
    try:
        parts = urlsplit(api_base)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        shown = "<unparsable api_base>"
    return f"{provider_model} at {shown}"


def _unset_refs(value: str | None) -> list[str]:
    """Environment variables ``value`` needs (referenced without a default) that are not set."""
    if not value:
        return []
    env = dict(os.environ)
    missing: list[str] = []
    while True:
        try:
            resolve_env(value, env)
            return missing
        except KeyError as exc:
            name = str(exc.args[0])
            missing.append(name)
            env[name] = ""  # look for the next one


def _env_problems(name: str, spec: ModelSpec) -> list[str]:
    problems = []
    for what, value in (("model", spec.model), ("api_base", spec.api_base), ("api_key", spec.api_key)):
        for var in _unset_refs(value):
            problems.append(f"environment variable {var} ({what}) is not set; model {name!r} needs it")
    return problems


def _is_key_name(var: str) -> bool:
    return any(word in var.upper() for word in ("KEY", "TOKEN", "SECRET"))


def _key_problem(litellm: Any, name: str, client: ModelClient, key: EndpointKey) -> tuple[str | None, str | None]:
    """(failure, note) about the provider key when the spec gives none; no request is sent."""
    try:
        api_key = resolve_env(client.spec.api_key) if client.spec.api_key else ""
    except KeyError:
        return None, None  # reported as an unset variable already
    if api_key:
        return None, None
    try:
        _, provider, _, _ = litellm.get_llm_provider(model=key.provider_model, api_base=key.api_base)
    except Exception as exc:  # litellm raises BadRequestError or ValueError for an unknown provider
        return f"litellm cannot route model {key.provider_model!r}: {exc}"[:400], None
    try:
        check = litellm.validate_environment(model=key.provider_model, api_base=key.api_base)
    except Exception:  # no list for this provider: the probe decides
        return None, None
    missing = [v for v in check.get("missing_keys") or [] if _is_key_name(v)]
    if not missing or check.get("keys_in_environment"):
        return None, None
    given = (f"api_key {client.spec.api_key!r} resolves to nothing" if client.spec.api_key
             else "the spec gives no api_key")
    wanted = missing[0] if len(missing) == 1 else "one of " + ", ".join(missing)
    if provider in AMBIENT_CREDENTIAL_PROVIDERS:
        return None, f"{wanted} not set; relying on the {provider} default credentials"
    hint = ""
    if provider == "openai" and key.api_base:
        hint = (" (litellm's openai provider needs a key even for a custom api_base; any value works for a "
                "server that checks none)")
    return f"no API key: {given} and {wanted} is not set{hint}; model {name!r} needs it", None


#: litellm's wrapping of a provider error: "[auth 401] AuthenticationError: litellm.AuthenticationError:
#: AuthenticationError: OpenAIException - <what the server said>"; the server's words are what matter.
_WRAPPING = re.compile(r"^(?:model '[^']*': )?(?:\[[^\]]*\] )?(?:[\w.]+(?:Error|Exception|Timeout)(?: -|:) ?)*")


def _server_words(reason: str) -> str:
    """The provider's own message out of a client error reason.

    >>> _server_words("model 'b': [auth 401] AuthenticationError: litellm.AuthenticationError: "
    ...               "AuthenticationError: OpenAIException - Incorrect API key provided.")
    'Incorrect API key provided.'
    """
    words = _WRAPPING.sub("", reason, count=1).strip()
    return words or reason


def _probe_failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, SystemicFailure):
        return f"endpoint down: {_server_words(exc.error)}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s (the probe was abandoned)"
    if not isinstance(exc, ModelCallError):
        return f"{type(exc).__name__}: {exc}"[:400]
    reason = _server_words(exc.reason)
    if exc.kind == "unreachable":
        return f"connection refused or host unreachable ({reason})"
    if exc.kind == "timeout":
        return f"no answer within {timeout:g}s ({reason})"
    if exc.kind == "auth":
        return f"{exc.status}: the API key was refused ({reason})"
    if exc.kind == "not_found":
        return f"404: the endpoint does not know this model, or the api_base path is wrong ({reason})"
    status = f"{exc.status}: " if exc.status else ""
    return f"{status}{exc.kind or 'failed'} ({reason})"


def _rejected_probe_only(exc: BaseException) -> bool:
    """A 400 to the probe itself (say, max_tokens too small): the endpoint answered, with the key
    and the model accepted. Some providers answer a bad key with 400, so those stay failures."""
    if not isinstance(exc, ModelCallError) or exc.kind != "bad_request":
        return False
    text = exc.reason.lower()
    return not any(word in text for word in ("api key", "api_key", "apikey", "credential", "unauthori"))


@dataclass
class _ModelCheck:
    name: str
    endpoint: str
    failure: str | None = None
    note: str | None = None
    group: EndpointKey | None = None


async def _probe(client: ModelClient, timeout: float) -> tuple[bool, str]:
    probe = client.probe_client(timeout=timeout)
    started = time.perf_counter()
    try:
        # A safety net over the client's own bounds (timeout per attempt, one quick retry).
        async with asyncio.timeout(2 * probe.spec.timeout + _PROBE_GRACE):
            done = await probe.complete(PROBE_MESSAGES, params=PROBE_PARAMS)
    except Exception as exc:  # every failure is this endpoint's FAILED line, never a crash of the preflight
        if _rejected_probe_only(exc):
            words = _server_words(exc.reason) if isinstance(exc, ModelCallError) else str(exc)
            return True, f"reachable; it refused the probe request itself ({words})"[:400]
        return False, _probe_failure(exc, probe.spec.timeout)
    took = time.perf_counter() - started
    plural = "s" if done.call.attempts != 1 else ""
    return True, f"answered in {took:.2f}s ({done.call.attempts} request{plural})"


async def _check_tool(runtime: Runtime, name: str, index: int, store: ObjectStore) -> PreflightLine:
    try:
        tool = runtime.tool(name)
        ctx = ToolContext(dialogue_id="preflight", node_id=f"preflight-{name}", index=index,
                          run_seed=runtime.run_seed, store=store)
        detail = await tool.preflight(ctx)
    except Exception as exc:  # any failure of the tool's own check is this line's FAILED
        return PreflightLine("tool", name, False, f"{type(exc).__name__}: {exc}"[:600])
    return PreflightLine("tool", name, True, detail)


async def apreflight(runtime: Runtime, *, probe: bool = True, timeout: float = 15.0) -> PreflightReport:
    """Check every model and tool some node of ``runtime.spec`` uses (see the module docstring).

    ``timeout`` bounds each probe request (and the model's own ``timeout`` when smaller).
    Tool checks run alongside the probes. Never raises for a failed check: see
    :meth:`PreflightReport.raise_for_failure`.

    Example::

        with using_ledger(ledger):               # probes are counted there
            report = await apreflight(runtime)
        print(report.text())
        report.raise_for_failure()
    """
    started = time.perf_counter()
    spec = runtime.spec
    checks: list[_ModelCheck] = []
    litellm: Any = None
    for name in used_models(spec):
        client = runtime.model(name)
        check = _ModelCheck(name=name, endpoint=safe_endpoint(client.spec.model, client.spec.api_base))
        checks.append(check)
        problems = _env_problems(name, client.spec)
        if problems:
            check.failure = "; ".join(problems)
            continue
        key = client.endpoint()
        check.endpoint = safe_endpoint(key.provider_model, key.api_base)
        litellm = litellm or _litellm()
        check.failure, check.note = _key_problem(litellm, name, client, key)
        check.group = key

    # One probe per distinct endpoint: models sharing one share its answer.
    groups: dict[EndpointKey, str] = {}
    for check in checks:
        if check.failure is None and check.group is not None:
            groups.setdefault(check.group, check.name)
    probed = set(groups) if probe else set()
    store = _scratch_store()
    try:
        for key in probed:
            reset_endpoint_health(key)  # an endpoint marked down earlier in this process is probed afresh
        probe_jobs = [_probe(runtime.model(first), timeout) for first in groups.values()] if probe else []
        tool_jobs = [_check_tool(runtime, name, i, store) for i, name in enumerate(used_tools(spec))]
        # Probes and tool checks together: a pipeline load should not wait for the network, nor the reverse.
        probe_results, tool_lines = await asyncio.gather(asyncio.gather(*probe_jobs), asyncio.gather(*tool_jobs))
    finally:
        for key in probed:
            reset_endpoint_health(key)  # what the probes taught the registry must not stop the run
        _drop_store(store)
    outcomes = dict(zip(groups, probe_results, strict=True)) if probe else {}

    lines: list[PreflightLine] = []
    for check in checks:
        if check.failure is not None:
            lines.append(PreflightLine("model", check.name, False, check.failure, check.endpoint))
            continue
        assert check.group is not None
        if not probe:
            detail = "configured (not probed)"
            ok = True
        else:
            ok, detail = outcomes[check.group]
            first = groups[check.group]
            if first != check.name:
                detail = f"{detail} (probe shared with model {first!r})"
        if check.note:
            detail = f"{detail}; {check.note}"
        lines.append(PreflightLine("model", check.name, ok, detail, check.endpoint))
    return PreflightReport(lines=lines + list(tool_lines), seconds=time.perf_counter() - started)


def _scratch_store() -> ObjectStore:
    """Where tool checks put their test images: memory, so the run's store gets no stray blobs."""
    return ObjectStore(f"memory://interleaf-preflight-{uuid.uuid4().hex}")


def _drop_store(store: ObjectStore) -> None:
    try:
        store.fs.rm(store.uri, recursive=True)
    except Exception:  # nothing was written, or cleanup failed: never mask the report for scratch memory
        pass


# ---------------------------------------------------------------------------------------------
# the estimate


@dataclass(frozen=True)
class TokenAssumption:
    """Assumed tokens of one call (prompt, completion) at the low and the high end."""

    prompt_low: int
    completion_low: int
    prompt_high: int
    completion_high: int


#: Tokens per call assumed for pricing, by node kind. Low: a short first turn; high: a long
#: late turn with its history and images (about 85-765 tokens an image) in the prompt.
TOKEN_ASSUMPTIONS: dict[str, TokenAssumption] = {
    "prompt_expansion": TokenAssumption(300, 60, 900, 250),
    "assistant_turn": TokenAssumption(250, 150, 4000, 900),
    "consistency_check": TokenAssumption(600, 60, 5000, 400),
    "follow_up": TokenAssumption(400, 15, 4000, 120),
    "global_judge": TokenAssumption(1200, 60, 9000, 400),
}
_DEFAULT_TOKENS = TokenAssumption(300, 100, 4000, 800)
#: Images one answer makes with a generation tool: expected and at most (InterMT answers carry 0-2).
IMAGES_PER_ANSWER = (1.0, 2)
#: Edits one later-turn answer makes with an edit tool: expected and at most.
EDITS_PER_ANSWER = (0.25, 1)
_IMAGE_KINDS = frozenset({"generate_image", "edit_image"})


@dataclass(frozen=True)
class ModelEstimate:
    """Expected calls of one model (``calls``: nothing fails; ``max_calls``: every judge re-asked
    once, every answer using all its ``max_steps``; retries of failed requests come on top) and
    their cost range in dollars (None: litellm has no price for ``provider_model``)."""

    model: str
    provider_model: str
    calls: int
    max_calls: int
    cost_low: float | None = None
    cost_high: float | None = None
    note: str = ""

    @property
    def priced(self) -> bool:
        return self.cost_low is not None


@dataclass(frozen=True)
class ToolEstimate:
    """Images one image tool is expected to make (``images``), and at most (``max_images``)."""

    tool: str
    images: int
    max_images: int


@dataclass
class Estimate:
    """What ``seeds`` seeds of a graph make: calls per model, images per image tool, cost range.

    >>> e = Estimate("g", 2, {"m": ModelEstimate("m", "openai/x", 4, 6)}, {})
    >>> e.calls, e.max_calls, e.cost_low
    (4, 6, None)
    """

    graph: str
    seeds: int
    models: dict[str, ModelEstimate]
    tools: dict[str, ToolEstimate]
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models.values())

    @property
    def max_calls(self) -> int:
        return sum(m.max_calls for m in self.models.values())

    @property
    def images(self) -> int:
        return sum(t.images for t in self.tools.values())

    @property
    def unpriced(self) -> list[str]:
        return [name for name, m in self.models.items() if not m.priced and m.calls]

    @property
    def cost_low(self) -> float | None:
        """Sum over priced models (None when no model is priced)."""
        known = [m.cost_low for m in self.models.values() if m.cost_low is not None]
        return sum(known) if known else None

    @property
    def cost_high(self) -> float | None:
        known = [m.cost_high for m in self.models.values() if m.cost_high is not None]
        return sum(known) if known else None

    def lines(self) -> list[str]:
        """The estimate for a console, one fact a line."""
        out = [f"estimate for graph {self.graph!r}, {self.seeds} seed(s): {self.calls} model calls "
               f"(up to {self.max_calls} with judge re-asks and answer re-tries; request retries on top)"]
        width = max((len(n) for n in self.models), default=0) + 2
        for name, m in self.models.items():
            cost = _cost_range(m.cost_low, m.cost_high) if m.priced else "unpriced"
            note = f"  ({m.note})" if m.note else ""
            out.append(f"  model {name!r:<{width}} {m.provider_model}: {m.calls} calls (max {m.max_calls}), "
                       f"{cost}{note}")
        for name, t in self.tools.items():
            out.append(f"  tool {name!r}: ~{t.images} images (0-{t.max_images})")
        total = _cost_range(self.cost_low, self.cost_high) if self.cost_low is not None else "unknown"
        if self.unpriced:
            total += " + unpriced model(s) " + ", ".join(repr(n) for n in self.unpriced)
        out.append(f"  cost: {total}")
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def _cost_range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "unpriced"
    return f"${low:.4f} - ${high:.4f}"


def _price(model: str) -> tuple[float, float] | None:
    """litellm's (input, output) dollars per token for ``model``, None when unpriced."""
    try:
        info = _litellm().get_model_info(model)
    except Exception:  # litellm raises for every model it has no entry for
        return None
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not isinstance(inp, (int, float)) or not isinstance(out, (int, float)):
        return None
    return float(inp), float(out)


@dataclass
class _Tally:
    """Per model: (node kind, nominal calls, max calls) parts."""

    parts: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)

    def add(self, model: str, kind: str, calls: int, max_calls: int) -> None:
        if calls or max_calls:
            self.parts.setdefault(model, []).append((kind, calls, max_calls))


def _node_of(spec: GraphSpec, kind: str) -> tuple[str, Any] | None:
    for name, node in spec.nodes.items():
        if node.kind == kind:
            return name, node
    return None


def _nodes_of(spec: GraphSpec, kind: str) -> list[Any]:
    return [node for node in spec.nodes.values() if node.kind == kind]


def _turns(spec: GraphSpec) -> int:
    for edge in spec.edges:
        if edge.if_ == "more_turns":
            return int(edge.args.get("max_turns", 1))
    return 1


def _per_seed(spec: GraphSpec, answers_per_seed: int | None, notes: list[str]) -> tuple[_Tally, dict[str, float],
                                                                                          dict[str, int]]:
    """Calls per model and images per tool of ONE seed when nothing fails (see :func:`estimate`)."""
    # Lazy: node kinds pull in their dependencies; their Params give the exact defaults the run uses.
    tally = _Tally()
    images: dict[str, float] = {}
    max_images: dict[str, int] = {}
    known = {"prompt_expansion", "turn_planner", "assistant_turn", "consistency_check", "branch_pruner",
             "follow_up", "global_judge", "preference_pairs", "seed_answers"}
    for name, node in spec.nodes.items():
        if node.kind not in known and node.model_names():
            notes.append(f"node {name!r} (kind {node.kind}) is not estimated; its model calls are missing")

    # First questions (histories of turn 0).
    histories = 1
    seeded_answers = 0
    expansion = _node_of(spec, "prompt_expansion")
    if expansion is not None:
        _, node = expansion
        p = PromptExpansionParams.model_validate(node.params)
        model = node.model_names()[0] if node.model_names() else None
        if p.levels is not None:
            histories = len(p.levels)
            calls = sum(1 for lv in p.levels if lv.instruction is not None)
        else:
            histories = p.variants if model else 1
            calls = p.variants
        if model:
            tally.add(model, "prompt_expansion", calls, calls)
    answers_node = _node_of(spec, "seed_answers")
    if answers_node is not None:
        sp = SeedAnswersParams.model_validate(answers_node[1].params)
        seeded_answers = answers_per_seed or sp.min_answers
        notes.append(f"assumes {seeded_answers} imported answers per seed"
                     + ("" if answers_per_seed else " (the node's min_answers)"))

    judges = [(n.model_names()[0], ConsistencyCheckParams.model_validate(n.params))
              for n in _nodes_of(spec, "consistency_check") if n.model_names()]
    planner = _node_of(spec, "turn_planner")
    assistant = _node_of(spec, "assistant_turn")
    pruner = _node_of(spec, "branch_pruner")
    follow = _node_of(spec, "follow_up")
    global_judges = [n.model_names()[0] for n in _nodes_of(spec, "global_judge") if n.model_names()]

    def judge(answers: int) -> None:
        for model, _params in judges:
            tally.add(model, "consistency_check", answers, 2 * answers)  # at most one re-ask each

    alive = seeded_answers
    if seeded_answers:
        judge(seeded_answers)
    if planner is not None and assistant is not None:
        tp = TurnPlannerParams.model_validate(planner[1].params)
        ap = AssistantTurnParams.model_validate(assistant[1].params)
        anode = assistant[1]
        names = anode.model_names()
        k = tp.k
        if pruner is not None:
            bp = BranchPrunerParams.model_validate(pruner[1].params)
            keep, max_alive = min(k, bp.keep), bp.max_alive
        else:
            keep, max_alive = k, None
        image_tool = ap.image_tool if ap.image_tool in anode.tools else None
        edit_tool = ap.edit_tool if ap.edit_tool and ap.edit_tool in anode.tools else None
        if ap.protocol == "native":
            image_kinds = {t for t in anode.tools if (spec.tools[t].kind or t) in _IMAGE_KINDS}
            image_tool = next((t for t in anode.tools if (spec.tools[t].kind or t) == "generate_image"), None)
            edit_tool = next((t for t in anode.tools if (spec.tools[t].kind or t) == "edit_image"), None)
            steps = ap.max_steps
        else:
            image_kinds = {t for t in (image_tool, edit_tool) if t}
            # Markers are re-asked only when an image cannot be made: without an image tool, one call.
            steps = ap.max_steps if image_kinds else 1
        turns = _turns(spec) if follow is not None else 1
        nodes = seeded_answers
        for turn in range(turns):
            tasks = min(histories * k, max(0, tp.max_nodes - nodes))
            nodes += tasks
            per_model: dict[str, int] = {}
            for i in range(tasks):  # candidate c of each history goes to models[c % len(models)]
                model = names[(i % k) % len(names)]
                per_model[model] = per_model.get(model, 0) + 1
            for model, n in per_model.items():
                tally.add(model, "assistant_turn", n, n * steps)
            if image_tool:
                images[image_tool] = images.get(image_tool, 0.0) + tasks * IMAGES_PER_ANSWER[0]
                max_images[image_tool] = max_images.get(image_tool, 0) + tasks * IMAGES_PER_ANSWER[1]
            if edit_tool and turn > 0:
                images[edit_tool] = images.get(edit_tool, 0.0) + tasks * EDITS_PER_ANSWER[0]
                max_images[edit_tool] = max_images.get(edit_tool, 0) + tasks * EDITS_PER_ANSWER[1]
            judge(tasks)
            full, partial = divmod(tasks, k)
            alive = full * keep + min(partial, keep)
            if max_alive is not None:
                alive = min(alive, max_alive)
            if turn + 1 < turns and alive:
                model = follow[1].model_names()[0] if follow is not None and follow[1].model_names() else None
                if model:
                    tally.add(model, "follow_up", alive, alive)
                histories = alive
            else:
                break
        if image_kinds:
            notes.append(f"images assume {IMAGES_PER_ANSWER[0]:g} (at most {IMAGES_PER_ANSWER[1]}) per answer and "
                         f"{EDITS_PER_ANSWER[0]:g} (at most {EDITS_PER_ANSWER[1]}) edits per later answer; "
                         "the preflight makes one more per image tool")
    for model in global_judges:
        # One judgement per complete dialogue: the alive leaves of the last turn.
        tally.add(model, "global_judge", alive, 2 * alive)
    return tally, images, max_images


def estimate(spec: GraphSpec, seeds: int, *, answers_per_seed: int | None = None) -> Estimate:
    """Model calls per model and images per image tool that ``seeds`` seeds make, and a cost range.

    The counts follow the run's own rules when nothing fails: the expansion makes ``variants``
    (or one per level) first questions; every turn the planner gives each history ``k``
    candidates (bounded by ``max_nodes``), each answered once and judged once per
    ``consistency_check``; the pruner keeps ``keep`` per history (``max_alive`` in all); each
    survivor gets one follow-up while turns remain (``more_turns``' ``max_turns``); the global
    judge scores each surviving leaf of the last turn. Failed or duplicate answers and user
    simulators that end a dialogue make fewer calls; judge re-asks and answer re-tries make up
    to ``max_calls``; request retries are on top. ``answers_per_seed`` is for graphs that
    judge imported answers (default: ``seed_answers``' ``min_answers``).

    Costs use :data:`TOKEN_ASSUMPTIONS` and litellm's bundled prices; a model litellm does not
    price is "unpriced" (None), never free.

    >>> from interleaf.graphs.loading import load_graph
    >>> e = estimate(load_graph("intermt-lite")[0], 10)
    >>> {name: m.calls for name, m in e.models.items()}
    {'expander': 20, 'assistant': 120, 'judge': 140, 'user_sim': 40}
    """
    if seeds < 0:
        raise ValueError("seeds must be >= 0")
    notes: list[str] = []
    tally, images, max_images = _per_seed(spec, answers_per_seed, notes)
    models: dict[str, ModelEstimate] = {}
    for name in spec.models:
        parts = tally.parts.get(name, [])
        if not parts:
            continue
        model_spec = spec.models[name]
        try:
            provider_model = resolve_env(model_spec.model)
        except KeyError as exc:
            provider_model, price, note = model_spec.model, None, f"model string needs ${exc.args[0]}"
        else:
            price, note = _price(provider_model), ""
        calls = sum(c for _, c, _ in parts) * seeds
        max_calls = sum(m for _, _, m in parts) * seeds
        low = high = None
        if price is not None:
            inp, out = price
            low = high = 0.0
            for kind, c, m in parts:
                t = TOKEN_ASSUMPTIONS.get(kind, _DEFAULT_TOKENS)
                low += c * seeds * (t.prompt_low * inp + t.completion_low * out)
                high += m * seeds * (t.prompt_high * inp + t.completion_high * out)
        models[name] = ModelEstimate(name, provider_model, calls, max_calls, low, high, note)
    tools = {name: ToolEstimate(name, round(images[name] * seeds), max_images.get(name, 0) * seeds)
             for name in spec.tools if name in images}
    notes.append("tokens per call assumed (prompt+completion, low/high): " + "; ".join(
        f"{kind} {t.prompt_low}+{t.completion_low}/{t.prompt_high}+{t.completion_high}"
        for kind, t in TOKEN_ASSUMPTIONS.items() if any(kind == k for ps in tally.parts.values() for k, _, _ in ps)))
    return Estimate(graph=spec.name, seeds=seeds, models=models, tools=tools, notes=notes)
