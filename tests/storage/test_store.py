"""ObjectStore behaviour, the same over a local folder and a moto S3 server."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interleaf.errors import StoreKeyError
from interleaf.storage.store import (
    ObjectStore,
    StoreUnavailableError,
    blob_key,
    check_key,
    is_transient,
    safe_segment,
)

BAD_KEYS = [
    "",
    "../outside.json",
    "a/../../outside.json",
    "a/./b",
    "/etc/passwd",
    "a//b",
    "trailing/",
    "back\\slash",
    "nul\x00byte",
    "new\nline",
    "s3://other-bucket/key",
    "file:///tmp/x",
    "x" * 1025,
    "a/b.~tmp-123",
]


def test_roundtrip_bytes_json_list(store: ObjectStore) -> None:
    store.put_bytes("a/one.bin", b"\x00\x01")
    store.put_json("a/b/two.json", {"k": "välue", "n": [1, 2]})
    store.put_json("three.json", [])
    assert store.get_bytes("a/one.bin") == b"\x00\x01"
    assert store.get_json("a/b/two.json") == {"k": "välue", "n": [1, 2]}
    assert store.exists("a/one.bin") and not store.exists("a/missing")
    assert store.list() == ["a/b/two.json", "a/one.bin", "three.json"]
    assert store.list("a") == ["a/b/two.json", "a/one.bin"]
    assert store.list_dir("a") == ["b", "one.bin"]
    assert store.list("nothing-here") == [] and store.list_dir("nothing-here") == []
    assert dict(store.iter_json("a")) == {"a/b/two.json": {"k": "välue", "n": [1, 2]}}
    assert store.get_json_or_none("a/missing.json") is None
    with pytest.raises(FileNotFoundError, match="no object 'a/missing'"):
        store.get_bytes("a/missing")


def test_overwrite_and_delete(store: ObjectStore) -> None:
    store.put_json("k.json", {"v": 1})
    store.put_json("k.json", {"v": 2})
    assert store.get_json("k.json") == {"v": 2}
    store.delete("k.json")
    store.delete("k.json")  # deleting nothing is fine
    assert not store.exists("k.json")
    for i in range(3):
        store.put_bytes(f"dir/sub/{i}", b"x")
    store.put_bytes("dirx/keep", b"y")
    assert store.delete_prefix("dir") == 3
    assert store.list() == ["dirx/keep"]


async def test_async_api(store: ObjectStore) -> None:
    await store.aput_json("x/y.json", {"a": 1})
    assert await store.aget_json("x/y.json") == {"a": 1}
    assert await store.aexists("x/y.json")
    assert await store.alist("x") == ["x/y.json"]
    assert await store.alist_dir() == ["x"]
    assert await store.aget_bytes_or_none("x/none") is None
    await store.adelete("x/y.json")
    assert not await store.aexists("x/y.json")


async def test_objects_written_in_order_stop_at_the_first_failure(store: ObjectStore) -> None:
    # A dialogue, then its status: a status is never written without the dialogue before it.
    await store.aput_json_in_order([("d/1.json", {"n": 1}), ("s/1.json", {"done": True})])
    assert await store.aget_json("d/1.json") == {"n": 1} and await store.aget_json("s/1.json") == {"done": True}
    with pytest.raises(TypeError):
        await store.aput_json_in_order([("d/2.json", {"bad": object()}), ("s/2.json", {"done": True})])
    assert not await store.aexists("d/2.json") and not await store.aexists("s/2.json")


def test_blobs_are_content_addressed(store: ObjectStore) -> None:
    data = b"\x89PNG fake image bytes"
    sha = hashlib.sha256(data).hexdigest()
    key, digest = store.put_blob(data, "png")
    assert digest == sha
    assert key == f"blobs/sha256/{sha[:2]}/{sha}.png"
    assert store.put_blob(data, ".png") == (key, sha)  # idempotent
    assert store.get_bytes(key) == data
    assert store.url(key) == f"{store.uri}/{key}"
    assert store.key_of(store.url(key)) == key
    with pytest.raises(StoreKeyError):
        blob_key("not-a-digest", "png")
    with pytest.raises(StoreKeyError):
        blob_key(sha, "../png")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_rejected_before_any_io(store: ObjectStore, key: str) -> None:
    with pytest.raises(StoreKeyError) as info:
        store.put_bytes(key, b"escape")
    message = str(info.value)
    assert "key" in message
    with pytest.raises(StoreKeyError):
        store.get_bytes(key)
    with pytest.raises(StoreKeyError):
        store.url(key)
    assert store.list() == []


def test_traversal_cannot_reach_outside_a_local_store(tmp_path: Path) -> None:
    root = tmp_path / "run"
    store = ObjectStore(root)
    for key in ("../escaped.txt", "sub/../../escaped.txt", "/tmp/escaped.txt"):
        with pytest.raises(StoreKeyError, match=r"segment|relative"):
            store.put_bytes(key, b"x")
    assert not (tmp_path / "escaped.txt").exists()
    with pytest.raises(StoreKeyError, match="not inside store"):
        store.key_of((tmp_path / "other" / "x").as_uri())


def test_local_publish_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.put_bytes("x/data.bin", b"1" * 10000)
    # A crashed writer's temp file is never listed as a key.
    (tmp_path / "x" / "data.bin.~tmp-deadbeef").write_bytes(b"half")
    assert store.list() == ["x/data.bin"]
    assert store.list_dir("x") == ["data.bin"]
    assert sorted(os.listdir(tmp_path / "x")) == ["data.bin", "data.bin.~tmp-deadbeef"]
    assert store.uri.startswith("file:///")


def test_relative_file_uri_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ObjectStore("file://./runs")
    store.put_json("a.json", 1)
    assert store.uri == (tmp_path / "runs").as_uri()
    assert (tmp_path / "runs" / "a.json").exists()


@given(st.text(min_size=1, max_size=200))
@settings(max_examples=300, deadline=None)
def test_safe_segment_is_a_valid_single_segment(name: str) -> None:
    seg = safe_segment(name)
    assert "/" not in seg
    check_key(f"dialogues/{seg}.json")


@given(st.lists(st.text(min_size=1, max_size=30), min_size=2, max_size=30, unique=True))
@settings(max_examples=100, deadline=None)
def test_safe_segment_is_injective(names: list[str]) -> None:
    assert len({safe_segment(n) for n in names}) == len(names)


def test_transient_error_classification() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(OSError(errno.ECONNRESET, "reset"))
    server_error = ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Put")
    wrapped = OSError(errno.EIO, "wrapped")
    wrapped.__cause__ = server_error
    assert is_transient(wrapped)
    assert not is_transient(FileNotFoundError("gone"))
    assert not is_transient(PermissionError("denied"))
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "Put")
    assert not is_transient(denied)
    assert not is_transient(StoreKeyError("bad"))


def test_s3_settings_come_from_the_aws_environment(s3_env) -> None:  # type: ignore[no-untyped-def]
    # No storage options at all: endpoint, region and credentials are the standard env vars.
    bucket = s3_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}/prefix")
    store.put_json("hello.json", {"ok": True})
    assert ObjectStore(f"s3://{bucket}").list() == ["prefix/hello.json"]


def test_s3_outage_is_retried_until_the_endpoint_returns(s3_env, flaky_s3, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_env.create_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", flaky_s3.endpoint_url)
    store = ObjectStore(f"s3://{bucket}/run", retry_seconds=20)
    store.put_json("before.json", 1)
    flaky_s3.stop()
    restarter = threading.Timer(2.0, flaky_s3.start)
    restarter.start()
    t0 = time.monotonic()
    store.put_json("during.json", {"written": "while the endpoint was down"})
    waited = time.monotonic() - t0
    restarter.join()
    assert waited >= 1.5
    assert store.get_json("during.json") == {"written": "while the endpoint was down"}
    assert store.list() == ["before.json", "during.json"]


def test_s3_outage_longer_than_the_budget_fails_clearly(s3_env, flaky_s3, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_env.create_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", flaky_s3.endpoint_url)
    store = ObjectStore(f"s3://{bucket}/run", retry_seconds=1.0)
    store.put_json("ok.json", 1)
    flaky_s3.stop()
    with pytest.raises(StoreUnavailableError, match="unreachable") as info:
        store.get_json("ok.json")
    assert isinstance(info.value, OSError)
    assert json.dumps(str(info.value))  # message is plain text
