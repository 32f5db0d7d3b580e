"""A contender process for the RunLock race tests (run as a script, not collected by pytest).

``race``: for each round, say "ready", wait for the parent's "go" file (a start time a little
in the future), spin until that moment, then try to take ``round-N/lock.json`` and write the
outcome to ``result-N-ID.json``. A winner stays alive until the parent's "done" file, so the
loser's judgement sees a live holder, never a dead one. Round modes: ``lock`` (RunLock), and
``naive`` (read, then write if absent: deliberately racy, to prove the harness can fail).

``hold``: take ``lock.json``, print the holder pid, and sleep until killed.

Example:
    python tests/storage/lock_racer.py race STORE_URI SYNC_DIR ID lock,lock,naive
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from interleaf.storage.lock import RunLock, RunLockedError
from interleaf.storage.store import ObjectStore


def _wait_for(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.001)
    return path.read_text()


def _write(path: Path, value: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def race(uri: str, sync: Path, ident: str, modes: list[str], strategy: str, settle_s: float) -> None:
    store = ObjectStore(uri, retry_seconds=5.0)
    for n, mode in enumerate(modes):
        key = f"round-{n}/lock.json"
        lock = RunLock(store, key, lease_s=30.0, purpose=f"racer {ident}", strategy=strategy,  # type: ignore[arg-type]
                       settle_s=settle_s)
        if mode == "lock":
            lock._get_backend()  # the S3 probe is not part of the race
        _write(sync / f"ready-{n}-{ident}", True)
        start = float(_wait_for(sync / f"go-{n}"))
        while time.time() < start:
            pass  # spin: both contenders leave within microseconds of each other
        result: dict[str, object] = {"pid": os.getpid()}
        if mode == "naive":
            if store.get_bytes_or_none(key) is None:
                time.sleep(0.05)
                store.put_json(key, {"pid": os.getpid()})
                result["outcome"] = "won"
            else:
                result["outcome"] = "locked"
        else:
            try:
                result["takeover"] = lock.acquire()
                result["outcome"] = "won"
            except RunLockedError as exc:
                result.update(outcome="locked", message=str(exc), holder_pid=(exc.holder or {}).get("pid"))
        _write(sync / f"result-{n}-{ident}.json", result)
        _wait_for(sync / f"done-{n}")


def hold(uri: str) -> None:
    lock = RunLock(ObjectStore(uri, retry_seconds=5.0), lease_s=30.0, purpose="holder")
    lock.acquire()
    print(json.dumps({"pid": os.getpid(), "token_len": len(lock.token)}), flush=True)
    time.sleep(600)


if __name__ == "__main__":
    if sys.argv[1] == "race":
        race(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5].split(","),
             sys.argv[6] if len(sys.argv) > 6 else "auto", float(sys.argv[7]) if len(sys.argv) > 7 else 1.0)
    else:
        hold(sys.argv[2])
