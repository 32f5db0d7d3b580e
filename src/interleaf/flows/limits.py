"""Prefect global concurrency limits shared by every worker of a deployment.

A limit is named per model endpoint (``concurrency_key`` of a YAML ``models:`` entry) or per
GPU pool / anything else (the flow's ``concurrency_limits`` parameter). Every dialogue in
flight holds one slot of each named limit, so N workers on N machines together never run
more dialogues against an endpoint than the limit allows. (Each dialogue then makes its own
calls under the model's per-process ``max_concurrency``.)

Limits live on the Prefect server. Create them with
``prefect gcl create NAME --limit N`` or let the flow create them: it upserts the sizes
passed in ``limit_sizes`` and creates missing model-endpoint limits with the endpoint's
``max_concurrency``. A name that exists nowhere and has no size is an error, because
Prefect itself would silently skip it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from interleaf.errors import InterleafError
from interleaf.graphs.spec import GraphSpec


class ConcurrencyLimitError(InterleafError):
    """A named concurrency limit does not exist on the Prefect server and has no size to create it."""


@dataclass(frozen=True)
class LimitPlan:
    """Which limits a flow run holds, and the sizes to create or set before it starts."""

    names: tuple[str, ...]
    upsert: Mapping[str, int]
    create_if_missing: Mapping[str, int]


def plan_limits(
    spec: GraphSpec,
    extra_names: Sequence[str] = (),
    sizes: Mapping[str, int] | None = None,
) -> LimitPlan:
    """Limit names from the graph's model endpoints plus ``extra_names``; ``sizes`` are set as given."""
    sizes = dict(sizes or {})
    for name, size in sizes.items():
        if size < 0:
            raise ConcurrencyLimitError(f"concurrency limit {name!r}: size must be >= 0, got {size}")
    defaults: dict[str, int] = {}
    ordered: list[str] = []
    for model in spec.models.values():
        key = model.concurrency_key
        if key:
            # Two models sharing one endpoint key: the smaller cap wins.
            defaults[key] = min(defaults.get(key, model.max_concurrency), model.max_concurrency)
            if key not in ordered:
                ordered.append(key)
    for name in [*extra_names, *sizes]:
        if name and name not in ordered:
            ordered.append(name)
    missing_defaults = {k: v for k, v in defaults.items() if k not in sizes}
    return LimitPlan(names=tuple(ordered), upsert=sizes, create_if_missing=missing_defaults)


async def apply_limit_plan(plan: LimitPlan) -> dict[str, int]:
    """Make every limit of ``plan`` exist on the server; returns name -> size as it now stands."""
    if not plan.names:
        return {}
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    sizes: dict[str, int] = {}
    async with get_client() as client:
        for name in plan.names:
            if name in plan.upsert:
                await client.upsert_global_concurrency_limit_by_name(name, plan.upsert[name])
                sizes[name] = plan.upsert[name]
                continue
            try:
                existing = await client.read_global_concurrency_limit_by_name(name)
                sizes[name] = existing.limit
            except ObjectNotFound:
                if name not in plan.create_if_missing:
                    raise ConcurrencyLimitError(
                        f"concurrency limit {name!r} does not exist on the Prefect server: create it with "
                        f"'prefect gcl create {name} --limit N' or pass limit_sizes={{{name!r}: N}}"
                    ) from None
                await client.upsert_global_concurrency_limit_by_name(name, plan.create_if_missing[name])
                sizes[name] = plan.create_if_missing[name]
    return sizes


#: Lease of a held slot, renewed while it is held (every 45 s): the slots of a process that died
#: come back once it runs out, plus up to Prefect's repossessor loop (15 s). 60 s is the
#: shortest lease the Prefect server accepts; its default (300 s) kept a killed worker's share
#: of an endpoint's limit out of use for five minutes.
SLOT_LEASE_S = 60.0


@asynccontextmanager
async def hold_slots(names: Sequence[str], occupy: int = 1) -> AsyncIterator[None]:
    """Hold ``occupy`` slots of every limit in ``names`` (no-op when empty); waits while they are full."""
    if not names:
        yield
        return
    from prefect.concurrency.asyncio import concurrency

    # strict: a limit deleted mid-run must stop the work, not silently lift the cap.
    async with concurrency(list(names), occupy=occupy, strict=True, lease_duration=SLOT_LEASE_S):
        yield


# -- request rate limits ------------------------------------------------------------------------
#: A token limit holds this many seconds' worth of tokens, so one large request fits in it.
TOKEN_BURST_S = 10.0


@dataclass(frozen=True)
class RateLimit:
    """A Prefect global concurrency limit with slot decay: a rate, shared by every worker."""

    name: str
    limit: int
    per_second: float


@dataclass(frozen=True)
class RatePlan:
    """Per ``models:`` entry, its request limit and its token limit (either may be missing)."""

    requests: Mapping[str, RateLimit]
    tokens: Mapping[str, RateLimit]

    @property
    def limits(self) -> list[RateLimit]:
        seen: dict[str, RateLimit] = {}
        for limit in [*self.requests.values(), *self.tokens.values()]:
            seen.setdefault(limit.name, limit)
        return list(seen.values())


def plan_rate_limits(spec: GraphSpec) -> RatePlan:
    """Prefect rate limits for the models with ``rpm`` / ``tpm``, named by endpoint key.

    Models sharing a ``concurrency_key`` share one budget (the smaller rate wins). A request
    limit lets one second's worth of requests start together; a token limit holds
    :data:`TOKEN_BURST_S` seconds' worth of tokens.

    >>> spec = GraphSpec.model_validate({"name": "g", "models": {"a": {"model": "openai/x", "rpm": 600},
    ...     "b": {"model": "openai/y", "tpm": 60000}}, "nodes": {"n": {"kind": "turn_planner"}}, "edges": []})
    >>> plan = plan_rate_limits(spec)
    >>> plan.requests["a"]
    RateLimit(name='interleaf-rpm-a', limit=10, per_second=10.0)
    >>> plan.tokens["b"]
    RateLimit(name='interleaf-tpm-b', limit=10000, per_second=1000.0)
    """
    by_key: dict[tuple[str, str], float] = {}
    for name, model in spec.models.items():
        key = model.concurrency_key or name
        for kind, rate in (("rpm", model.rpm), ("tpm", model.tpm)):
            if rate is not None:
                by_key[(kind, key)] = min(by_key.get((kind, key), rate), rate)
    requests: dict[str, RateLimit] = {}
    tokens: dict[str, RateLimit] = {}
    for name, model in spec.models.items():
        key = model.concurrency_key or name
        if model.rpm is not None:
            per_s = by_key[("rpm", key)] / 60.0
            requests[name] = RateLimit(f"interleaf-rpm-{key}", max(1, math.ceil(per_s)), per_s)
        if model.tpm is not None:
            per_s = by_key[("tpm", key)] / 60.0
            tokens[name] = RateLimit(f"interleaf-tpm-{key}", max(1, math.ceil(per_s * TOKEN_BURST_S)), per_s)
    return RatePlan(requests=requests, tokens=tokens)


async def apply_rate_plan(plan: RatePlan) -> None:
    """Create or update every rate limit of ``plan`` on the Prefect server (sizes follow the graph)."""
    if not plan.limits:
        return
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for limit in plan.limits:
            await client.upsert_global_concurrency_limit_by_name(limit.name, limit.limit,
                                                                 slot_decay_per_second=limit.per_second)


class PrefectRequestGate:
    """Every request waits for a slot of its model's Prefect rate limit (slots decay at the
    rate), and a token limit is charged with each answer's real usage, so all shards on all
    workers together keep to ``rpm`` / ``tpm``.

    Each request costs one or two calls to the Prefect API, small next to a model call.
    """

    def __init__(self, plan: RatePlan):
        self.plan = plan

    async def before(self, model: str) -> None:
        from prefect.concurrency.asyncio import rate_limit

        names = [limit.name for limit in (self.plan.requests.get(model), self.plan.tokens.get(model)) if limit]
        if names:
            # strict: a limit deleted mid-run must stop the work, not silently lift the rate.
            await rate_limit(names, occupy=1, strict=True)

    async def after(self, model: str, tokens: int) -> None:
        limit = self.plan.tokens.get(model)
        if limit is None or tokens <= 1:
            return
        from prefect.concurrency.asyncio import rate_limit

        # One token was taken before the request; a request larger than the burst takes it all.
        await rate_limit([limit.name], occupy=min(tokens - 1, limit.limit), strict=True)
