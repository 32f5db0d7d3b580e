"""The simulator in its own process, so its CPU never counts as the engine's.

    python bench/simprocess.py --latency 1.0     # prints "port <N>" once it listens

:class:`SimProcess` starts that child and reads its counters over HTTP:
``GET /bench/stats`` (requests, per model, peak in flight), ``POST /bench/reset``, and
``GET /bench/bodies`` (the recorded request bodies, in arrival order, when ``--record``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


class SimProcess:
    """The simulator of :mod:`counting_sim` in a child process; a context manager."""

    def __init__(self, latency: float, *, record: bool = False):
        self.latency = latency
        self.record = record
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> SimProcess:
        args = [sys.executable, str(Path(__file__).resolve()), "--latency", str(self.latency)]
        if self.record:
            args.append("--record")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"simulator process did not start (said {line!r})")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/bench/stats"))

    def bodies(self) -> list[dict[str, Any]]:
        return list(self._get("/bench/bodies"))

    def reset(self) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/bench/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description="simulator child process for the benchmarks")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    from counting_sim import CountingSimulator  # the server's imports, only in the simulator's process

    sim = CountingSimulator(latency=args.latency, record=args.record, seed=0).start()
    print(f"port {sim.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
