"""The run's records: graph fingerprint, manifest and invocations, dialogue statuses, shard records,
the keys they live at, and how a run is located."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from interleaf import DialogueStatus, ObjectStore, RunManifest, RunTotals, ShardRecord, layout
from interleaf.errors import RunMismatchError
from interleaf.graphs.loading import load_graph_text
from interleaf.graphs.spec import graph_fingerprint
from interleaf.run.layout import RunDataError, RunNotFoundError
from interleaf.run.records import Invocation, read_statuses, seed_fingerprint, status_counts
from interleaf.state import Seed
from interleaf.storage.store import check_key

GRAPH = """
name: g
nodes:
  a: {kind: "tests.runner.kinds:SlowCounter", params: {counter_file: /tmp/x}}
edges:
  - {from: START, to: a}
  - {from: a, to: END}
"""


def test_fingerprint_ignores_layout_but_not_content() -> None:
    spec1, _ = load_graph_text(GRAPH)
    reformatted = "# a comment\n" + GRAPH.replace("{from: a, to: END}", "{to: END, from: a}")
    spec2, _ = load_graph_text(reformatted)
    spec3, _ = load_graph_text(GRAPH.replace("/tmp/x", "/tmp/y"))
    assert graph_fingerprint(spec1) == graph_fingerprint(spec2)
    assert graph_fingerprint(spec1) != graph_fingerprint(spec3)
    assert len(graph_fingerprint(spec1)) == 64


def test_seed_fingerprint_changes_with_any_content() -> None:
    seed = Seed(id="s", prompt="p")
    assert seed_fingerprint(seed) == seed_fingerprint(Seed(id="s", prompt="p"))
    for changed in (Seed(id="s", prompt="q"), Seed(id="s", prompt="p", situation="x"),
                    Seed(id="s", prompt="p", images=["a.png"]), Seed(id="s", prompt="p", metadata={"k": 1})):
        assert seed_fingerprint(changed) != seed_fingerprint(seed)


def test_manifest_roundtrip_and_mismatch(store: ObjectStore) -> None:
    assert RunManifest.load(store) is None
    manifest = RunManifest(run_id="r1", graph_name="g", graph_hash="a" * 64, package_version="0.1")
    manifest.save(store)
    loaded = RunManifest.load(store)
    assert loaded is not None and loaded.run_id == "r1" and loaded.package_version == "0.1"
    assert loaded.counts == RunTotals() and loaded.invocations == []
    loaded.check_graph("a" * 64, "g", store.uri)
    with pytest.raises(RunMismatchError, match="--force-new-run") as info:
        loaded.check_graph("b" * 64, "other", store.uri)
    assert "other" in str(info.value) and "r1" in str(info.value)


def test_manifest_keeps_counts_and_invocations_typed(store: ObjectStore) -> None:
    manifest = RunManifest(run_id="r1", graph_name="g", graph_hash="a" * 64)
    manifest.counts = RunTotals(seeds=3, done=1, failed=1, pending=1, failed_reasons={"no_complete_dialogue": 1})
    manifest.invocations = [
        Invocation(started_at=1.0, finished_at=2.0, outcome="stopped", message="endpoint down",
                   totals=RunTotals(done=1, calls=4, cost=0.5, prompt_tokens=10, failed_reasons={"x": 1})),
        Invocation(started_at=3.0, finished_at=4.5, outcome="finished",
                   totals=RunTotals(done=1, calls=2, cached_calls=1, unpriced_calls=1, completion_tokens=5)),
    ]
    manifest.save(store)
    loaded = RunManifest.load(store)
    assert loaded is not None
    assert loaded.counts == manifest.counts and loaded.invocations == manifest.invocations
    assert isinstance(loaded.invocations[0].totals, RunTotals)
    # The run's calls, tokens and cost are every invocation's, added up; seed counts are not.
    spent = loaded.invocation_totals()
    assert (spent.calls, spent.cached_calls, spent.unpriced_calls, spent.cost) == (6, 1, 1, 0.5)
    assert (spent.prompt_tokens, spent.completion_tokens) == (10, 5)
    assert (spent.done, spent.failed_reasons) == (0, {})
    # What is on disk is plain JSON under the layout's key.
    raw = store.get_json(layout.MANIFEST)
    assert raw["counts"]["pending"] == 1 and raw["invocations"][0]["totals"]["calls"] == 4


def test_a_malformed_manifest_is_a_located_error(store: ObjectStore) -> None:
    store.put_json(layout.MANIFEST, {"run_id": "r1", "graph_name": "g"})
    with pytest.raises(RunDataError) as info:
        RunManifest.load(store)
    assert info.value.field == "graph_hash" and layout.MANIFEST in str(info.value)


def test_keys_are_safe_for_any_seed_id() -> None:
    for seed_id in ("plain-1", "../../etc/passwd", "a/b", "ünï cödé", "x" * 500):
        for key in (layout.status_key(seed_id), layout.dialogue_key(seed_id)):
            check_key(key)
            assert key.count("/") == 1 and key.endswith(".json")
        assert layout.status_key(seed_id).startswith(f"{layout.STATUS_PREFIX}/")
        assert layout.dialogue_key(seed_id).startswith(f"{layout.DIALOGUE_PREFIX}/")
    # Distinct ids never share a key.
    ids = ["a/b", "a%2Fb", "a_b", "a b", "a%20b"]
    assert len({layout.status_key(i) for i in ids}) == len(ids)
    assert layout.shard_key("k1") == f"{layout.SHARD_PREFIX}/k1.json"


def test_statuses_roundtrip_and_count(store: ObjectStore) -> None:
    assert read_statuses(store) == {}
    done = DialogueStatus(seed_id="a/b", status="done", complete=2, run_id="r1",
                          totals=RunTotals(seeds=1, done=1, calls=3, pruned_branches={"low score": 2}))
    failed = DialogueStatus(seed_id="b", status="failed", reason="no_complete_dialogue", error="no complete dialogue",
                            totals=RunTotals(seeds=1, failed=1, failed_branches={"model call failed": 2}))
    crashed = DialogueStatus(seed_id="c", status="failed", reason="RuntimeError", error="RuntimeError: boom")
    for status in (done, failed):
        status.save(store)
    asyncio.run(crashed.asave(store))
    assert store.exists(layout.status_key("a/b"))
    assert DialogueStatus.load(store, "a/b") == done
    assert asyncio.run(DialogueStatus.aload(store, "c")) == crashed
    assert DialogueStatus.load(store, "nobody") is None

    statuses = read_statuses(store)
    assert set(statuses) == {"a/b", "b", "c"} and statuses["b"] == failed

    counts = status_counts(statuses.values())
    assert (counts.seeds, counts.done, counts.failed, counts.pending) == (3, 1, 2, 0)
    assert counts.failed_reasons == {"no_complete_dialogue": 1, "RuntimeError": 1}
    assert counts.failed_branches == {"model call failed": 2} and counts.pruned_branches == {"low score": 2}
    assert counts.calls == 0  # the status index counts outcomes; calls come from the invocations
    # With the number of seeds known, those without a status are pending.
    counts = status_counts(statuses.values(), seeds=5)
    assert (counts.seeds, counts.pending) == (5, 2)


def test_a_status_that_is_not_a_status_is_a_located_error(store: ObjectStore) -> None:
    store.put_json(layout.status_key("x"), {"status": "done"})
    with pytest.raises(RunDataError) as info:
        read_statuses(store)
    assert info.value.field == "seed_id" and "status/x.json" in str(info.value)
    store.put_json(layout.status_key("x"), {"seed_id": "x", "status": "half-done"})
    with pytest.raises(RunDataError) as info:
        DialogueStatus.load(store, "x")
    assert info.value.field == "status"


def test_shard_records_roundtrip_with_totals(store: ObjectStore) -> None:
    assert ShardRecord.load(store, "k0") is None and ShardRecord.load_all(store) == []
    records = [
        ShardRecord(key=f"k{i}", index=i, graph_hash="g", content_hash=f"c{i}", seed_ids=[f"s{i}"],
                    status="done" if i else "failed", attempts=i + 1,
                    totals=RunTotals(seeds=1, done=int(i > 0), failed=int(i == 0), calls=i + 2),
                    error=None if i else "1 of 1 dialogues failed")
        for i in range(3)
    ]
    for record in records:
        record.save(store)
    assert store.exists(layout.shard_key("k1"))
    assert ShardRecord.load(store, "k0") == records[0]
    assert sorted(ShardRecord.load_all(store), key=lambda r: r.index) == records
    assert RunTotals.sum(r.totals for r in records).calls == 9


def test_locate_root_follows_the_run_wherever_it_is(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    RunManifest(run_id="r1", graph_name="g", graph_hash="a" * 64).save(ObjectStore(run))
    assert layout.locate_root(run) == str(run.resolve())
    # An explicit store wins; a remote URI is its own root.
    assert layout.locate_root(run, store="s3://b/p") == "s3://b/p"
    assert layout.locate_root("s3://b/p") == "s3://b/p"
    # A folder whose run lives elsewhere points at it (absolute: the two may move apart).
    out = tmp_path / "out"
    layout.write_pointer(out, str(run), "r1")
    assert json.loads((out / layout.RUN_POINTER).read_text()) == {"store": str(run.resolve()), "run_id": "r1"}
    assert layout.locate_root(out) == str(run.resolve())
    assert layout.open_store(out).exists(layout.MANIFEST)
    # A store inside the folder is recorded relative, so the folder can be moved with it.
    inner = tmp_path / "outer" / "data"
    RunManifest(run_id="r2", graph_name="g", graph_hash="a" * 64).save(ObjectStore(inner))
    layout.write_pointer(tmp_path / "outer", str(inner), "r2")
    moved = tmp_path / "moved"
    (tmp_path / "outer").rename(moved)
    assert json.loads((moved / layout.RUN_POINTER).read_text())["store"] == "data"
    assert layout.locate_root(moved) == str((moved / "data").resolve())
    # A run kept in its own folder needs no pointer.
    assert layout.is_run_folder(run, str(run)) and not layout.is_run_folder(out, str(run))
    # A new folder: the graph's default store, else the folder itself.
    assert layout.locate_root(tmp_path / "new", default_store="s3://b/default") == "s3://b/default"
    assert layout.locate_root(tmp_path / "new") == str((tmp_path / "new").resolve())


def test_locating_no_run_or_a_bad_pointer_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="no such run directory"):
        layout.open_store(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / layout.RUN_POINTER).write_text("{}", encoding="utf-8")
    with pytest.raises(RunDataError) as info:
        layout.locate_root(broken)
    assert info.value.field == "store"
