"""ObjectStoreSaver: LangGraph's own conformance suite plus resume behaviour, on file:// and s3://.

Local stores keep a thread as one log (``storage/checkpoint_log.py``), object stores as objects;
the object layout is also tested on a local folder (``layout="objects"``).
"""

from __future__ import annotations

import gc
import logging
import operator
import os
import zlib
from pathlib import Path
from typing import Annotated, Any, TypedDict

import ormsgpack
import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, StateGraph

from interleaf.storage.checkpoint import ObjectStoreSaver
from interleaf.storage.checkpoint_log import read_frames
from interleaf.storage.store import ObjectStore
from tests.storage.legacy_layout import LegacyLayoutSaver
from tests.storage.log_files import frame_offsets


async def _conformance(store: ObjectStore, layout: Any) -> None:
    counter = {"n": 0}

    @checkpointer_test(name="ObjectStoreSaver")
    async def make_saver() -> Any:
        counter["n"] += 1
        saver = ObjectStoreSaver(store, prefix=f"conformance-{counter['n']}", layout=layout)
        yield saver
        saver.close()

    report = await validate(make_saver)
    failures = {
        name: result.failures for name, result in report.results.items() if result.passed is False
    }
    assert report.passed_all_base(), failures


async def test_langgraph_conformance_suite(store: ObjectStore) -> None:
    # file://: the log layout; s3://: objects.
    await _conformance(store, "auto")


async def test_langgraph_conformance_suite_objects_on_a_local_folder(tmp_path: Path) -> None:
    await _conformance(ObjectStore(tmp_path), "objects")


def test_the_log_layout_needs_a_local_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout must be"):
        ObjectStoreSaver(ObjectStore(tmp_path), layout="fast")  # type: ignore[arg-type]
    remote = ObjectStore("memory://ckpt-layout")
    with pytest.raises(ValueError, match="cannot append"):
        ObjectStoreSaver(remote, layout="log")


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


def _log_file(root: Path, thread_id: str = "t") -> Path:
    (path,) = [p for p in (root / "checkpoints").iterdir() if p.name.endswith("~log")]
    assert path.name == f"{thread_id}~log"
    return path


def _frames(path: Path) -> list[dict[str, Any]]:
    """A log's frames, decoded as checkpoint_log's docstring describes them (all intact)."""
    data = path.read_bytes()
    bodies, end = read_frames(data)
    assert end == len(data)
    return bodies


def test_checkpoint_objects_are_not_pickles(tmp_path: Path) -> None:
    # Values go through LangGraph's serializer (JSON/msgpack), never pickle, in either layout.
    types: set[str] = set()
    objects = ObjectStore(tmp_path / "objects")
    _chain([], set()).compile(checkpointer=ObjectStoreSaver(objects, layout="objects")).invoke(
        {"steps": []}, {"configurable": {"thread_id": "t"}}, durability="sync")
    for key, body in _objects(objects).items():
        if key.rsplit("/", 1)[-1].startswith("w."):
            types |= {w[1] for w in body["writes"].values()}
        else:
            types |= {body["checkpoint"][0], body["metadata"][0]} | {v[1] for v in body["values"].values()}
    logged = ObjectStore(tmp_path / "log")
    _chain([], set()).compile(checkpointer=ObjectStoreSaver(logged)).invoke(
        {"steps": []}, {"configurable": {"thread_id": "t"}}, durability="sync")
    for body in _frames(_log_file(tmp_path / "log")):
        if body["k"] == "w":
            types |= {w[2] for w in body["writes"]}
        elif body["k"] == "c":
            types |= {body["checkpoint"][0], body["metadata"][0]} | {v[1] for v in body["values"].values()}
    assert types and "pickle" not in types


def test_a_thread_is_one_log_file_on_a_local_store(tmp_path: Path) -> None:
    # Creating a file costs far more than appending: a thread is one file, a step two frames.
    store = ObjectStore(tmp_path)
    saver = ObjectStoreSaver(store)
    config: Any = {"configurable": {"thread_id": "t"}}
    _chain([], set()).compile(checkpointer=saver).invoke({"steps": []}, config, durability="sync")
    assert store.list("checkpoints") == ["checkpoints/t~log"]
    frames = _frames(_log_file(tmp_path))
    assert [f["k"] for f in frames][:1] == ["h"] and frames[0]["thread_id"] == "t"
    history = list(saver.list(config))
    assert sum(f["k"] == "c" for f in frames) == len(history) == 5  # input, a, b, c, end
    assert sum(f["k"] == "w" for f in frames) == 4  # START's task and a, b, c
    # A value is stored once, in the checkpoint where it changed.
    assert sum(len(f["values"]) for f in frames if f["k"] == "c") < sum(
        len(t.checkpoint["channel_versions"]) for t in history)
    assert history[0].checkpoint["channel_values"]["steps"] == ["a", "b", "c"]


def test_a_step_is_two_objects_in_the_thread_folder(tmp_path: Path) -> None:
    # On object stores a checkpoint is one object with its new values inline, a task's writes
    # one more, all in one folder a thread.
    store = ObjectStore(tmp_path)
    saver = ObjectStoreSaver(store, layout="objects")
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


def test_a_thread_keeps_the_layout_it_was_started_in(tmp_path: Path) -> None:
    # A run whose threads are objects on a local folder (written before the log layout)
    # continues them as objects; new threads of the same run are logs.
    store = ObjectStore(tmp_path)
    calls: list[str] = []
    config: Any = {"configurable": {"thread_id": "old"}}
    with pytest.raises(RuntimeError, match="b crashed"):
        _chain(calls, {"b"}).compile(checkpointer=ObjectStoreSaver(store, layout="objects")).invoke(
            {"steps": []}, config, durability="sync")
    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    app = _chain(calls, set()).compile(checkpointer=saver)
    assert app.invoke(None, config, durability="sync")["steps"] == ["a", "b", "c"]
    assert calls == ["a", "b", "b", "c"]
    app.invoke({"steps": []}, {"configurable": {"thread_id": "new"}}, durability="sync")
    assert not (tmp_path / "checkpoints" / "old~log").exists()
    assert (tmp_path / "checkpoints" / "new~log").is_file() and not (tmp_path / "checkpoints" / "new").exists()
    assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"old", "new"}
    assert len(list(saver.list(None, limit=3))) == 3
    saver.delete_thread("old")
    saver.delete_thread("new")
    assert list(saver.list(None)) == [] and store.list("checkpoints") == []


async def test_a_torn_newest_checkpoint_falls_back_to_the_one_before(tmp_path: Path) -> None:
    # Checkpoints are not fsynced one by one: after a machine crash the newest may be torn. The
    # reader must notice and resume from the last intact one, redoing only what came after it.
    calls: list[str] = []
    store = ObjectStore(tmp_path)
    config: Any = {"configurable": {"thread_id": "t"}}
    app = _chain(calls, {"c"}).compile(checkpointer=ObjectStoreSaver(store, layout="objects"))
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


async def test_a_torn_log_tail_falls_back_and_is_cut_off_by_the_next_writer(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The log's newest frame torn by a machine crash: readers stop before it (and leave the file
    # alone: it may be a frame being written); the next writer cuts it off, then appends.
    calls: list[str] = []
    config: Any = {"configurable": {"thread_id": "t"}}
    app = _chain(calls, {"c"}).compile(checkpointer=ObjectStoreSaver(ObjectStore(tmp_path)))
    with pytest.raises(RuntimeError, match="c crashed"):
        await app.ainvoke({"steps": []}, config, durability="sync")
    path = _log_file(tmp_path)
    frames = _frames(path)
    # ... "b"'s writes, the checkpoint after "b", "c"'s error: keep half of that checkpoint.
    assert [f["k"] for f in frames][-3:] == ["w", "c", "w"]
    starts = frame_offsets(path.read_bytes())
    torn = starts[-2] + (starts[-1] - starts[-2]) // 2
    os.truncate(path, torn)

    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    snapshot = await _chain(calls, set()).compile(checkpointer=saver).aget_state(config)
    assert snapshot.metadata is not None and snapshot.metadata["step"] == 1
    assert [(t.name, t.result) for t in snapshot.tasks] == [("b", {"steps": ["b"]})]
    assert path.stat().st_size == torn  # reading changed nothing
    with caplog.at_level(logging.WARNING, logger="interleaf.storage.checkpoint_log"):
        result = await _chain(calls, set()).compile(checkpointer=saver).ainvoke(None, config, durability="sync")
    assert result["steps"] == ["a", "b", "c"]
    assert calls == ["a", "b", "c", "c"]
    assert "cut off" in caplog.text
    assert [f["k"] for f in _frames(path)].count("c") == 5  # intact again, from end to end


def test_a_failed_append_leaves_no_partial_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A disk that fills up halfway through a frame: the error reaches the caller and the log
    # is cut back to its last whole frame, so later appends are not hidden behind garbage.
    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    config: Any = {"configurable": {"thread_id": "t"}}
    app = _chain([], set()).compile(checkpointer=saver)
    app.invoke({"steps": []}, config, durability="sync")
    path = _log_file(tmp_path)
    size = path.stat().st_size
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        if len(data) > 8:
            real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        app.invoke({"steps": []}, config, durability="sync")
    monkeypatch.undo()
    assert path.stat().st_size == size
    app.invoke({"steps": []}, config, durability="sync")
    assert _frames(path)[-1]["k"] == "c"
    assert saver.get_tuple(config) is not None


def test_a_log_removed_by_another_process_is_started_again_not_written_into_the_void(tmp_path: Path) -> None:
    # The saver keeps a thread's log open between appends. Another process resetting the
    # thread (``interleaf run --rerun-changed``) unlinks the file: the next append must land in
    # a file a reader can see, not in the unlinked one behind the open descriptor.
    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    config: Any = {"configurable": {"thread_id": "t"}}
    app = _chain([], set()).compile(checkpointer=saver)
    app.invoke({"steps": []}, config, durability="sync")
    path = _log_file(tmp_path)
    path.unlink()
    app.invoke({"steps": []}, config, durability="sync")
    frames = _frames(path)
    assert frames[0]["k"] == "h" and frames[-1]["k"] == "c"
    assert ObjectStoreSaver(ObjectStore(tmp_path)).get_tuple(config) is not None
    saver.close()


async def test_a_checkpoint_whose_values_are_gone_is_skipped(tmp_path: Path) -> None:
    # The newest record survived a machine crash but the older one holding a value it needs
    # did not: that checkpoint cannot be rebuilt, so the reader goes further back.
    store = ObjectStore(tmp_path)
    config: Any = {"configurable": {"thread_id": "t"}}
    saver = ObjectStoreSaver(store, layout="objects")
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


def test_a_saver_closes_the_logs_it_keeps_open(tmp_path: Path) -> None:
    # Logs stay open between appends; close() (and a saver dropped without it) gives them back.
    def open_logs() -> int:
        # Only this test's logs: another test's dropped saver may be collected meanwhile.
        targets = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                targets.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:  # closed since the listing
                continue
        return sum(t.startswith(str(tmp_path)) and t.endswith("~log") for t in targets)

    assert open_logs() == 0
    saver = ObjectStoreSaver(ObjectStore(tmp_path))
    app = _chain([], set()).compile(checkpointer=saver)
    for thread in ("t1", "t2"):
        app.invoke({"steps": []}, {"configurable": {"thread_id": thread}}, durability="sync")
    assert open_logs() == 2
    saver.close()
    assert open_logs() == 0
    dropped = ObjectStoreSaver(ObjectStore(tmp_path))
    _chain([], set()).compile(checkpointer=dropped).invoke(
        {"steps": []}, {"configurable": {"thread_id": "t3"}}, durability="sync")
    assert open_logs() == 1
    del dropped
    gc.collect()
    assert open_logs() == 0
