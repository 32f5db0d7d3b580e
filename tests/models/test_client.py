"""ModelClient against the simulator over real HTTP: answers, retries, give-ups, systemic stops,
and that its ledger counts exactly the requests the server received."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from interleaf.errors import SystemicFailure
from interleaf.graphs.spec import GraphSpec, ModelSpec
from interleaf.models.client import ModelCallError, ModelClient
from interleaf.models.health import EndpointKey, endpoint_health, reset_endpoint_health
from interleaf.models.retry import Backoff
from interleaf.run.totals import CallLedger, using_ledger
from interleaf.runtime import Runtime
from interleaf.storage.store import ObjectStore
from interleaf.testing.simulator import FAULT_KINDS, Rule, SimAnswer, Simulator

USER = [{"role": "user", "content": "Draw a lighthouse on a cliff"}]
KEY_REF = "${INTERLEAF_SIM_KEY:-sk-sim-local}"


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    # This module's own server: key, model and hang options must not leak into the shared one.
    with Simulator(seed=5, timeout_delay=5.0) as s:
        yield s


@pytest.fixture
def srv(server: Simulator) -> Iterator[Simulator]:
    def clean() -> None:
        server.configure(latency=0.0, fault_rate=0.0, faults=FAULT_KINDS, api_key=None, models=None, hang_rate=0.0)
        server.rules.clear()
        server.reset_counters()

    clean()
    reset_endpoint_health()
    yield server
    clean()
    reset_endpoint_health()


def _client(sim: Simulator, role: str = "assistant", *, name: str = "m", api_base: str | None = None,
            **options: Any) -> ModelClient:
    spec = ModelSpec(model=f"openai/{role}", api_base=api_base or sim.base_url, api_key=KEY_REF, **options)
    client = ModelClient(name, spec)
    client.backoff = Backoff(initial=0.01, maximum=0.05)  # the tests wait for Retry-After, not for jitter
    return client


def _refused_base() -> str:
    """An address where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _sequence(*answers: SimAnswer) -> Any:
    """A rule reply giving ``answers`` in order, then the last one forever."""
    sent: list[int] = [0]

    def reply(req: Any) -> SimAnswer:
        i = min(sent[0], len(answers) - 1)
        sent[0] += 1
        return answers[i]

    return reply


async def test_answer_accounting_matches_the_server(srv: Simulator) -> None:
    client = _client(srv)
    outer = CallLedger()
    with using_ledger(outer):
        done = await client.complete(USER)
    assert done.text and done.finish_reason == "stop"
    assert done.call.attempts == 1 and done.call.error is None and done.call.cost is None
    assert done.call.prompt_tokens and done.call.completion_tokens
    assert srv.stats() == {"requests": 1, "by_model": {"assistant": 1}, "by_status": {"200": 1}, "hung": 0}
    for totals in (client.ledger.totals, outer.totals):
        assert (totals.calls, totals.failed_calls, totals.unpriced_calls) == (1, 0, 1)
        assert totals.prompt_tokens == done.call.prompt_tokens
    # A model litellm prices gets a cost from the bundled price map.
    priced = _client(srv, "gpt-4o")
    cost = (await priced.complete(USER)).call.cost
    assert cost is not None and cost > 0
    assert priced.ledger.totals.cost == pytest.approx(cost) and priced.ledger.totals.unpriced_calls == 0


async def test_answers_are_deterministic(srv: Simulator) -> None:
    a = await _client(srv).complete(USER, params={"seed": 7})
    b = await _client(srv).complete(USER, params={"seed": 7})
    assert a.text == b.text and a.call.completion_tokens == b.call.completion_tokens
    others = [await _client(srv).complete(USER, params={"seed": s}) for s in range(6)]
    assert len({o.text for o in others}) >= 3
    assert srv.stats()["by_model"] == {"assistant": 8}


@pytest.mark.parametrize("setup, kind, status", [
    ({"rule": SimAnswer(content="region not served", status=403)}, "auth", 403),
    ({"rule": SimAnswer(content="the request is bad", status=400)}, "bad_request", 400),
    ({"rule": SimAnswer(content="no such thing", status=404)}, "not_found", 404),
    ({"api_key": "sk-the-right-one"}, "auth", 401),
    ({"models": ["some-other-model"]}, "not_found", 404),
], ids=["403", "400", "404-rule", "401-wrong-key", "404-unknown-model"])
async def test_client_errors_are_never_retried(srv: Simulator, setup: dict, kind: str, status: int) -> None:
    if "rule" in setup:
        srv.add_rule(Rule(model="assistant", reply=lambda req, a=setup["rule"]: a))
    else:
        srv.configure(**setup)
    client = _client(srv, max_retries=5)
    with pytest.raises(ModelCallError) as failure:
        await client.complete(USER)
    assert (failure.value.kind, failure.value.status, failure.value.attempts) == (kind, status, 1)
    assert "gave up" not in failure.value.reason
    assert srv.stats()["requests"] == 1 and srv.stats()["by_status"] == {str(status): 1}
    assert (client.ledger.totals.calls, client.ledger.totals.failed_calls) == (1, 1)


async def test_429_is_retried_after_the_servers_retry_after(srv: Simulator) -> None:
    srv.add_rule(Rule(model="assistant", reply=_sequence(
        SimAnswer(content="slow down", status=429, headers={"Retry-After": "1"}), SimAnswer(content="fine"))))
    client = _client(srv, max_retries=3)
    client.backoff = Backoff(initial=0.01, maximum=5.0)
    started = time.monotonic()
    done = await client.complete(USER)
    waited = time.monotonic() - started
    assert done.text == "fine" and done.call.attempts == 2
    assert 0.95 <= waited < 3.0, waited  # the jitter alone would have waited ~0.01 s
    assert srv.stats()["by_status"] == {"200": 1, "429": 1}
    assert (client.ledger.totals.calls, client.ledger.totals.failed_calls) == (2, 0)


async def test_retry_after_is_capped_by_the_backoff_maximum(srv: Simulator) -> None:
    srv.add_rule(Rule(model="assistant", reply=_sequence(
        SimAnswer(status=429, headers={"Retry-After": "120"}), SimAnswer(content="fine"))))
    client = _client(srv)
    client.backoff = Backoff(initial=0.01, maximum=0.3)
    started = time.monotonic()
    assert (await client.complete(USER)).text == "fine"
    assert time.monotonic() - started < 2.0


async def test_5xx_is_retried_and_exhaustion_raises(srv: Simulator) -> None:
    srv.add_rule(Rule(model="flaky", reply=_sequence(SimAnswer(status=503), SimAnswer(status=502),
                                                     SimAnswer(content="back"))))
    srv.add_rule(Rule(model="broken", reply=lambda req: SimAnswer(status=500)))
    flaky = _client(srv, "flaky", max_retries=3)
    assert (await flaky.complete(USER)).call.attempts == 3
    broken = _client(srv, "broken", max_retries=2)
    with pytest.raises(ModelCallError, match="gave up after 3 attempts") as failure:
        await broken.complete(USER)
    assert (failure.value.kind, failure.value.status, failure.value.attempts) == ("server_error", 500, 3)
    assert srv.stats()["by_model"] == {"flaky": 3, "broken": 3}
    assert srv.stats()["by_status"] == {"200": 1, "500": 3, "502": 1, "503": 1}
    assert (broken.ledger.totals.calls, broken.ledger.totals.failed_calls) == (3, 1)


async def test_5xx_counts_toward_a_stop_once_per_call_that_gave_up(srv: Simulator) -> None:
    srv.add_rule(Rule(model="assistant", reply=lambda req: SimAnswer(status=500)))
    client = _client(srv, max_retries=2, stop_after_failures=2)
    with pytest.raises(ModelCallError):
        await client.complete(USER)
    with pytest.raises(SystemicFailure):
        await client.complete(USER)
    assert srv.stats()["requests"] == 6  # 3 + 3: the retries of a call do not trip the stop early


async def test_refused_connection_stops_after_the_threshold_then_sends_nothing(srv: Simulator) -> None:
    base = _refused_base()
    client = _client(srv, api_base=base, max_retries=10, stop_after_failures=3)
    started = time.monotonic()
    with pytest.raises(SystemicFailure) as stop:
        await client.complete(USER)
    assert time.monotonic() - started < 5.0
    assert stop.value.failures == 3 and stop.value.endpoint == base and "unreachable" in stop.value.error
    # Three tries, none of which reached an endpoint: no request was sent, one call gave up.
    assert (client.ledger.totals.calls, client.ledger.totals.failed_calls) == (0, 1)
    # Later calls, from this client or another model at the same endpoint, raise at once.
    other = _client(srv, name="other", api_base=base)
    for c in (client, other):
        started = time.monotonic()
        with pytest.raises(SystemicFailure):
            await c.complete(USER)
        assert time.monotonic() - started < 0.5
    assert client.ledger.totals.calls == 0 and other.ledger.totals.calls == 0
    assert other.ledger.totals.failed_calls == 1


async def test_a_bad_key_stops_the_endpoint_and_later_calls_send_nothing(srv: Simulator) -> None:
    srv.configure(api_key="sk-the-right-one")
    client = _client(srv, stop_after_failures=2)
    with pytest.raises(ModelCallError):
        await client.complete(USER)
    with pytest.raises(SystemicFailure, match="failed 2 times in a row"):
        await client.complete(USER)
    for _ in range(3):
        with pytest.raises(SystemicFailure):
            await client.complete(USER)
    assert srv.stats()["requests"] == 2
    assert (client.ledger.totals.calls, client.ledger.totals.failed_calls) == (2, 5)
    # A new run (a reset) sends again.
    reset_endpoint_health()
    srv.configure(api_key=None)
    assert (await client.complete(USER)).text
    assert srv.stats()["requests"] == 3


async def test_an_answer_resets_the_run_of_failures(srv: Simulator) -> None:
    broken = {"on": True}
    srv.add_rule(Rule(model="assistant", reply=lambda req: SimAnswer(status=404) if broken["on"]
                      else SimAnswer(content="ok")))
    client = _client(srv, stop_after_failures=2)
    key = client.endpoint()
    with pytest.raises(ModelCallError):
        await client.complete(USER)
    assert endpoint_health().failures(key) == 1
    broken["on"] = False
    await client.complete(USER)
    assert endpoint_health().failures(key) == 0
    broken["on"] = True
    with pytest.raises(ModelCallError):  # 1 in a row again, not 2: no stop
        await client.complete(USER)
    with pytest.raises(SystemicFailure):
        await client.complete(USER)
    assert key == EndpointKey("openai/assistant", srv.base_url)


async def test_a_hung_endpoint_fails_within_the_timeout(srv: Simulator) -> None:
    srv.configure(hang_rate=1.0)
    client = _client(srv, timeout=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(ModelCallError) as failure:
        await client.complete(USER)
    took = time.monotonic() - started
    assert 0.4 <= took < 2.0, took
    assert failure.value.kind == "timeout" and failure.value.attempts == 1
    deadline = time.monotonic() + 5
    while srv.stats()["hung"] < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert srv.stats() == {"requests": 1, "by_model": {"assistant": 1}, "by_status": {}, "hung": 1}
    assert (client.ledger.totals.calls, client.ledger.totals.failed_calls) == (1, 1)


async def test_timeouts_are_retried_then_count_toward_a_stop(srv: Simulator) -> None:
    srv.configure(hang_rate=1.0)
    client = _client(srv, timeout=0.3, max_retries=1, stop_after_failures=3)
    with pytest.raises(ModelCallError, match="gave up after 2 attempts"):
        await client.complete(USER)
    with pytest.raises(SystemicFailure):  # the third timed-out request in a row
        await client.complete(USER)
    assert client.ledger.totals.calls == 3 and client.ledger.totals.failed_calls == 2


async def test_ledger_equals_the_servers_counts_under_random_faults(srv: Simulator) -> None:
    srv.configure(fault_rate=0.4, faults=["429", "500", "malformed_json", "truncated_stream"])
    client = _client(srv, max_retries=15, stop_after_failures=1000)
    outer = CallLedger()
    with using_ledger(outer):
        results = await asyncio.gather(*(client.complete(USER, params={"seed": i}) for i in range(16)))
    assert all(r.text for r in results)
    stats = srv.stats()
    faults = srv.faults_injected
    assert sum(faults.values()) >= 3, "too few faults drawn for the test to mean anything"
    totals = client.ledger.totals
    assert totals.calls == stats["requests"] == 16 + sum(faults.values())
    assert sum(r.call.attempts for r in results) == totals.calls
    assert totals.failed_calls == 0 and srv.completed == 16
    assert stats["by_status"].get("429", 0) == faults["429"] and stats["by_status"].get("500", 0) == faults["500"]
    # Broken bodies come with a 200 status: the server answered, the client could not read it.
    assert stats["by_status"]["200"] == 16 + faults["malformed_json"] + faults["truncated_stream"]
    assert outer.totals.calls == totals.calls and outer.totals.prompt_tokens == totals.prompt_tokens


async def test_cache_hit_sends_nothing_and_counts_as_cached(srv: Simulator, tmp_path) -> None:
    spec = GraphSpec.model_validate({
        "name": "g", "nodes": {"n": {"kind": "turn_planner"}}, "edges": [],
        "models": {"m": {"model": "openai/assistant", "api_base": srv.base_url, "api_key": KEY_REF, "cache": True}},
    })
    client = Runtime(spec, store=ObjectStore(tmp_path)).model("m")
    first = await client.complete(USER, cache_tag="node:1")
    again = await client.complete(USER, cache_tag="node:1")
    assert again.call.cached and again.text == first.text and again.call.attempts == 0
    assert srv.stats()["requests"] == 1
    await client.complete(USER, cache_tag="node:2")
    assert srv.stats()["requests"] == 2
    totals = client.ledger.totals
    assert (totals.calls, totals.cached_calls, totals.failed_calls) == (2, 1, 0)
    assert len(ObjectStore(tmp_path).list("cache/responses")) == 2


async def test_no_api_key_for_the_openai_provider_is_a_config_error_and_sends_nothing(
        srv: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # litellm's openai provider refuses to send without some key, even to a custom api_base.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for api_key in (None, "${OPENAI_API_KEY:-}"):
        reset_endpoint_health()
        client = ModelClient("m", ModelSpec(model="openai/assistant", api_base=srv.base_url, api_key=api_key,
                                            max_retries=3))
        with pytest.raises(ModelCallError) as failure:
            await client.complete(USER)
        assert failure.value.kind == "config" and failure.value.attempts == 0
        assert "OPENAI_API_KEY" in failure.value.reason and "gave up" not in failure.value.reason
        assert (client.ledger.totals.calls, client.ledger.totals.failed_calls) == (0, 1)
    assert srv.stats()["requests"] == 0


async def test_missing_key_variable_is_a_clear_error(srv: Simulator) -> None:
    spec = ModelSpec(model="openai/assistant", api_base=srv.base_url, api_key="${INTERLEAF_UNSET_KEY_VAR}")
    with pytest.raises(ModelCallError, match="INTERLEAF_UNSET_KEY_VAR"):
        await ModelClient("m", spec).complete(USER)
    assert srv.stats()["requests"] == 0


async def test_api_key_is_sent_but_never_logged_or_kept(srv: Simulator, tmp_path, monkeypatch, caplog) -> None:
    secret = "sk-very-secret-123456"
    monkeypatch.setenv("INTERLEAF_SIM_KEY", secret)
    caplog.set_level(logging.DEBUG)
    client = _client(srv)
    done = await client.complete(USER)
    srv.configure(fault_rate=1.0, faults=["500"])
    with pytest.raises(ModelCallError) as failure:
        await client.complete(USER, params={"seed": 1})
    assert srv.authorizations[f"Bearer {secret}"] >= 2
    assert secret not in caplog.text
    assert secret not in failure.value.reason
    assert secret not in done.model_dump_json()
    assert secret not in client.spec.model_dump_json()


async def test_concurrency_cap_is_respected(srv: Simulator) -> None:
    srv.configure(latency=0.05)
    client = _client(srv, max_concurrency=3)
    await asyncio.gather(*(client.complete(USER, params={"seed": i}) for i in range(12)))
    assert srv.stats()["requests"] == 12
    assert 2 <= srv.peak_concurrency <= 3


async def test_native_tool_calls_pass_through(srv: Simulator) -> None:
    tools = [{"type": "function", "function": {"name": "paint", "description": "d",
                                               "parameters": {"type": "object",
                                                              "properties": {"prompt": {"type": "string"}},
                                                              "required": ["prompt"]}}}]
    done = await _client(srv, "tool").complete(USER, tools=tools)
    assert [c.name for c in done.tool_calls] == ["paint"]
    assert "prompt" in json.loads(done.tool_calls[0].arguments)
    assert done.raw_message["tool_calls"][0]["function"]["name"] == "paint"


async def test_probe_client_fails_fast_on_refused_and_hung_endpoints(srv: Simulator) -> None:
    refused = _client(srv, api_base=_refused_base(), max_retries=5).probe_client(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ModelCallError) as failure:
        await refused.complete(USER)
    assert failure.value.kind == "unreachable" and failure.value.attempts == 0  # never connected: no request
    srv.configure(hang_rate=1.0)
    hung = _client(srv, max_retries=5).probe_client(timeout=0.5)
    with pytest.raises(ModelCallError) as failure:
        await hung.complete(USER)
    assert failure.value.kind == "timeout" and failure.value.attempts == 1
    assert time.monotonic() - started < 3.0
    assert hung.spec.timeout == 0.5 and hung.cache is None


async def test_probe_client_retries_a_429_once(srv: Simulator) -> None:
    srv.add_rule(Rule(model="assistant", reply=_sequence(SimAnswer(status=429), SimAnswer(content="ok"))))
    probe = _client(srv, max_retries=5).probe_client(timeout=2.0)
    assert (await probe.complete(USER)).call.attempts == 2
