"""Request and token rate limits (``rpm`` / ``tpm``): spacing, the token bucket, shares, and a
client that keeps to them against the simulator."""

from __future__ import annotations

import asyncio
import time

import pytest

from interleaf.graphs.spec import ModelSpec
from interleaf.models.client import ModelClient
from interleaf.models.ratelimit import RateLimiter, shared_limiter, using_request_gate
from interleaf.testing.simulator import Simulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_are_spaced_after_one_seconds_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, clock=clock)  # 2 a second
    waits = [limiter._reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5])
    clock.now += 10  # idle time does not bank more than the burst
    assert [limiter._reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_the_token_bucket_makes_requests_wait_for_used_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=600, clock=clock)  # 10 tokens a second, 600 banked at most
    assert limiter._reserve() == 0.0
    limiter.used(650)  # an answer larger than what was left: the next request waits for the debt
    assert limiter._reserve() == pytest.approx(5.0, abs=0.01)
    clock.now += 5.0
    assert limiter._reserve() == pytest.approx(0.0, abs=0.01)


def test_a_share_is_a_part_of_the_limits_and_limiters_are_shared_per_model() -> None:
    part = RateLimiter(rpm=120, tpm=9000).share(3)
    assert (part.rpm, part.tpm) == (40, 3000)
    assert not RateLimiter().limited and RateLimiter(rpm=1).limited
    a = shared_limiter(("test", "m"), 60, None, parts=2)
    assert a is shared_limiter(("test", "m"), 60, None, parts=2) and a.rpm == 30
    with pytest.raises(ValueError, match="rpm"):
        RateLimiter(rpm=0)


async def test_a_client_keeps_to_its_rpm_and_splits_it_between_processes(simulator: Simulator) -> None:
    simulator.reset_counters()
    spec = ModelSpec(model="openai/assistant", api_base=simulator.base_url, api_key="sk-sim-local", rpm=240)
    messages = [{"role": "user", "content": "hello"}]
    # A fresh name per client: limiters are shared per model in a process.
    whole = ModelClient(f"rpm-whole-{time.monotonic_ns()}", spec)
    t0 = time.monotonic()
    await asyncio.gather(*(whole.complete(messages) for _ in range(8)))
    whole_s = time.monotonic() - t0
    # 4 a second, 4 at once: the last of 8 starts about a second after the first.
    assert whole_s >= 0.9
    half = ModelClient(f"rpm-half-{time.monotonic_ns()}", spec, processes=2)
    assert half.rate.rpm == 120 and half.spec.max_concurrency == spec.max_concurrency // 2
    t0 = time.monotonic()
    await asyncio.gather(*(half.complete(messages) for _ in range(8)))
    assert time.monotonic() - t0 >= 2.4  # 2 a second: 6 of the 8 wait 0.5 s each after the burst
    assert simulator.stats()["requests"] == 16


async def test_a_request_gate_sees_every_request_and_its_tokens(simulator: Simulator) -> None:
    seen: list[tuple[str, str, int]] = []

    class Gate:
        async def before(self, model: str) -> None:
            seen.append(("before", model, 0))

        async def after(self, model: str, tokens: int) -> None:
            seen.append(("after", model, tokens))

    client = ModelClient("gated", ModelSpec(model="openai/assistant", api_base=simulator.base_url,
                                            api_key="sk-sim-local"))
    with using_request_gate(Gate()):
        done = await asyncio.gather(*(client.complete([{"role": "user", "content": "hi"}]) for _ in range(3)))
    await client.complete([{"role": "user", "content": "outside the gate's context"}])
    assert [kind for kind, _, _ in seen].count("before") == 3
    used = sorted(t for kind, _, t in seen if kind == "after")
    assert used == sorted((d.call.prompt_tokens or 0) + (d.call.completion_tokens or 0) for d in done)
