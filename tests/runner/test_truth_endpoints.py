"""A run tells the truth about its endpoints: exact accounting, preflight, systemic stop.

Every test talks to the simulator over real HTTP through litellm and checks interleaf's own
counts against the simulator's ``/stats``.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from interleaf import RunManifest, RunReader, layout, run_status
from interleaf.datasets.viewer import render_run
from interleaf.run.records import read_statuses
from interleaf.run.totals import RunTotals
from interleaf.testing.simulator import Simulator
from tests.faults.cli import invoke
from tests.faults.lite_graph import write_lite_graph, write_seeds


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(graph: Path, seeds: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    result = invoke(["run", str(graph), "--seeds", str(seeds), "--out", str(out), "--quiet", *extra])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("fault_rate", [0.0, 0.3])
def test_every_request_sent_is_counted_once_everywhere(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch, fault_rate: float
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    sim.configure(fault_rate=fault_rate)
    graph = write_lite_graph(tmp_path / "g.json", sim.base_url, timeout=1.0, max_retries=4)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 4)
    out = tmp_path / "out"
    code, stdout, _ = _run(graph, seeds, out)
    served = sim.stats()["requests"]
    assert code in (0, 1) and served > 0

    manifest = RunManifest.load(layout.open_store(out))
    assert manifest is not None and len(manifest.invocations) == 1
    invocation = manifest.invocations[0].totals
    # The invocation counts every request the simulator received: preflight, expansion,
    # answers, judges, follow-ups, retries and calls that gave up.
    assert invocation.calls == served
    assert f"{served} model requests" in stdout
    # Statuses hold the dialogues' own calls; the rest is the preflight (one per endpoint).
    per_dialogue = RunTotals.sum(s.totals for s in read_statuses(layout.open_store(out)).values())
    endpoints = 4  # expander, assistant, judge, user_sim: one simulator role each
    probes = served - per_dialogue.calls
    assert probes == endpoints if not fault_rate else endpoints <= probes <= 2 * endpoints  # a probe retries once
    reader_totals = RunReader.open(out).totals()
    status = run_status(out).to_dict()
    assert reader_totals.calls == status["calls"] == served
    assert reader_totals.prompt_tokens == invocation.prompt_tokens == status["prompt_tokens"]
    # The viewer shows the same totals.
    page = render_run(out, tmp_path / "view").read_text(encoding="utf-8")
    shown = json.loads(re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)[1])
    assert shown["totals"]["calls"] == served and shown["totals"]["prompt_tokens"] == invocation.prompt_tokens
    assert status["seeds"] == 4 and status["done"] + status["failed"] == 4
    if fault_rate:
        # Retries are requests too: more requests than answered or abandoned calls (no model here is priced).
        assert invocation.unpriced_calls + invocation.failed_calls < invocation.calls
        assert sim.stats()["by_status"].get("200", 0) < served  # faults really were served

    # Same command again: nothing left, so no preflight and no request at all.
    sim.reset_counters()
    code2, stdout2, _ = _run(graph, seeds, out)
    if code == 0:
        assert code2 == 0 and sim.stats()["requests"] == 0 and "0 model requests" in stdout2


def test_a_run_served_from_the_cache_counts_no_requests(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    doc = json.loads(write_lite_graph(tmp_path / "g.json", sim.base_url).read_text())
    for spec in doc["models"].values():
        spec["cache"] = True
    graph = tmp_path / "cached.json"
    graph.write_text(json.dumps(doc))
    seeds = write_seeds(tmp_path / "seeds.jsonl", 2)
    out = tmp_path / "out"
    assert _run(graph, seeds, out)[0] == 0
    first = sim.stats()["requests"]
    sim.reset_counters()
    # A new run id over the same folder: every answer comes from the response cache.
    code, stdout, _ = _run(graph, seeds, out, "--force-new-run", "--no-preflight")
    assert code == 0
    assert sim.stats()["requests"] == 0
    manifest = RunManifest.load(layout.open_store(out))
    assert manifest is not None
    totals = manifest.invocations[-1].totals
    assert totals.calls == 0 and totals.cached_calls == first - 4  # all but the four preflight probes
    assert "0 model requests" in stdout and "from cache" in stdout


def test_nothing_listening_fails_preflight_in_seconds_touching_no_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    base = f"http://127.0.0.1:{_closed_port()}/v1"
    graph = write_lite_graph(tmp_path / "g.json", base)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 3)
    started = time.monotonic()
    code, _, stderr = _run(graph, seeds, tmp_path / "out")
    assert code == 2 and time.monotonic() - started < 20
    assert "expander" in stderr and base in stderr
    assert not list((tmp_path / "out").glob("status/*.json"))


def test_an_endpoint_down_stops_the_run_with_seeds_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    base = f"http://127.0.0.1:{_closed_port()}/v1"
    graph = write_lite_graph(tmp_path / "g.json", base, max_retries=1)
    seeds = write_seeds(tmp_path / "seeds.jsonl", 6)
    out = tmp_path / "out"
    started = time.monotonic()
    code, stdout, _ = _run(graph, seeds, out, "--no-preflight")
    assert code == 3 and time.monotonic() - started < 30
    assert "STOPPED" in stdout and base in stdout and "run the same command again to resume" in stdout
    assert not read_statuses(layout.open_store(out))  # nothing failed: the seeds are pending
    report = run_status(out)
    assert (report.totals.pending, report.totals.failed, report.totals.done) == (6, 0, 0)
    assert report.last is not None and report.last.outcome == "stopped"


def test_wrong_key_unknown_model_and_missing_judge_fail_preflight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    seeds = write_seeds(tmp_path / "seeds.jsonl", 2)
    with Simulator(api_key="sk-right") as locked:
        graph = write_lite_graph(tmp_path / "g.json", locked.base_url)
        code, _, stderr = _run(graph, seeds, tmp_path / "a")
        assert code == 2 and "401" in stderr and "sk-wrong" not in stderr
        assert locked.stats()["by_status"] == {"401": locked.stats()["requests"]}
        assert locked.stats()["requests"] <= 4  # one probe per endpoint, none retried
        # Without the preflight the same mistake stops the run (exit 3) instead of failing every seed.
        many = write_seeds(tmp_path / "many.jsonl", 8)
        code, stdout, _ = _run(graph, many, tmp_path / "b", "--no-preflight")
        assert code == 3 and "401" in stdout
        assert run_status(tmp_path / "b").totals.pending >= 1
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    with Simulator(models=["expand", "assistant", "user"]) as partial:
        graph = write_lite_graph(tmp_path / "g2.json", partial.base_url)
        code, _, stderr = _run(graph, seeds, tmp_path / "c")
        assert code == 2 and "judge" in stderr and "404" in stderr
        assert not (tmp_path / "c" / "status").exists()


def test_an_endpoint_that_hangs_fails_preflight_within_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    seeds = write_seeds(tmp_path / "seeds.jsonl", 2)
    with Simulator(hang_rate=1.0) as hanging:
        graph = write_lite_graph(tmp_path / "g.json", hanging.base_url, timeout=2.0)
        started = time.monotonic()
        code, _, stderr = _run(graph, seeds, tmp_path / "out")
        assert code == 2 and time.monotonic() - started < 20
        assert "time" in stderr.lower()
