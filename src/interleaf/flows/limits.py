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


@asynccontextmanager
async def hold_slots(names: Sequence[str], occupy: int = 1) -> AsyncIterator[None]:
    """Hold ``occupy`` slots of every limit in ``names`` (no-op when empty); waits while they are full."""
    if not names:
        yield
        return
    from prefect.concurrency.asyncio import concurrency

    # strict: a limit deleted mid-run must stop the work, not silently lift the cap.
    async with concurrency(list(names), occupy=occupy, strict=True):
        yield
