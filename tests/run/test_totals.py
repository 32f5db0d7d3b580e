"""The one counting rule: requests, cache hits, calls that gave up, known and unknown prices."""

from __future__ import annotations

import asyncio

from interleaf import RunTotals
from interleaf.run.totals import CallLedger, record_call, using_ledger
from interleaf.state import ModelCall


def _call(**kw: object) -> ModelCall:
    return ModelCall(model="m", provider_model="openai/m", **kw)  # type: ignore[arg-type]


def test_requests_cache_hits_and_give_ups_are_counted_apart() -> None:
    t = RunTotals.of_calls([
        _call(prompt_tokens=10, completion_tokens=2, attempts=3),  # two retries, then an answer
        _call(cached=True, prompt_tokens=10, completion_tokens=2, attempts=0),
        _call(attempts=4, error="gave up after 4 attempts"),
    ])
    assert (t.calls, t.cached_calls, t.failed_calls) == (7, 1, 1)
    assert (t.prompt_tokens, t.completion_tokens) == (10, 2)  # a cache hit costs no tokens
    assert t.unpriced_calls == 1 and t.cost is None and t.cost_text() == "cost unknown"


def test_a_known_part_of_the_cost_is_never_shown_as_the_whole() -> None:
    priced = RunTotals.of_calls([_call(cost=0.25), _call(cost=0.5)])
    mixed = priced.merge(RunTotals.of_calls([_call(cost=None)]))
    assert priced.cost == mixed.cost == 0.75
    assert priced.cost_text() == "cost $0.7500"
    assert mixed.unpriced_calls == 1 and mixed.cost_text() == "cost $0.7500 (+1 calls without a known price)"
    assert RunTotals().cost_text() == "cost $0"


def test_calls_land_in_every_ledger_of_their_context_and_tasks_inherit_it() -> None:
    outer, inner = CallLedger(), CallLedger()

    async def dialogue() -> None:
        with using_ledger(inner):
            await asyncio.gather(*(asyncio.sleep(0, record_call(_call())) for _ in range(2)))

            async def node() -> None:
                record_call(_call(attempts=2))

            await asyncio.create_task(node())  # a task started inside inherits the ledgers

    with using_ledger(outer):
        asyncio.run(dialogue())
    record_call(_call())  # outside every ledger: counted nowhere
    assert inner.totals.calls == 4 and outer.totals.calls == 4


def test_merge_sum_and_round_trip() -> None:
    parts = [RunTotals(seeds=1, done=1, calls=3, failed_branches={"x": 1}),
             RunTotals(seeds=1, failed=1, calls=2, failed_reasons={"no_complete_dialogue": 1},
                       failed_branches={"x": 2})]
    total = RunTotals.sum(parts)
    assert (total.seeds, total.done, total.failed, total.calls) == (2, 1, 1, 5)
    assert total.failed_branches == {"x": 3}
    assert RunTotals.model_validate(total.to_dict()) == total
