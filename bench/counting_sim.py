"""The benchmarks' simulator: the scripted one plus counters another process reads over HTTP.

Imported only by the simulator's own process (``simprocess.py``): a benchmark script, and the
worker processes that import it again as their main module, never pay for these imports.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from interleaf.testing.simulator import Simulator


class CountingSimulator(Simulator):
    """The simulator plus routes a benchmark in another process reads its counters through."""

    def __init__(self, *, record: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.record = record
        self.bodies: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/bench/stats", self._stats)
        app.router.add_post("/bench/reset", self._reset)
        app.router.add_get("/bench/bodies", self._bodies)
        return app

    def _enter(self, model: str, body: dict[str, Any]) -> str | None:
        if self.record:
            self.bodies.append(body)
        return super()._enter(model, body)

    async def _stats(self, request: web.Request) -> web.Response:
        with self._lock:
            data = {"requests": self.requests, "completed": self.completed, "peak": self.peak_concurrency,
                    "by_model": dict(self.requests_by_model)}
        return web.json_response(data)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_counters()
        self.bodies = []
        return web.json_response({"ok": True})

    async def _bodies(self, request: web.Request) -> web.Response:
        return web.json_response(self.bodies)
