"""One in five model requests fails (429, 500, timeout, malformed JSON, truncated body): every dialogue
still ends exactly once, done or failed with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interleaf.runner import RunOptions, run_from_cli
from interleaf.storage.store import ObjectStore
from interleaf.testing.simulator import FAULT_KINDS, Simulator
from tests.faults.lite_graph import write_lite_graph, write_seeds
from tests.faults.run_checks import check_every_seed_ended_once

N_SEEDS = 10


@pytest.fixture
def faulty_sim() -> Iterator[Simulator]:
    # Its own server and seed: the fault draws do not depend on what other tests sent before.
    with Simulator(seed=20, fault_rate=0.2, faults=FAULT_KINDS, timeout_delay=5.0) as server:
        yield server


@pytest.mark.slow
def test_faults_end_every_dialogue_once(tmp_path: Path, faulty_sim: Simulator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    # One retry only, so some calls fail for good and the failure paths run too.
    graph = write_lite_graph(tmp_path / "g.yaml", faulty_sim.base_url, timeout=0.5, max_retries=1, concurrency=5)
    seeds = write_seeds(tmp_path / "seeds.jsonl", N_SEEDS)
    out = tmp_path / "out"
    summary = run_from_cli(RunOptions(graph=str(graph), seeds=seeds, out=out, progress=False))

    faults = sum(faulty_sim.faults_injected.values())
    assert faulty_sim.requests >= 5 * N_SEEDS
    assert 0.08 * faulty_sim.requests <= faults <= 0.35 * faulty_sim.requests, dict(faulty_sim.faults_injected)
    assert len(faulty_sim.faults_injected) >= 3, "too few kinds of fault were drawn to mean anything"
    assert faulty_sim.completed == faulty_sim.requests - faults
    assert faulty_sim.in_flight == 0

    store = ObjectStore(out)
    counts = check_every_seed_ended_once(store, [f"s{i:03d}" for i in range(N_SEEDS)])
    assert (summary.done, summary.failed, summary.skipped) == (counts["done"], counts["failed"], 0)
    assert summary.done + summary.failed == N_SEEDS
    assert summary.done >= N_SEEDS // 2
    assert sum(summary.failed_reasons.values()) == summary.failed
    # Answers the run kept were real answers: calls recorded never exceed requests answered.
    assert summary.calls <= faulty_sim.completed

    # Running the same command again finds everything finished: no dialogue is run twice.
    before = faulty_sim.requests
    again = run_from_cli(RunOptions(graph=str(graph), seeds=seeds, out=out, progress=False))
    assert (again.done, again.failed, again.skipped) == (0, 0, N_SEEDS)
    assert faulty_sim.requests == before
    assert check_every_seed_ended_once(store, [f"s{i:03d}" for i in range(N_SEEDS)]) == counts
