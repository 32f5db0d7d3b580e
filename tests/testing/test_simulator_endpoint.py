"""The simulator's endpoint problems (wrong key, unknown model, hanging requests) and its /stats,
over real HTTP as an OpenAI client sees them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from interleaf.testing.simulator import Rule, SimAnswer, Simulator

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def own_sim() -> Iterator[Simulator]:
    # Its own server: these options must not leak into the session-wide simulator other tests share.
    with Simulator(seed=3, timeout_delay=5.0) as server:
        yield server


def _post(sim: Simulator, model: str = "assistant", key: str | None = None, messages: list | None = None,
          timeout: float = 10, **extra) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{sim.base_url}/chat/completions", headers=headers, timeout=timeout,
                      json={"model": model, "messages": messages or HI, **extra})


def _stats(sim: Simulator) -> dict:
    return httpx.get(sim.stats_url, timeout=5).json()


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _assert_openai_error(resp: httpx.Response, status: int, code: str | None) -> dict:
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]
    return error


def test_api_key_is_required_when_set(own_sim: Simulator) -> None:
    own_sim.configure(api_key="sk-right-key")
    missing = _assert_openai_error(_post(own_sim), 401, "invalid_api_key")
    wrong = _assert_openai_error(_post(own_sim, key="sk-wrong-key"), 401, "invalid_api_key")
    assert "sk-wrong-key" not in wrong["message"] and missing["message"] != wrong["message"]
    assert _post(own_sim, key="sk-right-key").status_code == 200
    # The model list is behind the same check, as at OpenAI.
    assert httpx.get(f"{own_sim.base_url}/models", timeout=5).status_code == 401
    assert httpx.get(f"{own_sim.base_url}/models", headers={"Authorization": "Bearer sk-right-key"},
                     timeout=5).status_code == 200
    assert _stats(own_sim) == {"requests": 3, "by_model": {"assistant": 3}, "by_status": {"200": 1, "401": 2},
                               "hung": 0}
    own_sim.configure(api_key=None)
    assert _post(own_sim, key="anything").status_code == 200


def test_unknown_model_gets_404_model_not_found(own_sim: Simulator) -> None:
    own_sim.configure(models=["judge", "assistant"])
    error = _assert_openai_error(_post(own_sim, "gpt-5-nonexistent"), 404, "model_not_found")
    assert "gpt-5-nonexistent" in error["message"]
    assert _post(own_sim, "judge").status_code == 200
    listed = httpx.get(f"{own_sim.base_url}/models", timeout=5).json()["data"]
    assert [m["id"] for m in listed] == ["assistant", "judge"]
    assert _stats(own_sim)["by_status"] == {"200": 1, "404": 1}
    own_sim.configure(models=None)
    assert _post(own_sim, "gpt-5-nonexistent").status_code == 200
    with pytest.raises(ValueError):
        own_sim.configure(models="judge")  # one string is a mistake, not a list of one name


def test_key_is_checked_before_the_model(own_sim: Simulator) -> None:
    # A wrong key must not reveal which model names exist.
    own_sim.configure(api_key="sk-right", models=["judge"])
    assert _post(own_sim, "other", key="sk-wrong").status_code == 401
    assert _post(own_sim, "other", key="sk-right").status_code == 404


def test_a_hung_request_never_answers_until_the_client_gives_up(own_sim: Simulator) -> None:
    own_sim.configure(hang_rate=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _post(own_sim, timeout=0.4)
    assert time.monotonic() - started < 2.0
    # Counted as hung once the server notices the client went away; never as an answer.
    _wait_for(lambda: own_sim.stats()["hung"] == 1)
    assert own_sim.stats() == {"requests": 1, "by_model": {"assistant": 1}, "by_status": {}, "hung": 1}
    assert own_sim.in_flight == 0 and own_sim.completed == 0


async def _hang_pattern(sim: Simulator, prompts: list[str]) -> set[str]:
    """Which prompts hang (each sent once, all at once, with a short client timeout)."""
    hung: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=1.5)  # generous: a slow answer must not pass for a hang
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one(prompt: str) -> None:
            try:
                async with session.post(f"{sim.base_url}/chat/completions",
                                        json={"model": "assistant",
                                              "messages": [{"role": "user", "content": prompt}]}) as resp:
                    assert resp.status == 200
                    await resp.json()
            except TimeoutError:
                hung.add(prompt)

        await asyncio.gather(*(one(p) for p in prompts))
    return hung


def test_hang_draws_are_fixed_by_the_request_and_a_retry_draws_again() -> None:
    prompts = [f"question number {i}" for i in range(40)]
    with Simulator(seed=11, hang_rate=0.5) as first:
        hung = asyncio.run(_hang_pattern(first, prompts))
        _wait_for(lambda: first.stats()["hung"] == len(hung))
        # The same requests again: each is its second occurrence, so it draws afresh.
        retried = asyncio.run(_hang_pattern(first, sorted(hung)))
    assert 8 <= len(hung) <= 32, len(hung)
    assert len(retried) < len(hung), "a retried request must be able to succeed"
    with Simulator(seed=11, hang_rate=0.5) as second:
        # Another server, the requests in reverse order: the same requests hang.
        assert asyncio.run(_hang_pattern(second, list(reversed(prompts)))) == hung
        assert asyncio.run(_hang_pattern(second, sorted(hung))) == retried
    with Simulator(seed=12, hang_rate=0.5) as other_seed:
        assert asyncio.run(_hang_pattern(other_seed, prompts)) != hung


def test_stats_count_every_outcome_and_reset(own_sim: Simulator) -> None:
    own_sim.configure(api_key="k", models=["assistant", "judge"])
    assert _post(own_sim, key="k").status_code == 200
    assert _post(own_sim, "judge", key="k").status_code == 200
    assert _post(own_sim, key="bad").status_code == 401
    assert _post(own_sim, "nope", key="k").status_code == 404
    bad_body = httpx.post(f"{own_sim.base_url}/chat/completions", content=b"{not json", timeout=5,
                          headers={"Authorization": "Bearer k"})
    assert bad_body.status_code == 400
    own_sim.configure(fault_rate=1.0, faults=["429"])
    rate_limited = _post(own_sim, key="k")
    assert rate_limited.status_code == 429 and rate_limited.headers["Retry-After"] == "0"
    own_sim.configure(fault_rate=0.0, hang_rate=1.0)
    with pytest.raises(httpx.ReadTimeout):
        _post(own_sim, key="k", timeout=0.3)
    _wait_for(lambda: own_sim.stats()["hung"] == 1)
    expected = {"requests": 7, "by_model": {"assistant": 4, "judge": 1, "nope": 1},
                "by_status": {"200": 2, "400": 1, "401": 1, "404": 1, "429": 1}, "hung": 1}
    assert _stats(own_sim) == own_sim.stats() == expected
    assert expected["requests"] == sum(expected["by_status"].values()) + expected["hung"]
    own_sim.reset_counters()
    assert _stats(own_sim) == {"requests": 0, "by_model": {}, "by_status": {}, "hung": 0}


def test_rules_can_answer_any_status_with_headers(own_sim: Simulator) -> None:
    own_sim.add_rule(Rule(model="forbidden", reply=lambda req: SimAnswer(content="region not served", status=403)))
    own_sim.add_rule(Rule(model="busy", reply=lambda req: SimAnswer(status=503, headers={"Retry-After": "7"})))
    error = _assert_openai_error(_post(own_sim, "forbidden-model"), 403, "unsupported_country_region_territory")
    assert error["message"] == "region not served"
    busy = _post(own_sim, "busy-model")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "7"
    assert busy.json()["error"]["type"] == "server_error"
    assert own_sim.stats()["by_status"] == {"403": 1, "503": 1} and own_sim.completed == 0


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        Simulator(hang_rate=1.5)
    with pytest.raises(ValueError):
        Simulator(api_key="")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_forever_takes_the_new_options() -> None:
    """The ``interleaf sim`` entry point passes key, models and hang rate through (in a real process)."""
    port = _free_port()
    code = ("from interleaf.testing.simulator import serve_forever; "
            f"serve_forever(port={port}, seed=1, api_key='sk-cli', models=['assistant'], hang_rate=0.0)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline() + proc.stdout.readline()
        assert f"127.0.0.1:{port}/v1" in banner and "sk-cli" not in banner, banner
        base = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "assistant", "messages": HI}
        assert httpx.post(base, json=body, headers={"Authorization": "Bearer sk-cli"}, timeout=5).status_code == 200
        assert httpx.post(base, json=body, headers={"Authorization": "Bearer no"}, timeout=5).status_code == 401
        assert httpx.post(base, json={**body, "model": "x"}, headers={"Authorization": "Bearer sk-cli"},
                          timeout=5).status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()["by_status"] == {
            "200": 1, "401": 1, "404": 1}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
