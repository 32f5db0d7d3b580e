"""Per-process run context: the store, run identity, and lazily built model clients and tools.

Nodes get a :class:`Runtime` through their :class:`~interleaf.nodes.base.NodeContext`.
Model clients and tools are created on first use, so validating or compiling a
graph never imports litellm, torch or diffusers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interleaf.graphs.spec import GraphSpec

if TYPE_CHECKING:
    from interleaf.models.client import ModelClient
    from interleaf.storage.store import ObjectStore
    from interleaf.tools.base import Tool


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
    ):
        self.spec = spec
        self.store = store
        self.run_id = run_id
        self.run_seed = spec.defaults.run_seed if run_seed is None else run_seed
        self.spec_dir = spec_dir
        self._models: dict[str, ModelClient] = {}
        self._tools: dict[str, Tool] = {}
        self.extras: dict[str, Any] = {}

    def require_store(self) -> ObjectStore:
        if self.store is None:
            raise RuntimeError("this runtime has no object store (compiled for validation only)")
        return self.store

    def model(self, name: str) -> ModelClient:
        client = self._models.get(name)
        if client is None:
            from interleaf.models.client import ModelClient

            client = ModelClient(name, self.spec.models[name], runtime=self)
            self._models[name] = client
        return client

    def tool(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            from interleaf.tools.base import build_tool

            tool = build_tool(name, self.spec.tools[name], runtime=self)
            self._tools[name] = tool
        return tool

    def model_clients(self) -> dict[str, ModelClient]:
        return dict(self._models)

    async def aclose(self) -> None:
        closers = [t.aclose() for t in self._tools.values()]
        closers += [m.aclose() for m in self._models.values()]
        if closers:
            await asyncio.gather(*closers, return_exceptions=True)
