"""The run engine in-process: layout, skip on resume, failures, manifest checks, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interleaf import RunManifest, RunOptions, RunTotals, open_run
from interleaf.errors import InterleafError, RunMismatchError
from interleaf.launch import run_from_cli
from interleaf.run.layout import dialogue_key, status_key
from interleaf.seeds import read_seeds
from interleaf.state import DialogueState
from interleaf.storage.store import ObjectStore, safe_segment
from tests.runner.graphs import chain_graph, count_lines, seeds_file
from tests.storage.log_files import cut_before


async def test_run_writes_layout_and_skips_finished_dialogues(tmp_path: Path, store_uri: str) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, delay=0.005)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 6)
    out = tmp_path / "out"
    run = open_run(graph, out, store_uri, seeds_path=seeds)
    done_events: list[tuple[str, str]] = []
    try:
        summary = await run.arun_seeds(read_seeds(seeds), on_done=lambda s, o: done_events.append((s, o)))
    finally:
        await run.aclose()
        run.release()
    assert (summary.done, summary.failed, summary.skipped) == (6, 0, 0)
    assert summary.calls == 18 and summary.prompt_tokens == 180 and summary.completion_tokens == 90
    assert summary.cost is None and summary.unpriced_calls == 18
    assert sorted(done_events) == [(f"seed-{i:03d}", "done") for i in range(6)]
    assert count_lines(counter) == 18

    store = ObjectStore(store_uri)
    pointer = json.loads((out / "run.json").read_text())
    assert pointer["run_id"] == run.run_id and ObjectStore(pointer["store"]).uri == store.uri
    manifest = RunManifest.load(store)
    assert manifest is not None and manifest.seeds_path == str(seeds) and manifest.graph_name == "counter-chain"
    assert store.get_bytes("graph.yaml") == graph.read_bytes()
    state = DialogueState.model_validate(store.get_json(dialogue_key("seed-002")))
    assert state.status == "done" and sorted(state.nodes) == ["step0", "step1", "step2"]
    assert state.seed.metadata == {"topic": 2}
    status = store.get_json(status_key("seed-002"))
    assert status["status"] == "done" and status["totals"]["calls"] == 3 and status["complete"] == 3
    assert not store.exists("lock.json")  # released

    # Same command again (store found through out/run.json): nothing is redone.
    again = open_run(graph, out, None, seeds_path=seeds)
    try:
        assert again.run_id == run.run_id
        second = await again.arun_seeds(read_seeds(seeds))
    finally:
        await again.aclose()
        again.release()
    assert (second.done, second.skipped, second.calls) == (0, 6, 0)
    assert count_lines(counter) == 18


async def test_failing_dialogue_is_recorded_and_the_batch_goes_on(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, delay=0.001, fail_seed="seed-001")
    seeds = seeds_file(tmp_path / "seeds.jsonl", 4)
    run = open_run(graph, tmp_path / "out", None)
    try:
        summary = await run.arun_seeds(read_seeds(seeds), concurrency=2)
    finally:
        await run.aclose()
        run.release()
    assert (summary.done, summary.failed) == (3, 1)
    assert summary.failed_reasons == {"RuntimeError": 1}
    status = run.store.get_json(status_key("seed-001"))
    assert status["status"] == "failed" and "scripted failure for seed-001" in status["error"]
    assert not run.store.exists(dialogue_key("seed-001"))


def test_other_graph_is_refused_unless_forced(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path / "seeds.jsonl", 2)
    g1 = chain_graph(tmp_path / "g1.yaml", counter, steps=2, delay=0.001)
    g2 = chain_graph(tmp_path / "g2.yaml", counter, steps=3, delay=0.001)
    first = run_from_cli(RunOptions(graph=str(g1), seeds=seeds, out=out, progress=False, preflight=False))
    assert first.totals.done == 2 and first.exit_code == 0
    old_id = first.run_id
    assert not (out / "run.json").exists()  # the folder is the run: no pointer to go stale when moved
    with pytest.raises(RunMismatchError, match="force-new-run"):
        open_run(g2, out, None)
    second = run_from_cli(RunOptions(graph=str(g2), seeds=seeds, out=out, force_new_run=True, progress=False,
                                     preflight=False))
    assert (second.totals.done, second.totals.skipped) == (2, 0)
    manifest = RunManifest.load(ObjectStore(out))
    assert manifest is not None and manifest.run_id != old_id
    assert manifest.counts.done == 2 and len(manifest.invocations) == 1
    assert manifest.invocations[0].totals.calls == 6 and manifest.invocations[0].outcome == "finished"


def test_cli_progress_and_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=1, delay=0.001)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 5)
    outcome = run_from_cli(RunOptions(graph=str(graph), seeds=seeds, out=tmp_path / "out", limit=3, progress=True,
                                      preflight=False))
    assert outcome.totals.done == 3 and count_lines(counter) == 3
    assert "3/3" in capsys.readouterr().err


def test_totals_merge_describe_and_dict() -> None:
    a = RunTotals(done=2, calls=5, prompt_tokens=10, failed_reasons={"X": 1}, pruned_branches={"low": 2})
    b = RunTotals(done=1, failed=1, calls=2, cost=0.5, unpriced_calls=1, failed_reasons={"X": 2, "Y": 1})
    c = a.merge(b)
    assert (c.done, c.failed, c.calls, c.prompt_tokens, c.cost) == (3, 1, 7, 10, 0.5)
    assert c.failed_reasons == {"X": 3, "Y": 1} and c.pruned_branches == {"low": 2}
    assert a.done == 2  # merge returns a new record
    assert RunTotals().merge(RunTotals()).cost is None
    text = c.describe()
    assert "3 done, 1 failed" in text and "X x3" in text and "$0.5000" in text
    assert "+1 calls without a known price" in text  # a known part of the cost is never shown as the whole
    assert RunTotals(**c.to_dict()) == c


async def test_sqlite_checkpoints_for_one_machine_runs(tmp_path: Path) -> None:
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, delay=0.001, fail_seed="seed-000")
    seeds = seeds_file(tmp_path / "seeds.jsonl", 3)
    run = open_run(graph, tmp_path / "out", None, checkpoints="sqlite")
    try:
        summary = await run.arun_seeds(read_seeds(seeds))
    finally:
        await run.aclose()
        run.release()
    assert (summary.done, summary.failed) == (2, 1)
    assert (tmp_path / "out" / "checkpoints.sqlite").is_file()
    assert not run.store.list("checkpoints")
    with pytest.raises(InterleafError, match="'store' or 'sqlite'"):
        open_run(graph, tmp_path / "out", None, checkpoints="redis")


async def test_resume_applies_writes_saved_after_the_last_checkpoint(tmp_path: Path) -> None:
    # A kill after a step's writes were saved but before the next checkpoint: resuming must
    # apply those writes (not re-run the step) and run the steps after it.
    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, delay=0.001)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 1)
    run = open_run(graph, tmp_path / "out", None)
    try:
        await run.arun_seeds(read_seeds(seeds))
        thread = {"configurable": {"thread_id": run.thread_id("seed-000")}}
        saver = run._saver
        history = [t async for t in saver.alist(thread)]
        # Drop the checkpoints after the one where step1 was next, keeping step1's saved writes.
        cut = next(t for t in history if t.metadata.get("step") == 1)
        assert cut.pending_writes, "step1's writes should be stored against the checkpoint before it"
        log = run.store.local_path(f"checkpoints/{safe_segment(run.thread_id('seed-000'))}~log")
        assert log is not None and log.is_file()
        cut_before(log, lambda body: body["k"] == "c" and body["id"] > cut.checkpoint["id"])
        newest = await saver.aget_tuple(thread)
        assert newest is not None and newest.checkpoint["id"] == cut.checkpoint["id"]
        run.store.delete(status_key("seed-000"))
        run.store.delete(dialogue_key("seed-000"))
        calls_before = count_lines(counter)
        summary = await run.arun_seeds(read_seeds(seeds))
    finally:
        await run.aclose()
        run.release()
    assert summary.done == 1
    state = DialogueState.model_validate(run.store.get_json(dialogue_key("seed-000")))
    assert sorted(state.nodes) == ["step0", "step1", "step2"]
    assert count_lines(counter) - calls_before == 1  # step2 ran; step1's saved result was reused


async def test_a_requested_stop_ends_the_batch_without_waiting_for_busy_slots(tmp_path: Path) -> None:
    import asyncio

    counter = tmp_path / "calls.txt"
    graph = chain_graph(tmp_path / "g.yaml", counter, steps=1, delay=5.0, concurrency=2)
    seeds = seeds_file(tmp_path / "seeds.jsonl", 6)
    run = open_run(graph, tmp_path / "out", None)
    try:
        batch = asyncio.create_task(run.arun_seeds(read_seeds(seeds)))
        await asyncio.sleep(0.5)  # two dialogues in flight, four waiting for a slot
        started = asyncio.get_running_loop().time()
        run.request_stop("test stop")
        totals = await asyncio.wait_for(batch, timeout=5)
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        await run.aclose()
        run.release()
    assert (totals.seeds, totals.done, totals.failed, totals.pending) == (6, 0, 0, 6)
    assert run.stop_reason == "test stop" and count_lines(counter) == 0
