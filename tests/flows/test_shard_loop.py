"""Parallel shards of one process share one event loop, so litellm's logging worker stays quiet.

litellm keeps one process-wide logging worker bound to the loop that first used it. Shards
run as async tasks of Prefect's thread pool each got their own ``asyncio.run`` loop, and the
worker hopped between them: "cannot reuse already awaited coroutine" and "Task was destroyed
but it is pending!" in every worker's log, with success callbacks run twice or dropped.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pytest

from interleaf.flows.generate import generate_flow
from interleaf.testing.simulator import Simulator
from tests.faults.lite_graph import write_lite_graph, write_seeds

NOISE = ("Task was destroyed but it is pending", "cannot reuse already awaited coroutine",
         "LoggingWorker: event loop changed", "LoggingWorker error")


@pytest.mark.usefixtures("prefect_harness")
def test_parallel_shards_leave_no_litellm_loop_noise(tmp_path: Path, sim: Simulator, capfd: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    sim.configure(latency=0.05)  # calls of different shards overlap
    graph = write_lite_graph(tmp_path / "g.json", sim.base_url, k=2, max_turns=1)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 6)
    caplog.set_level(logging.DEBUG, logger="LiteLLM")
    caplog.set_level(logging.ERROR, logger="asyncio")
    state = generate_flow(graph=str(graph), seeds=str(seeds), out=str(tmp_path / "out"), shard_size=2,
                          max_parallel_shards=3, export_format=None, preflight=False, return_state=True)
    assert state.is_completed(), state.message
    totals = state.result()["totals"]
    assert totals["done"] == 6 and totals["calls"] == sim.stats()["requests"] > 6
    gc.collect()  # "Task was destroyed" is logged when a dropped task is collected
    captured = capfd.readouterr()
    text = captured.out + captured.err + caplog.text
    found = [n for n in NOISE if n in text]
    assert not found, f"litellm/asyncio noise: {found}\n{text[-3000:]}"
