"""ModelClient against the simulator over real HTTP."""

import asyncio
import json
import logging

import pytest

from interleaf.graphs.spec import GraphSpec, ModelSpec
from interleaf.models.client import ModelCallError, ModelClient
from interleaf.runtime import Runtime
from interleaf.storage.store import ObjectStore
from interleaf.testing.simulator import Simulator

USER = [{"role": "user", "content": "Draw a lighthouse on a cliff"}]


def _client(sim: Simulator, role: str = "assistant", runtime: Runtime | None = None, **options) -> ModelClient:
    spec = ModelSpec(model=f"openai/{role}", api_base=sim.base_url, api_key="${INTERLEAF_SIM_KEY:-sk-sim-local}",
                     **options)
    return ModelClient("m", spec, runtime)


async def test_completion_accounting_and_unknown_cost_is_none(sim: Simulator) -> None:
    unknown = await _client(sim).complete(USER)
    assert unknown.text and unknown.finish_reason == "stop"
    assert unknown.call.cost is None
    assert unknown.call.prompt_tokens and unknown.call.completion_tokens
    priced = _client(sim, "gpt-4o")
    done = await priced.complete(USER)
    assert done.call.cost is not None and done.call.cost > 0
    assert priced.totals.calls == 1 and priced.totals.cost == pytest.approx(done.call.cost)
    assert sim.requests == 2


async def test_answers_are_deterministic(sim: Simulator) -> None:
    a = await _client(sim).complete(USER, params={"seed": 7})
    b = await _client(sim).complete(USER, params={"seed": 7})
    assert a.text == b.text and a.call.completion_tokens == b.call.completion_tokens
    others = [await _client(sim).complete(USER, params={"seed": s}) for s in range(8)]
    assert len({o.text for o in others}) >= 3
    assert sim.requests_by_model["assistant"] == 10


async def test_transient_faults_are_retried_until_success(sim: Simulator) -> None:
    sim.configure(fault_rate=0.5, faults=["429", "500", "malformed_json", "truncated_stream"])
    client = _client(sim, max_retries=12)
    client.backoff = type(client.backoff)(initial=0.01, maximum=0.05)
    results = await asyncio.gather(*(client.complete(USER, params={"seed": i}) for i in range(12)))
    assert all(r.text for r in results)
    assert sum(sim.faults_injected.values()) > 0
    assert client.totals.attempts == sim.requests == 12 + sum(sim.faults_injected.values())


async def test_timeouts_are_retried_and_exhaustion_raises(sim: Simulator) -> None:
    sim.configure(fault_rate=1.0, faults=["timeout"])
    client = _client(sim, max_retries=1, timeout=0.3)
    client.backoff = type(client.backoff)(initial=0.01, maximum=0.02)
    with pytest.raises(ModelCallError, match="gave up after 2 attempts"):
        await client.complete(USER)
    assert sim.requests == 2 and client.totals.failed_calls == 1


async def test_non_retryable_error_fails_at_once(sim: Simulator) -> None:
    client = _client(sim)
    with pytest.raises(ModelCallError):
        await client.complete([{"role": "user", "content": [{"type": "nonsense"}]}, "not a message"])  # type: ignore[list-item]
    assert sim.requests <= 1


async def test_concurrency_cap_is_respected(sim: Simulator) -> None:
    sim.configure(latency=0.05)
    client = _client(sim, max_concurrency=3)
    await asyncio.gather(*(client.complete(USER, params={"seed": i}) for i in range(15)))
    assert sim.requests == 15
    assert 2 <= sim.peak_concurrency <= 3


async def test_cache_hit_makes_no_http_call(sim: Simulator, tmp_path) -> None:
    runtime = Runtime(GraphSpec(name="g", nodes={"n": {"kind": "x"}}, edges=[]), store=ObjectStore(tmp_path))
    client = _client(sim, runtime=runtime, cache=True)
    first = await client.complete(USER, cache_tag="node:1")
    assert sim.requests == 1 and not first.call.cached
    again = await client.complete(USER, cache_tag="node:1")
    assert sim.requests == 1
    assert again.call.cached and again.text == first.text and again.call.cost is None
    await client.complete(USER, cache_tag="node:2")
    assert sim.requests == 2
    assert len(runtime.require_store().list("cache/responses")) == 2


async def test_api_key_is_sent_but_never_logged_or_kept(sim: Simulator, tmp_path, monkeypatch, caplog) -> None:
    secret = "sk-very-secret-123456"
    monkeypatch.setenv("INTERLEAF_SIM_KEY", secret)
    runtime = Runtime(GraphSpec(name="g", nodes={"n": {"kind": "x"}}, edges=[]), store=ObjectStore(tmp_path))
    client = _client(sim, runtime=runtime, cache=True)
    caplog.set_level(logging.DEBUG)
    done = await client.complete(USER)
    sim.configure(fault_rate=1.0, faults=["500"])
    client.backoff = type(client.backoff)(initial=0.01, maximum=0.01)
    with pytest.raises(ModelCallError) as failure:
        await client.complete(USER, params={"seed": 1})
    assert sim.authorizations[f"Bearer {secret}"] >= 2
    assert secret not in caplog.text
    assert secret not in failure.value.reason
    assert secret not in done.model_dump_json()
    assert secret not in client.spec.model_dump_json()
    for key in runtime.require_store().list():
        assert secret not in runtime.require_store().get_bytes(key).decode("utf-8", "replace")


async def test_missing_key_variable_is_a_clear_error(sim: Simulator) -> None:
    spec = ModelSpec(model="openai/assistant", api_base=sim.base_url, api_key="${INTERLEAF_UNSET_KEY_VAR}")
    with pytest.raises(ModelCallError, match="INTERLEAF_UNSET_KEY_VAR"):
        await ModelClient("m", spec).complete(USER)
    assert sim.requests == 0


async def test_native_tool_calls_pass_through(sim: Simulator) -> None:
    tools = [{"type": "function", "function": {"name": "paint", "description": "d",
                                               "parameters": {"type": "object",
                                                              "properties": {"prompt": {"type": "string"}},
                                                              "required": ["prompt"]}}}]
    done = await _client(sim, "tool").complete(USER, tools=tools)
    assert [c.name for c in done.tool_calls] == ["paint"]
    assert "prompt" in json.loads(done.tool_calls[0].arguments)
    assert done.raw_message["tool_calls"][0]["function"]["name"] == "paint"
