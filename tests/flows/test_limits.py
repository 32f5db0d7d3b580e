from __future__ import annotations

import pytest

from interleaf.flows.limits import ConcurrencyLimitError, plan_limits
from interleaf.graphs.loading import load_graph_text

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
