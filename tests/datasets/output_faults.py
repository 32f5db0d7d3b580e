"""Child process for the output-fault tests: real full and read-only file systems.

Run as ``unshare --mount --propagation private python -m tests.datasets.output_faults WORK``
(root only): it mounts a small tmpfs (ENOSPC when full) and a read-only bind mount (EROFS)
under ``WORK`` in its own mount namespace, so nothing outside it sees them and they vanish
with it. For every export format and the viewer it writes a good export, makes the place
full or read-only, writes again, and prints one JSON line per case: the error, whether the
good export is byte for byte as it was, and any temporary file left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from interleaf.datasets.export import export_run
from interleaf.datasets.outputs import TEMP_PREFIX, OutputError
from interleaf.datasets.viewer import render_run
from tests.datasets.sample_run import write_sample_run

TARGETS = ("intermt", "align-anything", "hf", "jsonl", "view")
LEFT_FREE = 4096  # one page: room for the writability probe, not for an export


def write(run: Path, target: str, out: Path) -> None:
    if target == "view":
        render_run(str(run), out)
    else:
        export_run(str(run), target, out, None)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob(f"{TEMP_PREFIX}*")]


def attempt(run: Path, target: str, out: Path) -> dict[str, object]:
    before = snapshot(out)
    try:
        write(run, target, out)
    except OutputError as exc:
        error: dict[str, object] = {"type": "OutputError", "errno": exc.errno, "message": str(exc)}
    except Exception as exc:  # what the test must never see
        error = {"type": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}
    else:
        error = {"type": None, "errno": None, "message": ""}
    return {**error, "kept": snapshot(out) == before, "files": len(before), "leftovers": leftovers(out)}


def fill(folder: Path, leave: int) -> Path:
    st = os.statvfs(folder)
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def main(work: Path) -> None:
    run = work / "run"
    write_sample_run(run)
    full = work / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(full)], check=True)
    for target in TARGETS:
        out = full / target
        write(run, target, out)
        filler = fill(full, LEFT_FREE)
        print(json.dumps({"case": "enospc", "target": target, **attempt(run, target, out)}), flush=True)
        filler.unlink()
    # Completely full: the writability probe itself fails, before any work.
    filler = fill(full, 0)
    print(json.dumps({"case": "enospc-probe", "target": "jsonl", **attempt(run, "jsonl", full / "jsonl")}), flush=True)
    filler.unlink()

    ro = work / "ro"
    for target in TARGETS:
        write(run, target, ro / target)
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    for target in TARGETS:
        print(json.dumps({"case": "erofs", "target": target, **attempt(run, target, ro / target)}), flush=True)
    print(json.dumps({"case": "erofs-new", "target": "jsonl", **attempt(run, "jsonl", ro / "new" / "out")}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
