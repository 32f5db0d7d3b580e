"""What a run did and cost, counted by one rule.

:class:`RunTotals` is the single record of seeds, model calls, tokens, cost and outcomes.
The run summary, each dialogue's status file, Prefect shard records and flow results, the
manifest's invocations, :class:`~interleaf.run.reader.RunReader` and the viewer all carry
it, so they cannot disagree. The counting rule lives in :meth:`RunTotals.add_call`:

- ``calls``: requests sent to a model endpoint, every attempt (retries and failures too);
- ``cached_calls``: answers served from the response cache (no request was sent);
- ``failed_calls``: model calls that gave up (their attempts are in ``calls``);
- tokens: as the provider reported them on answered requests;
- ``cost``: the sum of the known prices, ``None`` while no call had one; calls without a
  price are counted in ``unpriced_calls`` (an unknown price is never taken as free).

Model clients record every call into the :class:`CallLedger` of the current context
(:func:`using_ledger`), so calls are attributed to the dialogue that made them whichever
node made them (prompt expansion and the global judge included).

Example:
    >>> from interleaf.state import ModelCall
    >>> t = RunTotals()
    >>> t.add_call(ModelCall(model="a", provider_model="openai/a", prompt_tokens=3, cost=0.5, attempts=2))
    >>> t.add_call(ModelCall(model="b", provider_model="openai/b", cached=True))
    >>> (t.calls, t.cached_calls, t.cost, t.unpriced_calls)
    (2, 1, 0.5, 0)
"""

from __future__ import annotations

import contextvars
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from interleaf.state import DialogueState, ModelCall

_NODE_ID = re.compile(r"\bv\d+(?:\.\d+)*\b")
_COUNTERS = ("seeds", "done", "failed", "pending", "skipped", "calls", "cached_calls", "failed_calls",
             "prompt_tokens", "completion_tokens", "unpriced_calls", "images")
_REASONS = ("failed_reasons", "failed_branches", "pruned_branches", "fallbacks")


def reason_category(reason: str) -> str:
    """A reason without its specifics (node ids, scores), so alike reasons count together.

    >>> reason_category("v0.1 scored 0.2 below 0.5: too weak")
    '<node> scored 0.2 below 0.5'
    """
    head = reason.split(":", 1)[0]
    return _NODE_ID.sub("<node>", head).strip() or "unspecified"


def _add_counts(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    return dict(Counter(left) + Counter(right))


class RunTotals(BaseModel):
    """Seeds, outcomes, calls, tokens, cost and time of a run, an invocation, a shard or a dialogue."""

    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    seeds: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    unpriced_calls: int = 0
    images: int = 0
    seconds: float = 0.0
    failed_reasons: dict[str, int] = Field(default_factory=dict)
    failed_branches: dict[str, int] = Field(default_factory=dict)
    pruned_branches: dict[str, int] = Field(default_factory=dict)
    fallbacks: dict[str, int] = Field(default_factory=dict)

    # -- the counting rule ----------------------------------------------------------------------
    def add_call(self, call: ModelCall) -> None:
        """Count one model call (the one rule; see the module docstring)."""
        if call.cached:
            self.cached_calls += 1
            return
        self.calls += max(0, call.attempts)
        if call.error is not None:
            self.failed_calls += 1
            return
        self.prompt_tokens += call.prompt_tokens or 0
        self.completion_tokens += call.completion_tokens or 0
        if call.cost is None:
            self.unpriced_calls += 1
        else:
            self.cost = (self.cost or 0.0) + call.cost

    @classmethod
    def of_calls(cls, calls: Iterable[ModelCall]) -> RunTotals:
        """Totals of recorded calls."""
        totals = cls()
        for call in calls:
            totals.add_call(call)
        return totals

    def add_outcomes(self, state: DialogueState) -> None:
        """Count a dialogue's failed and pruned branches and expansion fallbacks, by reason."""
        failed: Counter[str] = Counter()
        pruned: Counter[str] = Counter()
        for node in state.nodes.values():
            if node.status == "failed":
                failed[reason_category(node.reason or "")] += 1
            elif node.status == "pruned":
                pruned[reason_category(node.reason or "")] += 1
        fallbacks: Counter[str] = Counter()
        for prompt in state.prompts:
            how = str(prompt.tags.get("expansion") or "")
            if how.startswith("fallback"):
                fallbacks[reason_category(how.partition(":")[2].strip() or how)] += 1
        self.failed_branches = _add_counts(self.failed_branches, dict(failed))
        self.pruned_branches = _add_counts(self.pruned_branches, dict(pruned))
        self.fallbacks = _add_counts(self.fallbacks, dict(fallbacks))

    # -- combining ------------------------------------------------------------------------------
    def merge(self, other: RunTotals) -> RunTotals:
        """A new record adding ``other`` to this one (seconds add up too)."""
        out: dict[str, Any] = {name: getattr(self, name) + getattr(other, name) for name in _COUNTERS}
        out["seconds"] = self.seconds + other.seconds
        out["cost"] = None if self.cost is None and other.cost is None else (self.cost or 0.0) + (other.cost or 0.0)
        for name in _REASONS:
            out[name] = _add_counts(getattr(self, name), getattr(other, name))
        return RunTotals(**out)

    @classmethod
    def sum(cls, parts: Iterable[RunTotals]) -> RunTotals:
        total = cls()
        for part in parts:
            total = total.merge(part)
        return total

    def calls_only(self) -> RunTotals:
        """The call, token and cost fields alone (no seed counts or reasons)."""
        return RunTotals(calls=self.calls, cached_calls=self.cached_calls, failed_calls=self.failed_calls,
                         prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                         cost=self.cost, unpriced_calls=self.unpriced_calls, images=self.images)

    # -- showing --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data["cost"] is not None:
            data["cost"] = round(data["cost"], 6)
        data["seconds"] = round(data["seconds"], 3)
        return data

    def cost_text(self) -> str:
        if self.cost is None:
            return "cost unknown" if self.unpriced_calls else "cost $0"
        text = f"cost ${self.cost:.4f}"
        if self.unpriced_calls:
            text += f" (+{self.unpriced_calls} calls without a known price)"
        return text

    def describe(self) -> str:
        """A short human-readable report: outcomes, calls, tokens, cost, reasons."""
        seeds = [f"{self.done} done", f"{self.failed} failed"]
        if self.pending:
            seeds.append(f"{self.pending} pending")
        if self.skipped:
            seeds.append(f"{self.skipped} already done")
        calls = f"{self.calls} model requests"
        extra = []
        if self.cached_calls:
            extra.append(f"{self.cached_calls} from cache")
        if self.failed_calls:
            extra.append(f"{self.failed_calls} calls gave up")
        if extra:
            calls += f" ({', '.join(extra)})"
        parts = [", ".join(seeds), calls, f"{self.prompt_tokens}+{self.completion_tokens} tokens", self.cost_text()]
        if self.images:
            parts.append(f"{self.images} images")
        lines = ["; ".join([*parts, f"{self.seconds:.1f}s"])]
        for label, counts in (("failed seeds", self.failed_reasons), ("failed branches", self.failed_branches),
                              ("pruned branches", self.pruned_branches), ("expansion fallbacks", self.fallbacks)):
            if counts:
                lines.append(f"{label}: " + ", ".join(f"{r} x{n}" for r, n in sorted(counts.items())))
        return "\n".join(lines)


class CallLedger:
    """Running totals of the calls made under it (a dialogue, a preflight, a client)."""

    __slots__ = ("totals",)

    def __init__(self) -> None:
        self.totals = RunTotals()

    def record(self, call: ModelCall) -> None:
        self.totals.add_call(call)

    def record_image(self, count: int = 1) -> None:
        self.totals.images += count


_ledgers: contextvars.ContextVar[tuple[CallLedger, ...]] = contextvars.ContextVar("interleaf_ledgers", default=())


@contextmanager
def using_ledger(ledger: CallLedger) -> Iterator[CallLedger]:
    """Record every call made in this context (and tasks started from it) into ``ledger`` too."""
    token = _ledgers.set((*_ledgers.get(), ledger))
    try:
        yield ledger
    finally:
        _ledgers.reset(token)


def record_call(call: ModelCall) -> None:
    """Record ``call`` in every ledger of the current context (model clients call this)."""
    for ledger in _ledgers.get():
        ledger.record(call)


def record_images(count: int = 1) -> None:
    """Record generated images in every ledger of the current context (image tools call this)."""
    for ledger in _ledgers.get():
        ledger.record_image(count)
