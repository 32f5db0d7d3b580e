"""Run manifest: graph fingerprint, mismatch refusal, status keys."""

from __future__ import annotations

import pytest

from interleaf.errors import RunMismatchError
from interleaf.graphs.compiler import load_graph_text
from interleaf.storage.manifest import (
    RunManifest,
    count_statuses,
    dialogue_key,
    graph_fingerprint,
    status_key,
)
from interleaf.storage.store import ObjectStore, check_key

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


def test_manifest_roundtrip_and_mismatch(store: ObjectStore) -> None:
    assert RunManifest.load(store) is None
    manifest = RunManifest(run_id="r1", graph_name="g", graph_hash="a" * 64, package_version="0.1")
    manifest.save(store)
    loaded = RunManifest.load(store)
    assert loaded is not None and loaded.run_id == "r1"
    loaded.check_graph("a" * 64, "g", store.uri)
    with pytest.raises(RunMismatchError, match="--force-new-run") as info:
        loaded.check_graph("b" * 64, "other", store.uri)
    assert "other" in str(info.value) and "r1" in str(info.value)


def test_status_keys_are_safe_for_any_seed_id(store: ObjectStore) -> None:
    for seed_id in ("plain-1", "../../etc/passwd", "a/b", "ünï cödé", "x" * 500):
        check_key(status_key(seed_id))
        check_key(dialogue_key(seed_id))
        assert status_key(seed_id).count("/") == 1
    store.put_json(status_key("a"), {"status": "done"})
    store.put_json(status_key("b"), {"status": "failed"})
    store.put_json(status_key("c"), {"status": "done"})
    assert count_statuses(store) == {"done": 2, "failed": 1}
