"""ObjectStoreSaver: LangGraph's own conformance suite plus resume behaviour, on file:// and s3://."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, StateGraph

from interleaf.storage.checkpoint import ObjectStoreSaver
from interleaf.storage.store import ObjectStore


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


def test_checkpoint_objects_are_not_pickles(tmp_path: Any) -> None:
    # Values go through LangGraph's serializer (JSON/msgpack), never pickle.
    store = ObjectStore(tmp_path)
    saver = ObjectStoreSaver(store)
    app = _chain([], set()).compile(checkpointer=saver)
    app.invoke({"steps": []}, {"configurable": {"thread_id": "x"}}, durability="sync")
    types: set[str] = set()
    for key in store.list("checkpoints"):
        data = store.get_bytes(key)
        if "/writes/" in key:
            types |= {w["type"] for w in json.loads(data)["writes"].values()}
        elif "/channels/" in key:
            types.add(json.loads(data.split(b"\n", 1)[0])["type"])
        else:
            record = json.loads(data)
            types |= {record["checkpoint"][0], record["metadata"][0]}
    assert types and "pickle" not in types
