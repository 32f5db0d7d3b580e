"""One in five model requests fails (429, 500, timeout, malformed JSON, truncated body): every dialogue
still ends exactly once, done or failed with a reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from interleaf import ObjectStore, RunManifest, RunOptions, layout
from interleaf.launch import run_from_cli
from interleaf.models import client as model_client
from interleaf.models.retry import Failure
from interleaf.testing.simulator import FAULT_KINDS, Simulator
from tests.faults.lite_graph import write_lite_graph, write_seeds
from tests.faults.run_checks import check_every_seed_ended_once

N_SEEDS = 10


@pytest.fixture
def faulty_sim() -> Iterator[Simulator]:
    # Its own server and seed: the fault draws do not depend on what other tests sent before.
    with Simulator(seed=20, fault_rate=0.2, faults=FAULT_KINDS, timeout_delay=5.0) as server:
        yield server


def count_failure_kinds(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the kind of every failed attempt the model client classifies."""
    kinds: Counter[str] = Counter()
    classify = model_client.classify

    def counting(exc: BaseException) -> Failure:
        failure = classify(exc)
        kinds[failure.kind] += 1
        return failure

    monkeypatch.setattr(model_client, "classify", counting)
    return kinds


@pytest.mark.slow
def test_faults_end_every_dialogue_once(tmp_path: Path, faulty_sim: Simulator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    # One retry only, so some calls fail for good and the failure paths run too. The timeout is
    # well under the simulator's 5 s timeout faults, and well over what an answer takes on a busy
    # machine: at 0.5 s, a second test suite on the same two cores made answers time out too.
    graph = write_lite_graph(tmp_path / "g.yaml", faulty_sim.base_url, timeout=2.0, max_retries=1, concurrency=5)
    seeds = write_seeds(tmp_path / "seeds.jsonl", N_SEEDS)
    out = tmp_path / "out"
    # No preflight: its probe could draw a fault and refuse the run, and the calls are counted exactly.
    opts = RunOptions(graph=str(graph), seeds=seeds, out=out, progress=False, preflight=False)
    kinds = count_failure_kinds(monkeypatch)
    outcome = run_from_cli(opts)
    totals = outcome.totals

    faults = sum(faulty_sim.faults_injected.values())
    assert faulty_sim.requests >= 5 * N_SEEDS
    assert 0.08 * faulty_sim.requests <= faults <= 0.35 * faulty_sim.requests, dict(faulty_sim.faults_injected)
    assert len(faulty_sim.faults_injected) >= 3, "too few kinds of fault were drawn to mean anything"
    assert faulty_sim.completed == faulty_sim.requests - faults
    assert faulty_sim.in_flight == 0

    store = ObjectStore(out)
    seed_ids = [f"s{i:03d}" for i in range(N_SEEDS)]
    counts = check_every_seed_ended_once(store, seed_ids)
    assert (totals.done, totals.failed, totals.skipped, totals.pending) == (counts["done"], counts["failed"], 0, 0)
    assert totals.seeds == totals.done + totals.failed == N_SEEDS
    assert totals.done >= N_SEEDS // 2
    assert sum(totals.failed_reasons.values()) == totals.failed
    assert outcome.outcome == "finished" and outcome.exit_code == (1 if totals.failed else 0)
    # Every request sent is counted, retries and failed attempts included. With a 0.5 s timeout a
    # busy machine can also time out while connecting: such an attempt ("unreachable") never reaches
    # the simulator, and is not counted as a request either.
    assert totals.calls == faulty_sim.requests, dict(kinds)
    assert totals.cached_calls == 0 and totals.prompt_tokens > 0
    manifest = RunManifest.load(store)
    assert manifest is not None and len(manifest.invocations) == 1
    assert manifest.invocations[0].totals.calls == totals.calls and manifest.invocations[0].outcome == "finished"
    assert (manifest.counts.done, manifest.counts.failed) == (counts["done"], counts["failed"])
    assert not (out / layout.LOCK).exists()

    # Running the same command again skips every seed done, so no done dialogue is run twice;
    # failed seeds are retried and end once again.
    done_before = {s: store.get_json(layout.dialogue_key(s)) for s in seed_ids
                   if store.get_json(layout.status_key(s))["status"] == "done"}
    before = faulty_sim.requests
    again = run_from_cli(opts).totals
    assert again.skipped == counts["done"]
    assert again.done + again.failed == counts["failed"] and again.pending == 0
    assert again.calls == faulty_sim.requests - before
    if not counts["failed"]:
        assert faulty_sim.requests == before
    counts_again = check_every_seed_ended_once(store, seed_ids)
    assert counts_again["done"] == counts["done"] + again.done
    for seed_id, dialogue in done_before.items():
        assert store.get_json(layout.dialogue_key(seed_id)) == dialogue, f"{seed_id} was run twice"
    manifest = RunManifest.load(store)
    assert manifest is not None and len(manifest.invocations) == 2
    assert (manifest.counts.done, manifest.counts.failed) == (counts_again["done"], counts_again["failed"])
