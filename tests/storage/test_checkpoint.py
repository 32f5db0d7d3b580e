"""ObjectStoreSaver: LangGraph's own conformance suite plus resume behaviour, on file:// and s3://."""

from __future__ import annotations

import operator
import zlib
from typing import Annotated, Any, TypedDict

import ormsgpack
import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, StateGraph

from interleaf.storage.checkpoint import ObjectStoreSaver
from interleaf.storage.store import ObjectStore
from tests.storage.legacy_layout import LegacyLayoutSaver


async def test_langgraph_conformance_suite(store: ObjectStore) -> None:
    counter = {"n": 0}

    @checkpointer_test(name="ObjectStoreSaver")
    async def make_saver() -> Any:
        counter["n"] += 1
        saver = ObjectStoreSaver(store, prefix=f"conformance-{counter['n']}")
        yield saver
        saver.close()

    report = await validate(make_saver)
    failures = {
        name: result.failures for name, result in report.results.items() if result.passed is False
    }
    assert report.passed_all_base(), failures


class _Log(TypedDict):
    steps: Annotated[list[str], operator.add]


def _chain(calls: list[str], fail_at: set[str]) -> StateGraph[Any, Any, Any, Any]:
    def step(name: str) -> Any:
        def run(state: _Log) -> dict[str, list[str]]:
            calls.append(name)
            if name in fail_at:
                fail_at.discard(name)
                raise RuntimeError(f"{name} crashed")
            return {"steps": [name]}

        return run

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(_Log)
    for name in ("a", "b", "c"):
        builder.add_node(name, step(name))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder


async def test_graph_resumes_from_the_last_completed_step(store: ObjectStore) -> None:
    calls: list[str] = []
    fail_at = {"b"}
    saver = ObjectStoreSaver(store)
    app = _chain(calls, fail_at).compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "run-1:seed/with odd chars"}}
    with pytest.raises(RuntimeError, match="b crashed"):
        await app.ainvoke({"steps": []}, config, durability="sync")
    assert calls == ["a", "b"]

    # A fresh saver on the same store (another process, another machine) picks up the thread.
    saver2 = ObjectStoreSaver(ObjectStore(store.uri))
    app2 = _chain(calls, fail_at).compile(checkpointer=saver2)
    snapshot = await app2.aget_state(config)
    assert snapshot.next == ("b",)
    result = await app2.ainvoke(None, config, durability="sync")
    assert result["steps"] == ["a", "b", "c"]
    assert calls == ["a", "b", "b", "c"]  # "a" was not redone

    history = [t async for t in saver2.alist(config)]
    assert len(history) >= 4
    assert [t.checkpoint["id"] for t in history] == sorted((t.checkpoint["id"] for t in history), reverse=True)


def test_sync_api_and_thread_isolation(store: ObjectStore) -> None:
    calls: list[str] = []
    saver = ObjectStoreSaver(store)
    app = _chain(calls, set()).compile(checkpointer=saver)
    for tid in ("t1", "../../escape", "t/3"):
        app.invoke({"steps": []}, {"configurable": {"thread_id": tid}}, durability="sync")
    assert all(k.startswith("checkpoints/") for k in store.list())
    latest = saver.get_tuple({"configurable": {"thread_id": "../../escape"}})
    assert latest is not None
    assert latest.checkpoint["channel_values"]["steps"] == ["a", "b", "c"]
    assert latest.config["configurable"]["thread_id"] == "../../escape"
    assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"t1", "../../escape", "t/3"}
    saver.delete_thread("t1")
    assert saver.get_tuple({"configurable": {"thread_id": "t1"}}) is None
    assert saver.get_tuple({"configurable": {"thread_id": "t/3"}}) is not None


def _objects(store: ObjectStore) -> dict[str, dict[str, Any]]:
    """Every checkpoint object, decoded as the module docstring describes the format."""
    out = {}
    for key in store.list("checkpoints"):
        data = store.get_bytes(key)
        head, _, payload = data.partition(b"\n")
        magic, crc = head.split(b" ")
        assert magic == b"ILCK2" and int(crc, 16) == zlib.crc32(payload), key
        out[key] = ormsgpack.unpackb(payload)
    return out


def test_checkpoint_objects_are_not_pickles(tmp_path: Any) -> None:
    # Values go through LangGraph's serializer (JSON/msgpack), never pickle.
    store = ObjectStore(tmp_path)
    saver = ObjectStoreSaver(store)
    app = _chain([], set()).compile(checkpointer=saver)
    app.invoke({"steps": []}, {"configurable": {"thread_id": "x"}}, durability="sync")
    types: set[str] = set()
    for key, body in _objects(store).items():
        if key.rsplit("/", 1)[-1].startswith("w."):
            types |= {w[1] for w in body["writes"].values()}
        else:
            types |= {body["checkpoint"][0], body["metadata"][0]} | {v[1] for v in body["values"].values()}
    assert types and "pickle" not in types


def test_a_step_is_two_objects_in_the_thread_folder(tmp_path: Any) -> None:
    # The object count is what the checkpointer's CPU follows: a checkpoint is one object with
    # its new values inline, a task's writes one more, all in one folder a thread.
    store = ObjectStore(tmp_path)
    saver = ObjectStoreSaver(store)
    app = _chain([], set()).compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "x"}}
    app.invoke({"steps": []}, config, durability="sync")
    history = list(saver.list(config))
    keys = store.list("checkpoints")
    assert len({k.rsplit("/", 1)[0] for k in keys}) == 1
    names = [k.rsplit("/", 1)[-1] for k in keys]
    assert sum(n.startswith("c.") for n in names) == len(history) == 5  # input, a, b, c, end
    assert sum(n.startswith("w.") for n in names) == 4  # START's task and a, b, c
    # A value is stored once, in the checkpoint where it changed; later ones point at it.
    stored = _objects(store)
    records = {body["checkpoint_id"]: body for body in stored.values() if "located" in body}
    newest_id = history[0].checkpoint["id"]
    elsewhere = 0
    for channel, (version, holder) in records[newest_id]["located"].items():
        held = records[holder]["values"].get(channel)
        assert held is None or held[0] == version, channel  # None: the channel is empty there
        elsewhere += holder != newest_id
    assert elsewhere > 0  # unchanged values are not copied into the newest checkpoint
    assert sum(len(body["values"]) for body in records.values()) < sum(
        len(t.checkpoint["channel_versions"]) for t in history)
    assert history[0].checkpoint["channel_values"]["steps"] == ["a", "b", "c"]


async def test_a_torn_newest_checkpoint_falls_back_to_the_one_before(tmp_path: Any) -> None:
    # Checkpoints are not fsynced one by one: after a machine crash the newest may be torn. The
    # reader must notice and resume from the last intact one, redoing only what came after it.
    calls: list[str] = []
    store = ObjectStore(tmp_path)
    config: Any = {"configurable": {"thread_id": "t"}}
    app = _chain(calls, {"c"}).compile(checkpointer=ObjectStoreSaver(store))
    with pytest.raises(RuntimeError, match="c crashed"):
        await app.ainvoke({"steps": []}, config, durability="sync")
    assert calls == ["a", "b", "c"]
    records = sorted(k for k in store.list("checkpoints") if k.rsplit("/", 1)[-1].startswith("c."))
    newest = records[-1]  # the one after "b"
    data = store.get_bytes(newest)
    (tmp_path / newest).write_bytes(data[: len(data) // 2])

    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    snapshot = await _chain(calls, set()).compile(checkpointer=saver).aget_state(config)
    # The one after "a", with the writes "b" left on it (so "b" itself is not run again).
    assert snapshot.metadata is not None and snapshot.metadata["step"] == 1
    assert [(t.name, t.result) for t in snapshot.tasks] == [("b", {"steps": ["b"]})]
    result = await _chain(calls, set()).compile(checkpointer=saver).ainvoke(None, config, durability="sync")
    assert result["steps"] == ["a", "b", "c"]
    assert calls == ["a", "b", "c", "c"]


async def test_a_checkpoint_whose_values_are_gone_is_skipped(tmp_path: Any) -> None:
    # The newest record survived a machine crash but the older one holding a value it needs
    # did not: that checkpoint cannot be rebuilt, so the reader goes further back.
    store = ObjectStore(tmp_path)
    config: Any = {"configurable": {"thread_id": "t"}}
    saver = ObjectStoreSaver(store)
    app = _chain([], set()).compile(checkpointer=saver)
    await app.ainvoke({"steps": []}, config, durability="sync")
    history = [t async for t in saver.alist(config)]
    stored = _objects(store)
    by_id = {body["checkpoint_id"]: key for key, body in stored.items() if "located" in body}
    newest = stored[by_id[history[0].checkpoint["id"]]]
    holders = {where for _, where in newest["located"].values()} - {history[0].checkpoint["id"]}
    assert holders, "the newest checkpoint refers to values stored with earlier ones"
    for holder in holders:
        store.delete(by_id[holder])
    fresh = ObjectStoreSaver(ObjectStore(tmp_path))
    found = fresh.get_tuple(config)
    assert found is not None and found.checkpoint["id"] not in holders | {history[0].checkpoint["id"]}


async def test_checkpoints_of_the_previous_layout_resume(tmp_path: Any) -> None:
    # A run started by interleaf <= 0.2 (one object per value) resumes after an upgrade.
    calls: list[str] = []
    store = ObjectStore(tmp_path)
    config: Any = {"configurable": {"thread_id": "run-1:seed 1"}}
    old = _chain(calls, {"b"}).compile(checkpointer=LegacyLayoutSaver(store))
    with pytest.raises(RuntimeError, match="b crashed"):
        old.invoke({"steps": []}, config, durability="sync")
    assert any("/cp/" in k for k in store.list("checkpoints"))

    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    app = _chain(calls, set()).compile(checkpointer=saver)
    snapshot = await app.aget_state(config)
    assert snapshot.next == ("b",) and snapshot.values["steps"] == ["a"]
    result = await app.ainvoke(None, config, durability="sync")
    assert result["steps"] == ["a", "b", "c"]
    assert calls == ["a", "b", "b", "c"]
    history = [t async for t in saver.alist(config)]
    assert [t.checkpoint["id"] for t in history] == sorted((t.checkpoint["id"] for t in history), reverse=True)
    assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"run-1:seed 1"}
    # The new steps are in the current layout; the old objects are only read.
    assert any(k.rsplit("/", 1)[-1].startswith("c.") for k in store.list("checkpoints"))
    assert history[0].checkpoint["channel_values"]["steps"] == ["a", "b", "c"]
