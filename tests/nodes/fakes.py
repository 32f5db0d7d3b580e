"""Scripted model clients and a runtime that hands them out, for testing node kinds in isolation."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interleaf.graphs.spec import GraphSpec, ModelSpec, NodeSpec
from interleaf.models.client import Completion, ModelCallError
from interleaf.nodes.base import NodeContext, NodeKind
from interleaf.runtime import Runtime
from interleaf.state import ImageRef, ModelCall
from interleaf.storage.store import ObjectStore

Reply = Callable[[list[dict[str, Any]]], str]


def text_of(messages: list[dict[str, Any]]) -> str:
    """All text in OpenAI-format messages, in order."""
    out: list[str] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "\n".join(out)


def image_parts(messages: list[dict[str, Any]]) -> int:
    return sum(
        1 for m in messages if isinstance(m.get("content"), list)
        for p in m["content"] if p.get("type") == "image_url"
    )


class FakeClient:
    """Answers with ``reply(messages)``; a reply of ``ModelCallError`` type raises it. Records requests."""

    def __init__(self, name: str, reply: Reply | list[str | Exception]):
        self.name = name
        self.spec = ModelSpec(model=f"fake/{name}")
        self.requests: list[list[dict[str, Any]]] = []
        self.cache_tags: list[str] = []
        self._reply = reply

    async def complete(self, messages: list[dict[str, Any]], *, tools: Any = None, params: Any = None,
                       cache_tag: str = "") -> Completion:
        self.requests.append(messages)
        self.cache_tags.append(cache_tag)
        if callable(self._reply):
            answer: str | Exception = self._reply(messages)
        else:
            answer = self._reply[min(len(self.requests), len(self._reply)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return Completion(text=answer, call=ModelCall(model=self.name, provider_model=self.spec.model))


class FakeRuntime(Runtime):
    """A runtime whose model clients are the given fakes."""

    def __init__(self, clients: dict[str, FakeClient], store: ObjectStore | None, spec_dir: Path | None = None):
        spec = GraphSpec.model_validate({
            "name": "fake",
            "models": {name: {"model": c.spec.model} for name, c in clients.items()},
            "nodes": {"plan": {"kind": "turn_planner"}},
            "edges": [{"from": "START", "to": "plan"}, {"from": "plan", "to": "END"}],
        })
        super().__init__(spec, store=store, spec_dir=spec_dir)
        self.clients = clients

    def model(self, name: str) -> Any:
        return self.clients[name]


def make_node(kind: type[NodeKind[Any, Any, Any]], params: dict[str, Any], runtime: Runtime,
              models: list[str] | None = None, name: str = "n") -> Any:
    """Instantiate a node kind as the compiler would."""
    spec = NodeSpec(kind=kind.kind, params=params)
    ctx = NodeContext(name=name, spec=spec, runtime=runtime, model_names=list(models or []))
    return kind(ctx, kind.Params.model_validate(params))


def put_png(store: ObjectStore, color: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> ImageRef:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    key, sha = store.put_blob(buf.getvalue(), "png")
    return ImageRef(uri=store.url(key), sha256=sha, width=size, height=size)


def fail(reason: str = "boom") -> ModelCallError:
    return ModelCallError(reason)
