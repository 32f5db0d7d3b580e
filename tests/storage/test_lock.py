"""RunLock: one writer per run, over a local folder and a moto S3 server, with real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from interleaf.errors import InterleafError
from interleaf.storage import lock as lockmod
from interleaf.storage.lock import RunLock, RunLockedError, RunLockLostError, describe_holder
from interleaf.storage.store import ObjectStore

RACER = Path(__file__).with_name("lock_racer.py")
REPO = Path(__file__).resolve().parents[2]


def raw_record(store: ObjectStore, key: str = "lock.json") -> dict[str, Any]:
    return json.loads(store.get_bytes(key))


def foreign_record(*, renewed_ago: float, lease_s: float, pid: int = 4242, host: str = "elsewhere-host") -> dict:
    now = time.time()
    return {"token": "f" * 32, "host": host, "pid": pid, "since": now - 3600, "renewed_at": now - renewed_ago,
            "lease_s": lease_s, "purpose": "interleaf run"}


@pytest.fixture
def other_host(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make this process judge holders as if it ran on another machine (by lease only)."""
    return lambda: monkeypatch.setattr(lockmod, "_host", lambda: "contender-host")


# -- one process -----------------------------------------------------------------------------


def test_acquire_writes_holder_record_and_release_deletes_it(store: ObjectStore) -> None:
    lock = RunLock(store, lease_s=5, purpose="unit test", owner="flow-run 7")
    assert RunLock.read(store) is None
    assert lock.acquire() is None
    rec = raw_record(store)
    assert rec["token"] == lock.token
    assert rec["pid"] == os.getpid() and rec["host"] == lockmod._host()
    assert rec["lease_s"] == 5 and rec["purpose"] == "unit test" and rec["owner"] == "flow-run 7"
    assert abs(rec["since"] - time.time()) < 5 and rec["renewed_at"] == rec["since"]
    public = RunLock.read(store)
    assert public is not None and "token" not in public and public["pid"] == os.getpid()
    assert lock.release() is True
    assert RunLock.read(store) is None and not lock.held


def test_second_acquire_is_refused_with_a_message_naming_the_holder(store: ObjectStore) -> None:
    first = RunLock(store, purpose="first writer")
    first.acquire()
    with pytest.raises(RunLockedError) as info:
        RunLock(store).acquire()
    msg = str(info.value)
    assert isinstance(info.value, InterleafError)
    assert f"pid {os.getpid()}" in msg and lockmod._host() in msg and "first writer" in msg
    assert time.strftime("%Y-%m-%dT", time.gmtime()) in msg and "ago" in msg
    assert "still running on this host" in msg and f"kill {os.getpid()}" in msg
    assert first.token not in msg and first.token not in repr(info.value.holder)
    assert info.value.holder is not None and info.value.holder["pid"] == os.getpid()
    assert raw_record(store)["token"] == first.token  # the refused attempt wrote nothing


def test_release_by_a_non_holder_does_nothing(store: ObjectStore) -> None:
    holder = RunLock(store)
    holder.acquire()
    bystander = RunLock(store)
    assert bystander.release() is False
    with pytest.raises(RunLockedError):
        bystander.acquire()
    assert bystander.release() is False
    assert raw_record(store)["token"] == holder.token

    # A holder that was taken over must not delete its successor's lock.
    store.put_json("lock.json", foreign_record(renewed_ago=100, lease_s=1))  # simulate: holder stalled
    successor = RunLock(store)
    assert successor.acquire() is not None
    assert holder.release() is False
    assert raw_record(store)["token"] == successor.token


def test_matching_token_is_accepted_and_a_wrong_one_refused(store: ObjectStore) -> None:
    parent = RunLock(store, owner="flow-run 1")
    parent.acquire()
    before = store.get_bytes("lock.json")
    child = RunLock(store)
    assert child.attach(parent.token) is None
    assert child.attached and not child.held and child.token == parent.token
    assert store.get_bytes("lock.json") == before  # attaching writes nothing
    child.renew()  # checks the parent's record, writes nothing
    assert store.get_bytes("lock.json") == before
    assert child.release() is False  # the parent owns it
    assert raw_record(store)["token"] == parent.token
    with pytest.raises(RunLockedError):
        RunLock(store).acquire(token="0" * 32)
    parent.release()

    # With nobody holding it, the token's first user becomes the holder.
    shard = RunLock(store)
    shard.acquire(token="a" * 32)
    assert shard.held and raw_record(store)["token"] == "a" * 32


def test_expired_lease_on_another_host_is_taken_over_fresh_one_refused(
    store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.put_json("lock.json", foreign_record(renewed_ago=0.5, lease_s=30))
    with pytest.raises(RunLockedError) as info:
        RunLock(store).acquire()
    msg = str(info.value)
    assert "elsewhere-host" in msg and "pid 4242" in msg and "lease runs out" in msg and "delete" in msg

    store.put_json("lock.json", foreign_record(renewed_ago=31, lease_s=30))
    taker = RunLock(store)
    with caplog.at_level(logging.WARNING, logger="interleaf.storage.lock"):
        warning = taker.acquire()
    assert warning is not None and warning == taker.takeover
    assert "elsewhere-host" in warning and "pid 4242" in warning and "lease ran out" in warning
    assert any(r.levelno == logging.WARNING and "lease ran out" in r.getMessage() for r in caplog.records)
    assert raw_record(store)["token"] == taker.token


def test_unreadable_record_is_taken_over(store: ObjectStore) -> None:
    store.put_bytes("lock.json", b"{not json")
    assert RunLock.read(store) == {"unreadable": True}
    warning = RunLock(store).acquire()
    assert warning is not None and "unreadable" in warning


def test_dead_pid_on_this_host_is_taken_over(store: ObjectStore, caplog: pytest.LogCaptureFixture) -> None:
    holder = subprocess.Popen([sys.executable, str(RACER), "hold", store.uri], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        assert holder.stdout is not None
        pid = json.loads(holder.stdout.readline())["pid"]
        with pytest.raises(RunLockedError, match=f"pid {pid}"):
            RunLock(store).acquire()  # alive: refused, although its lease is fresh either way
    finally:
        holder.kill()
        holder.wait()
    assert RunLock.read(store)["pid"] == pid  # type: ignore[index]  # killed: it never released
    with caplog.at_level(logging.WARNING, logger="interleaf.storage.lock"):
        warning = RunLock(store).acquire()
    assert warning is not None and f"pid {pid}" in warning and "no longer running on this host" in warning
    assert any(f"pid {pid}" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_reused_pid_is_not_mistaken_for_the_holder(store: ObjectStore) -> None:
    if lockmod.psutil is None:
        pytest.skip("psutil not installed")
    # Our own pid, but the record says the lock was taken before this process was born.
    record = foreign_record(renewed_ago=0, lease_s=60, pid=os.getpid(), host=lockmod._host())
    if lockmod._pid_ns() is not None:
        record["pid_ns"] = lockmod._pid_ns()
    record["since"] = lockmod.psutil.Process().create_time() - 100
    store.put_json("lock.json", record)
    warning = RunLock(store).acquire()
    assert warning is not None and "no longer running" in warning


def test_renewal_keeps_the_lease_alive_past_lease_s(
    store: ObjectStore, other_host: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    with RunLock(store, lease_s=0.6) as renewing:
        other_host()
        first = raw_record(store)["renewed_at"]
        time.sleep(1.4)
        with pytest.raises(RunLockedError, match="lease runs out"):
            RunLock(store).acquire()
        assert raw_record(store)["renewed_at"] > first
        assert raw_record(store)["token"] == renewing.token
    assert RunLock.read(store) is None

    # Control: the same wait without renewal lets the other host take over.
    idle = RunLock(store, lease_s=0.6)
    idle.acquire()  # recorded under contender-host
    monkeypatch.setattr(lockmod, "_host", lambda: "third-host")
    time.sleep(1.0)
    assert RunLock(store).acquire() is not None
    with pytest.raises(RunLockLostError):
        idle.renew()


async def test_async_holding_renews_through_a_long_run_and_stops(
    store: ObjectStore, other_host: Callable[[], None]
) -> None:
    lock = RunLock(store, lease_s=0.6)
    async with lock.holding() as held:
        other_host()
        assert held is lock and lock.held
        await asyncio.sleep(0.9)
        time.sleep(0.9)  # a synchronous step blocking the event loop must not let the lease lapse
        with pytest.raises(RunLockedError):
            await asyncio.get_running_loop().run_in_executor(None, RunLock(store).acquire)
        renewer = lock._renewer
        assert renewer is not None and renewer.is_alive()
    assert not renewer.is_alive() and lock._renewer is None
    assert RunLock.read(store) is None and not lock.held


async def test_losing_the_lock_cancels_the_body(store: ObjectStore) -> None:
    lock = RunLock(store, lease_s=0.6)
    started = time.monotonic()
    with pytest.raises(RunLockLostError, match="elsewhere-host"):
        async with lock.holding():
            store.put_json("lock.json", foreign_record(renewed_ago=0, lease_s=60))  # someone took it
            await asyncio.sleep(10)
    assert time.monotonic() - started < 3
    assert raw_record(store)["host"] == "elsewhere-host"  # release left the new holder alone
    with pytest.raises(RunLockLostError):
        lock.check()


def test_s3_store_uses_conditional_writes_on_moto(s3_env: Any) -> None:
    store = ObjectStore(f"s3://{s3_env.create_bucket()}/run", retry_seconds=5.0)
    assert isinstance(RunLock(store)._get_backend(), lockmod._S3Backend)
    assert store.put_bytes_if_absent("x.json", b"1") is True
    assert store.put_bytes_if_absent("x.json", b"2") is False
    assert store.get_bytes("x.json") == b"1"
    assert store.list() == ["x.json"]  # the probe object was cleaned up


def test_describe_holder_never_shows_the_token() -> None:
    rec = foreign_record(renewed_ago=2, lease_s=60)
    text = describe_holder(rec)
    assert "f" * 32 not in text and "elsewhere-host" in text and "pid 4242" in text


# -- two real processes racing -------------------------------------------------------------


def race(uri: str, tmp_path: Path, modes: list[str], *, strategy: str = "auto", settle_s: float = 1.0,
         prepare: dict[int, dict] | None = None) -> list[list[dict]]:
    """Start two racer processes, release them together for each round; their results per round."""
    sync = tmp_path / f"sync-{uuid.uuid4().hex[:6]}"
    sync.mkdir()
    store = ObjectStore(uri, retry_seconds=5.0)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen([sys.executable, str(RACER), "race", uri, str(sync), ident, ",".join(modes), strategy,
                          str(settle_s)], cwd=REPO, env=env)
        for ident in ("a", "b")
    ]
    rounds: list[list[dict]] = []
    try:
        for n in range(len(modes)):
            if prepare and n in prepare:
                store.put_json(f"round-{n}/lock.json", prepare[n])
            for ident in ("a", "b"):
                wait_file(sync / f"ready-{n}-{ident}", procs)
            (sync / f"go-{n}.tmp").write_text(str(time.time() + 0.1))
            os.replace(sync / f"go-{n}.tmp", sync / f"go-{n}")
            rounds.append([json.loads(wait_file(sync / f"result-{n}-{i}.json", procs)) for i in ("a", "b")])
            (sync / f"done-{n}").write_text("")
        for p in procs:
            assert p.wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return rounds


def wait_file(path: Path, procs: list[subprocess.Popen], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        dead = [p.returncode for p in procs if p.poll() not in (None, 0)]
        assert not dead, f"a racer exited with {dead}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout}s"
        time.sleep(0.005)
    return path.read_text()


def assert_one_winner(results: list[dict]) -> dict:
    won = [r for r in results if r["outcome"] == "won"]
    lost = [r for r in results if r["outcome"] == "locked"]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0]["holder_pid"] == won[0]["pid"], results
    assert f"pid {won[0]['pid']}" in lost[0]["message"], results
    return won[0]


def test_two_processes_race_exactly_one_wins(store_uri: str, tmp_path: Path) -> None:
    stale = foreign_record(renewed_ago=100, lease_s=1)
    rounds = race(store_uri, tmp_path, ["lock", "lock", "lock", "naive"], prepare={2: stale})
    for results in rounds[:3]:
        assert_one_winner(results)
    # Round 2 started from a stale lock: the winner took it over, the loser was refused.
    winner = assert_one_winner(rounds[2])
    assert winner["takeover"] and "lease ran out" in winner["takeover"]
    # The same harness does catch a racy lock: read-then-write lets both "win".
    assert [r["outcome"] for r in rounds[3]] == ["won", "won"]


def test_two_processes_race_on_s3_with_settle_strategy(s3_env: Any, tmp_path: Path) -> None:
    uri = f"s3://{s3_env.create_bucket()}/run"
    stale = foreign_record(renewed_ago=100, lease_s=1)
    for results in race(uri, tmp_path, ["lock", "lock"], strategy="settle", settle_s=0.4, prepare={1: stale}):
        assert_one_winner(results)
