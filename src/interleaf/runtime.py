"""Per-process run context: the store, run identity, and lazily built model clients and tools.

Nodes get a :class:`Runtime` through their :class:`~interleaf.nodes.base.NodeContext`.
Model clients and tools are created on first use and given only what they use (a client
its response cache, a tool the store and the graph's folder), so neither knows the Runtime.
Neither module imports litellm, torch or diffusers at import time, so validating or
compiling a graph never loads them.

Example:
    >>> from interleaf.graphs.spec import GraphSpec
    >>> spec = GraphSpec.model_validate({"name": "g", "models": {"m": {"model": "openai/gpt-4o"}},
    ...                                  "nodes": {"n": {"kind": "turn_planner"}}, "edges": []})
    >>> rt = Runtime(spec)
    >>> rt.model("m") is rt.model("m"), rt.model("m").cache
    (True, None)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interleaf.graphs.spec import GraphSpec
from interleaf.models.client import ModelClient
from interleaf.run.layout import RESPONSE_CACHE_PREFIX
from interleaf.tools.base import Tool, build_tool

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore


class Runtime:
    """Shared by all node instances of one compiled graph in one process."""

    def __init__(
        self,
        spec: GraphSpec,
        *,
        store: ObjectStore | None = None,
        run_id: str = "local",
        run_seed: int | None = None,
        spec_dir: Path | None = None,
        processes: int = 1,
    ):
        self.spec = spec
        self.store = store
        self.run_id = run_id
        self.run_seed = spec.defaults.run_seed if run_seed is None else run_seed
        self.spec_dir = spec_dir
        #: Processes running this graph's seeds together; model caps are split between them.
        self.processes = processes
        self._models: dict[str, ModelClient] = {}
        self._tools: dict[str, Tool[Any, Any, Any]] = {}
        self.extras: dict[str, Any] = {}

    def require_store(self) -> ObjectStore:
        if self.store is None:
            raise RuntimeError("this runtime has no object store (compiled for validation only)")
        return self.store

    def model(self, name: str) -> ModelClient:
        """The client of ``models.<name>`` (built once); it gets the response cache only with ``cache: true``."""
        client = self._models.get(name)
        if client is None:
            spec = self.spec.models[name]
            cache = self.store.child(RESPONSE_CACHE_PREFIX) if spec.cache and self.store is not None else None
            client = ModelClient(name, spec, cache=cache, processes=self.processes)
            self._models[name] = client
        return client

    def tool(self, name: str) -> Tool[Any, Any, Any]:
        """The tool of ``tools.<name>`` (built once) with the run's store and the graph's folder."""
        tool = self._tools.get(name)
        if tool is None:
            tool = build_tool(name, self.spec.tools[name], store=self.store, base_dir=self.spec_dir)
            self._tools[name] = tool
        return tool

    def model_clients(self) -> dict[str, ModelClient]:
        """The clients built so far, by model name."""
        return dict(self._models)

    async def aclose(self) -> None:
        closers = [t.aclose() for t in self._tools.values()]
        closers += [m.aclose() for m in self._models.values()]
        if closers:
            await asyncio.gather(*closers, return_exceptions=True)
