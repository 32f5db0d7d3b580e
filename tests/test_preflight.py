"""Preflight against the simulator over real HTTP (credentials, endpoints, tools), and the estimate
of what a run makes, checked against a real small run of the built-in ``intermt-lite``."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interleaf.errors import PreflightError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph
from interleaf.graphs.spec import GraphSpec
from interleaf.models.client import _litellm
from interleaf.models.health import endpoint_health, reset_endpoint_health
from interleaf.preflight import (
    PROBE_PARAMS,
    PreflightLine,
    PreflightReport,
    apreflight,
    estimate,
    safe_endpoint,
)
from interleaf.run.totals import CallLedger, using_ledger
from interleaf.runtime import Runtime
from interleaf.state import DialogueState, Seed
from interleaf.storage.store import ObjectStore
from interleaf.testing.simulator import FAULT_KINDS, Rule, SimAnswer, Simulator

KEY_VAR = "INTERLEAF_PREFLIGHT_TEST_KEY"
SECRET = "sk-preflight-secret-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    # This module's own server: key, model and hang options must not leak into the shared one.
    with Simulator(seed=9, timeout_delay=5.0) as s:
        yield s


@pytest.fixture
def srv(server: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    def clean() -> None:
        server.configure(latency=0.0, fault_rate=0.0, faults=FAULT_KINDS, api_key=None, models=None, hang_rate=0.0)
        server.rules.clear()
        server.reset_counters()

    monkeypatch.setenv(KEY_VAR, SECRET)
    clean()
    reset_endpoint_health()
    yield server
    clean()
    reset_endpoint_health()


def _refused_base() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _model(base: str, role: str, **options: Any) -> dict[str, Any]:
    return {"model": f"openai/{role}", "api_base": base, "api_key": f"${{{KEY_VAR}}}", **options}


def _runtime(models: dict[str, dict[str, Any]], *, uses: list[str] | None = None,
             tools: dict[str, dict[str, Any]] | None = None, tool_uses: list[str] | None = None,
             spec_dir: Path | None = None, store: ObjectStore | None = None) -> Runtime:
    """A runtime whose one assistant node uses ``uses`` (default: every model) and ``tool_uses``."""
    nodes: dict[str, Any] = {"answer": {"kind": "assistant_turn", "models": uses or list(models),
                                        "tools": tool_uses or []}}
    spec = GraphSpec.model_validate({"name": "pf", "models": models, "tools": tools or {}, "nodes": nodes,
                                     "edges": []})
    return Runtime(spec, spec_dir=spec_dir, store=store)


def _line(report: PreflightReport, name: str) -> PreflightLine:
    return next(line for line in report.lines if line.name == name)


async def test_all_ok_one_probe_per_endpoint_counted_by_the_ledger(srv: Simulator) -> None:
    seen: list[dict[str, Any]] = []

    def record(req: Any) -> SimAnswer:
        seen.append(req.body)
        return SimAnswer(content="OK")

    srv.add_rule(Rule(model="assistant", reply=record))
    rt = _runtime({"a": _model(srv.base_url, "assistant"), "b": _model(srv.base_url, "assistant"),
                   "j": _model(srv.base_url, "judge")})
    ledger = CallLedger()
    with using_ledger(ledger):
        report = await apreflight(rt, timeout=5)
    assert report.ok, report.text()
    assert [(ln.kind, ln.name, ln.ok) for ln in report.lines] == [("model", "a", True), ("model", "b", True),
                                                                  ("model", "j", True)]
    assert "probe shared with model 'a'" in _line(report, "b").detail
    assert _line(report, "j").endpoint == f"openai/judge at {srv.base_url}"
    # One tiny request per distinct endpoint, and the ledger counts exactly what was sent.
    assert srv.stats()["requests"] == 2 == ledger.totals.calls
    assert srv.stats()["by_model"] == {"assistant": 1, "judge": 1}
    assert seen[0]["max_tokens"] == PROBE_PARAMS["max_tokens"] == 1
    assert srv.authorizations[f"Bearer {SECRET}"] == 2
    assert SECRET not in report.text()
    report.raise_for_failure()  # nothing to raise


async def test_models_no_node_uses_are_not_checked(srv: Simulator) -> None:
    rt = _runtime({"used": _model(srv.base_url, "assistant"),
                   "spare": _model(_refused_base(), "assistant", api_key="${INTERLEAF_NEVER_SET_VAR}")},
                  uses=["used"])
    report = await apreflight(rt, timeout=5)
    assert report.ok and [ln.name for ln in report.lines] == ["used"]


async def test_unset_variables_fail_naming_the_variable_and_the_model(srv: Simulator,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTERLEAF_PF_UNSET_KEY", raising=False)
    monkeypatch.delenv("INTERLEAF_PF_UNSET_BASE", raising=False)
    rt = _runtime({
        "judge": _model(srv.base_url, "judge", api_key="${INTERLEAF_PF_UNSET_KEY}"),
        "other": _model("${INTERLEAF_PF_UNSET_BASE}", "assistant"),
        "fine": _model(srv.base_url, "assistant"),
    })
    report = await apreflight(rt, timeout=5)
    assert not report.ok
    judge, other = _line(report, "judge"), _line(report, "other")
    assert not judge.ok and "INTERLEAF_PF_UNSET_KEY" in judge.detail and "'judge'" in judge.detail
    assert "api_key" in judge.detail
    assert not other.ok and "INTERLEAF_PF_UNSET_BASE (api_base)" in other.detail
    assert _line(report, "fine").ok
    assert srv.stats()["requests"] == 1  # only the model without a problem was probed
    with pytest.raises(PreflightError) as failure:
        report.raise_for_failure()
    message = str(failure.value)
    assert "2 of 3 checks" in message and "INTERLEAF_PF_UNSET_KEY" in message and "INTERLEAF_PF_UNSET_BASE" in message
    assert SECRET not in message


async def test_openai_provider_without_any_key_fails_before_sending(srv: Simulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # What litellm really does: its openai provider refuses to send without a key, even to a
    # custom api_base whose server checks none.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rt = _runtime({"none": _model(srv.base_url, "assistant", api_key=None),
                   "empty": _model(srv.base_url, "assistant", api_key="${OPENAI_API_KEY:-}")})
    report = await apreflight(rt, timeout=5)
    for name in ("none", "empty"):
        line = _line(report, name)
        assert not line.ok and "OPENAI_API_KEY is not set" in line.detail and "custom api_base" in line.detail
    assert "resolves to nothing" in _line(report, "empty").detail
    assert "gives no api_key" in _line(report, "none").detail
    assert srv.stats()["requests"] == 0
    # With the provider's variable set, the same models pass and the key is the one sent.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    report = await apreflight(rt, timeout=5)
    assert report.ok, report.text()
    assert srv.authorizations["Bearer sk-from-the-environment"] == 1


async def test_wrong_key_is_a_401_line_and_is_not_retried(srv: Simulator) -> None:
    srv.configure(api_key="sk-the-right-key")
    rt = _runtime({"judge": _model(srv.base_url, "judge", max_retries=5)})
    started = time.monotonic()
    report = await apreflight(rt, timeout=5)
    assert time.monotonic() - started < 3.0
    line = _line(report, "judge")
    assert not line.ok and line.detail.startswith("401: the API key was refused")
    assert srv.stats() == {"requests": 1, "by_model": {"judge": 1}, "by_status": {"401": 1}, "hung": 0}
    assert SECRET not in report.text()


async def test_unknown_model_is_a_404_line(srv: Simulator) -> None:
    srv.configure(models=["judge"])
    rt = _runtime({"judge": _model(srv.base_url, "judge"), "typo": _model(srv.base_url, "jduge")})
    report = await apreflight(rt, timeout=5)
    assert _line(report, "judge").ok
    typo = _line(report, "typo")
    assert not typo.ok and typo.detail.startswith("404") and "jduge" in typo.detail
    assert srv.stats()["by_status"] == {"200": 1, "404": 1}


async def test_nothing_listening_is_a_refused_line_within_seconds(srv: Simulator) -> None:
    base = _refused_base()
    rt = _runtime({"gone": _model(base, "assistant", max_retries=5, timeout=60)})
    ledger = CallLedger()
    _litellm()  # importing litellm takes seconds on a busy machine; the probe's own time is what counts
    started = time.monotonic()
    with using_ledger(ledger):
        report = await apreflight(rt, timeout=5)
    assert time.monotonic() - started < 3.0
    line = _line(report, "gone")
    assert not line.ok and line.detail.startswith("connection refused")
    assert line.endpoint == f"openai/assistant at {base}"
    assert ledger.totals.calls == 0 and ledger.totals.failed_calls == 1  # never connected: no request


async def test_a_hung_endpoint_fails_after_the_probe_timeout(srv: Simulator) -> None:
    srv.configure(hang_rate=1.0)
    rt = _runtime({"slow": _model(srv.base_url, "assistant", timeout=120)})
    started = time.monotonic()
    report = await apreflight(rt, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 3.0
    line = _line(report, "slow")
    assert not line.ok and line.detail.startswith("no answer within 0.5s")


async def test_probes_do_not_trip_the_stop_for_the_run(srv: Simulator) -> None:
    srv.configure(api_key="sk-the-right-key")
    rt = _runtime({"judge": _model(srv.base_url, "judge", stop_after_failures=1)})
    client = rt.model("judge")
    key = client.endpoint()
    report = await apreflight(rt, timeout=5)
    assert not report.ok
    assert endpoint_health().down(key) is None and endpoint_health().failures(key) == 0
    # The key is fixed: the run's first call goes out instead of stopping at once.
    srv.configure(api_key=None)
    assert (await client.complete([{"role": "user", "content": "hi"}])).text
    # An endpoint marked down earlier in this process is probed afresh, not reported down.
    srv.configure(api_key="sk-the-right-key")
    with pytest.raises(Exception, match="failed 1 times"):
        await client.complete([{"role": "user", "content": "hi"}])
    srv.configure(api_key=None)
    before = srv.stats()["requests"]
    assert (await apreflight(rt, timeout=5)).ok
    assert srv.stats()["requests"] == before + 1


async def test_probe_false_sends_nothing_but_still_checks_variables(srv: Simulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTERLEAF_PF_UNSET_KEY", raising=False)
    rt = _runtime({"a": _model(srv.base_url, "assistant"),
                   "b": _model(srv.base_url, "judge", api_key="${INTERLEAF_PF_UNSET_KEY}")})
    report = await apreflight(rt, probe=False)
    assert _line(report, "a").ok and _line(report, "a").detail == "configured (not probed)"
    assert not _line(report, "b").ok
    assert srv.stats()["requests"] == 0


async def test_every_failure_is_listed_in_the_error(srv: Simulator) -> None:
    srv.configure(api_key="sk-the-right-key")
    rt = _runtime({"bad_key": _model(srv.base_url, "judge"), "gone": _model(_refused_base(), "assistant")})
    report = await apreflight(rt, timeout=5)
    with pytest.raises(PreflightError) as failure:
        report.raise_for_failure()
    text = str(failure.value)
    assert "2 of 2 checks" in text and "'bad_key'" in text and "'gone'" in text and "401" in text
    assert "connection refused" in text and SECRET not in text


def test_shown_endpoints_never_carry_credentials() -> None:
    assert safe_endpoint("openai/x", "https://me:sk-1@h.example:8443/v1?api-key=sk-2") == (
        "openai/x at https://h.example:8443/v1")
    assert safe_endpoint("openai/x", None) == "openai/x at the provider's default endpoint"


async def test_tool_checks_run_their_own_preflight(srv: Simulator, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"not checked here")
    (tmp_path / "images.jsonl").write_text(json.dumps({"uri": "a.png", "caption": "a red boat"}) + "\n")
    tools = {"find": {"kind": "retrieve_image", "collection": "images.jsonl"},
             "lost": {"kind": "retrieve_image", "collection": "missing.jsonl"},
             "spare": {"kind": "retrieve_image", "collection": "also-missing.jsonl"}}
    rt = _runtime({"a": _model(srv.base_url, "assistant")}, tools=tools, tool_uses=["find", "lost"],
                  spec_dir=tmp_path)
    report = await apreflight(rt, timeout=5)
    find, lost = _line(report, "find"), _line(report, "lost")
    assert find.ok and find.kind == "tool" and "(1 images)" in find.detail
    assert not lost.ok and "image collection not found" in lost.detail
    assert [ln.name for ln in report.lines] == ["a", "find", "lost"]  # 'spare' is used by no node


async def test_image_tool_makes_one_smallest_image_counted_by_the_ledger(
        srv: Simulator, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pipeline = request.getfixturevalue("tiny_pipeline_dir")
    store = ObjectStore(tmp_path / "run")
    tools = {"draw": {"kind": "generate_image", "model": str(pipeline), "steps": 2, "size": 64, "device": "cpu"}}
    rt = _runtime({"a": _model(srv.base_url, "assistant")}, tools=tools, tool_uses=["draw"], store=store)
    ledger = CallLedger()
    with using_ledger(ledger):
        report = await apreflight(rt, timeout=5)
    await rt.aclose()
    draw = _line(report, "draw")
    assert draw.ok, report.text()
    assert "one 64x64 image in 1 step" in draw.detail
    assert ledger.totals.images == 1 and ledger.totals.calls == 1
    assert store.list() == []  # the test image went to scratch memory, not into the run's store


# -- estimate ------------------------------------------------------------------------------------------


def _tree_spec(*, variants: int = 2, k: int = 2, keep: int = 1, max_turns: int = 3, max_nodes: int = 1000,
               max_alive: int | None = None, judge: bool = True, rate: bool = True) -> GraphSpec:
    models = {m: {"model": f"openai/{m}", "api_base": "http://127.0.0.1:9/v1"} for m in ("x", "a", "b", "j", "u")}
    prune: dict[str, Any] = {"keep": keep}
    if max_alive is not None:
        prune["max_alive"] = max_alive
    nodes: dict[str, Any] = {
        "expand": {"kind": "prompt_expansion", "model": "x", "params": {"variants": variants}},
        "plan": {"kind": "turn_planner", "params": {"k": k, "max_nodes": max_nodes}},
        "answer": {"kind": "assistant_turn", "models": ["a", "b"]},
        "prune": {"kind": "branch_pruner", "params": prune},
        "follow": {"kind": "follow_up", "model": "u"},
    }
    if judge:
        nodes["check"] = {"kind": "consistency_check", "model": "j"}
    if rate:
        nodes["rate"] = {"kind": "global_judge", "model": "j"}
    edges = [{"from": "prune", "if": "more_turns", "args": {"max_turns": max_turns}, "then": "follow",
              "else": "rate" if rate else "END"}]
    return GraphSpec.model_validate({"name": "tree", "models": models, "nodes": nodes, "edges": edges})


def _calls(spec: GraphSpec, seeds: int = 1) -> dict[str, int]:
    return {name: m.calls for name, m in estimate(spec, seeds).models.items()}


def test_estimate_follows_the_tree_rules() -> None:
    # variants 3, k 3, keep 2, 3 turns: histories 3 -> 6 -> 12; answers 9 + 18 + 36 = 63.
    got = _calls(_tree_spec(variants=3, k=3, keep=2, max_turns=3))
    answers = 9 + 18 + 36
    # Candidate c goes to models[c % 2]: candidates 0 and 2 to 'a', 1 to 'b'.
    assert got == {"x": 3, "a": answers * 2 // 3, "b": answers // 3, "j": answers + 24, "u": 6 + 12}
    # max_alive bounds the survivors of each turn tree-wide.
    got = _calls(_tree_spec(variants=3, k=3, keep=2, max_turns=3, max_alive=4))
    assert got["u"] == 4 + 4 and got["j"] == (9 + 12 + 12) + 4
    # max_nodes bounds the planner: with 2 survivors a turn, the third turn gets 20 - 9 - 6 = 5 of its 6 slots.
    got = _calls(_tree_spec(variants=3, k=3, keep=2, max_turns=3, max_nodes=20, max_alive=2))
    assert got["a"] + got["b"] == 9 + 6 + 5 and got["u"] == 2 + 2
    # One turn: no follow-ups; no global judge when the graph has none.
    one = estimate(_tree_spec(max_turns=1, rate=False), 5)
    assert {n: m.calls for n, m in one.models.items()} == {"x": 10, "a": 10, "b": 10, "j": 20}
    assert one.max_calls == one.calls + 20  # each judgement may be re-asked once


def test_estimate_of_the_builtin_graphs() -> None:
    lite = estimate(load_graph("intermt-lite")[0], 3)
    # Per seed: 2 questions; 3 turns of 4 answers; 1 kept per history; 2 follow-ups after turns 0 and 1.
    assert {n: m.calls for n, m in lite.models.items()} == {"expander": 6, "assistant": 36, "judge": 42,
                                                            "user_sim": 12}
    assert lite.calls == 96 and lite.tools == {}
    mirage = estimate(load_graph("mirage-probe")[0], 4)
    # Three levels (two rewritten by the expander), k=2 alternating over two models, one judge per answer.
    assert {n: m.calls for n, m in mirage.models.items()} == {"expander": 8, "reasoning": 12, "chat": 12,
                                                              "judge": 24}
    imported = estimate(load_graph("safesora-judge-import")[0], 3, answers_per_seed=3)
    assert {n: m.calls for n, m in imported.models.items()} == {"judge": 9}
    full = estimate(load_graph("intermt")[0], 1)
    assert full.models["assistant"].calls == 3 + 6 + 12 + 24
    assert full.models["assistant"].max_calls == 4 * full.models["assistant"].calls  # markers re-asked up to max_steps
    assert set(full.tools) == {"generate_image", "edit_image"}
    assert full.tools["generate_image"].images == 45 and full.tools["generate_image"].max_images == 90
    assert full.tools["edit_image"].max_images == 42  # edits only after the first turn


def test_estimate_prices_what_litellm_prices_and_says_unpriced_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTERLEAF_ASSISTANT_MODEL", raising=False)
    monkeypatch.delenv("INTERLEAF_PF_UNSET_MODEL", raising=False)
    lite = estimate(load_graph("intermt-lite")[0], 10)
    assistant = lite.models["assistant"]
    assert assistant.provider_model == "openai/gpt-4o-mini"
    assert assistant.cost_low is not None and assistant.cost_high is not None
    assert 0 < assistant.cost_low < assistant.cost_high
    assert lite.cost_low == pytest.approx(sum(m.cost_low for m in lite.models.values()))
    # gpt-4o-mini: $0.15 / $0.60 per million tokens; 120 answers at 250+150 tokens at the low end.
    assert assistant.cost_low == pytest.approx(120 * (250 * 0.15e-6 + 150 * 0.6e-6))
    text = "\n".join(lite.lines())
    assert "320 model calls" in text and "unpriced" not in text and "tokens per call assumed" in text

    unpriced = estimate(_tree_spec(), 2)
    assert all(m.cost_low is None for m in unpriced.models.values()) and unpriced.cost_low is None
    assert "unpriced" in "\n".join(unpriced.lines())
    spec = _tree_spec()
    spec.models["a"].model = "${INTERLEAF_PF_UNSET_MODEL}"
    assert "needs $INTERLEAF_PF_UNSET_MODEL" in estimate(spec, 1).models["a"].note
    with pytest.raises(ValueError):
        estimate(spec, -1)


async def test_estimate_equals_a_real_small_run_of_intermt_lite(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    roles = {"expander": "expand", "assistant": "assistant", "judge": "judge", "user_sim": "user"}
    seeds = [Seed(id="tides", prompt="Explain how tides work."), Seed(id="logo", prompt="Design a bakery logo."),
             Seed(id="bees", prompt="How do bees make honey?")]
    with Simulator(seed=4) as server:
        monkeypatch.setenv("INTERLEAF_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
        for name, role in roles.items():
            env = {"expander": "EXPANDER", "assistant": "ASSISTANT", "judge": "JUDGE", "user_sim": "USER_SIM"}[name]
            monkeypatch.setenv(f"INTERLEAF_{env}_MODEL", f"openai/{role}")
        spec, doc = load_graph("intermt-lite")
        runtime = Runtime(spec, store=ObjectStore(tmp_path / "store"))
        graph = compile_graph(spec, doc, runtime).build()
        try:
            for seed in seeds:
                final = DialogueState.model_validate(
                    await graph.ainvoke(DialogueState(seed=seed), config={"recursion_limit": 500}))
                assert all(n.status != "failed" for n in final.nodes.values()), "a failed branch makes fewer calls"
        finally:
            await runtime.aclose()
        sent = server.stats()["by_model"]
    expected = estimate(spec, len(seeds))
    assert {roles[n]: m.calls for n, m in expected.models.items()} == sent
    assert expected.calls == sum(sent.values())
