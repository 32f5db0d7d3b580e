from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from interleaf.flows.limits import ConcurrencyLimitError, RateLimit, plan_limits, plan_rate_limits
from interleaf.graphs.loading import load_graph_text
from interleaf.testing.simulator import Simulator
from tests.faults.lite_graph import lite_graph_doc, write_seeds

GRAPH = """\
name: limits
models:
  a: {model: openai/a, concurrency_key: vllm-a, max_concurrency: 8}
  b: {model: openai/b, concurrency_key: vllm-a, max_concurrency: 3}
  c: {model: openai/c, max_concurrency: 5}
nodes:
  n: {kind: turn_planner}
edges:
  - {from: START, to: n}
  - {from: n, to: END}
"""


def test_limits_come_from_model_keys_and_parameters() -> None:
    spec, _ = load_graph_text(GRAPH)
    plan = plan_limits(spec, ["gpu-pool"], {"gpu-pool": 2})
    assert plan.names == ("vllm-a", "gpu-pool")
    # Shared endpoint key: the smaller per-model cap sizes the limit when it has to be created.
    assert plan.create_if_missing == {"vllm-a": 3}
    assert plan.upsert == {"gpu-pool": 2}


def test_explicit_size_overrides_model_default() -> None:
    spec, _ = load_graph_text(GRAPH)
    plan = plan_limits(spec, (), {"vllm-a": 20})
    assert plan.names == ("vllm-a",) and plan.upsert == {"vllm-a": 20} and plan.create_if_missing == {}


def test_negative_size_is_rejected() -> None:
    spec, _ = load_graph_text(GRAPH)
    with pytest.raises(ConcurrencyLimitError, match="gpu-pool"):
        plan_limits(spec, (), {"gpu-pool": -1})


def test_rate_limits_are_planned_per_endpoint_key() -> None:
    spec, _ = load_graph_text(GRAPH.replace("max_concurrency: 8}", "max_concurrency: 8, rpm: 600}")
                              .replace("max_concurrency: 3}", "max_concurrency: 3, rpm: 120, tpm: 6000}"))
    plan = plan_rate_limits(spec)
    # a and b share the endpoint key vllm-a: one budget, the smaller rate.
    assert plan.requests["a"] == plan.requests["b"] == RateLimit("interleaf-rpm-vllm-a", 2, 2.0)
    assert plan.tokens["b"] == RateLimit("interleaf-tpm-vllm-a", 1000, 100.0)
    assert "c" not in plan.requests and len(plan.limits) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_creates_rate_limits_and_every_request_takes_a_slot(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.concurrency.asyncio as prefect_concurrency
    from prefect.client.orchestration import get_client

    from interleaf.flows.generate import generate_flow

    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    doc = lite_graph_doc(sim.base_url, k=1, max_turns=1)
    doc["models"]["assistant"]["rpm"] = 6000
    doc["models"]["assistant"]["tpm"] = 600000
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(doc), encoding="utf-8")
    seeds = write_seeds(tmp_path / "seeds.jsonl", 4)
    taken: list[tuple[tuple[str, ...], int]] = []
    real = prefect_concurrency.rate_limit

    async def spy(names: list[str], occupy: int = 1, timeout_seconds: float | None = None,
                  strict: bool = False) -> None:
        taken.append((tuple(names), occupy))
        await real(names, occupy=occupy, timeout_seconds=timeout_seconds, strict=strict)

    monkeypatch.setattr(prefect_concurrency, "rate_limit", spy)
    state = generate_flow(graph=str(graph), seeds=str(seeds), out=str(tmp_path / "out"), shard_size=2,
                          export_format=None, preflight=False, return_state=True)
    assert state.is_completed(), state.message

    async def read() -> tuple[float | None, int]:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name("interleaf-rpm-assistant")
            return limit.slot_decay_per_second, limit.limit

    assert asyncio.run(read()) == (100.0, 100)
    before = [t for t in taken if t[1] == 1 and "interleaf-rpm-assistant" in t[0]]
    charged = [t for t in taken if t[0] == ("interleaf-tpm-assistant",)]
    assistant_requests = sim.stats()["by_model"]["assistant"]
    assert len(before) == assistant_requests > 0  # every request to the rated model, no other
    assert len(charged) == assistant_requests  # and each answer's tokens were charged
