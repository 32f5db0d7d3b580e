"""The node-kind registry (entry-point group ``interleaf.nodes``)."""

from __future__ import annotations

from typing import Any

from interleaf.nodes.base import NodeKind
from interleaf.registry import Registry

node_kinds: Registry[type[NodeKind[Any, Any, Any]]] = Registry(
    "node kind", "interleaf.nodes", ("interleaf.nodes.builtin",)
)
