"""One counting rule: summary, shard records, flow result, RunReader and viewer agree.

Two cases where the rules used to differ: a run served fully from the response cache, and a
run mixing a model litellm prices with unpriced ones. Each is run plainly and through the
Prefect flow against the simulator, and every total is checked against what the simulator
received.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from interleaf import RunManifest, RunOptions, RunReader, RunTotals, ShardRecord, layout
from interleaf.datasets.viewer import render_run
from interleaf.flows.generate import generate_flow
from interleaf.launch import run_from_cli
from interleaf.testing.simulator import Simulator
from tests.faults.lite_graph import lite_graph_doc, write_seeds

FIELDS = ("calls", "cached_calls", "prompt_tokens", "completion_tokens")


def _graph(path: Path, base_url: str, case: str) -> Path:
    doc = lite_graph_doc(base_url, k=2, max_turns=2)
    if case == "cache_only":
        for spec in doc["models"].values():
            spec["cache"] = True
    else:
        # The simulator answers any model name without a role word as an assistant; litellm prices this one.
        doc["models"]["assistant"]["model"] = "openai/gpt-4o-mini"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _viewer_totals(run: Path, out: Path) -> dict[str, Any]:
    page = render_run(run, out).read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match[1])["totals"]  # type: ignore[no-any-return]


def _same(a: RunTotals, b: RunTotals | dict[str, Any], what: str) -> None:
    other = b if isinstance(b, dict) else b.to_dict()
    mine = a.to_dict()
    for name in FIELDS:
        assert mine[name] == other[name], f"{what}: {name} {mine[name]} != {other[name]}"
    if mine["cost"] is None or other["cost"] is None:
        assert mine["cost"] == other["cost"], what
    else:
        assert abs(mine["cost"] - other["cost"]) < 1e-9, what


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("case", ["cache_only", "priced_mix"])
def test_every_place_agrees_on_calls_tokens_and_cost(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    graph = _graph(tmp_path / "g.json", sim.base_url, case)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 3)

    # Plain run.
    plain = tmp_path / "plain"
    opts = RunOptions(graph=str(graph), seeds=seeds, out=plain, progress=False, preflight=False)
    if case == "cache_only":
        assert run_from_cli(opts).exit_code == 0  # fills the response cache
        opts.force_new_run = True
    sim.reset_counters()
    summary = run_from_cli(opts).totals
    assert summary.calls == sim.stats()["requests"]
    if case == "cache_only":
        assert summary.calls == 0 and summary.cached_calls > 0
    else:
        assert summary.cost is not None and summary.cost > 0 and summary.unpriced_calls > 0
    statuses = RunTotals.sum(s.totals for s in RunReader.open(plain).statuses().values())
    for what, other in (("reader", RunReader.open(plain).totals()), ("statuses", statuses),
                        ("viewer", _viewer_totals(plain, tmp_path / "view-plain"))):
        _same(summary, other, f"plain {case}: {what}")

    # The same through the Prefect flow (two shards).
    flow = tmp_path / "flow"
    params: dict[str, Any] = {"graph": str(graph), "seeds": str(seeds), "out": str(flow), "shard_size": 2,
                              "export_format": None, "preflight": False}
    if case == "cache_only":
        assert generate_flow(**params, return_state=True).is_completed()
        params["force_new_run"] = True
    sim.reset_counters()
    state = generate_flow(**params, return_state=True)
    assert state.is_completed(), state.message
    result = RunTotals.model_validate(state.result()["totals"])
    assert result.calls == sim.stats()["requests"]
    store = layout.open_store(flow)
    shards = RunTotals.sum(r.totals for r in ShardRecord.load_all(store))
    manifest = RunManifest.load(store)
    assert manifest is not None
    for what, other in (("shard records", shards), ("manifest", manifest.invocations[-1].totals),
                        ("reader", RunReader.open(flow).totals()),
                        ("viewer", _viewer_totals(flow, tmp_path / "view-flow"))):
        _same(result, other, f"flow {case}: {what}")
    # The plain and the orchestrated run made the same calls.
    _same(summary, result, f"{case}: plain vs flow")
