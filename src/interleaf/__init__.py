"""interleaf: declarative workflow graphs that generate multi-turn interleaved text-and-image
dialogue datasets with preference pairs.

The public API is what this module exports; everything else is private to the package and
may change. Names are imported on first use, so ``import interleaf`` stays light (no torch,
litellm, LangGraph or Prefect until they are needed).

Example:
    >>> import interleaf
    >>> spec, doc = interleaf.load_graph("intermt-lite")
    >>> compiled = interleaf.compile_graph(spec, doc)   # checks the wiring, calls no model
    >>> sorted(compiled.nodes)[:2]
    ['answer', 'check']

Running and reading a run::

    run = interleaf.open_run("intermt-lite", out=Path("runs/a"), store=None, seeds_path=seeds)
    reader = interleaf.RunReader.open("runs/a")
    print(reader.totals().describe())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # graphs
    "load_graph": "interleaf.graphs.loading",
    "load_graph_text": "interleaf.graphs.loading",
    "builtin_graphs": "interleaf.graphs.loading",
    "compile_graph": "interleaf.graphs.compiler",
    "CompiledGraph": "interleaf.graphs.compiler",
    "GraphSpec": "interleaf.graphs.spec",
    # running
    "open_run": "interleaf.runner",
    "attach_run": "interleaf.runner",
    "Run": "interleaf.runner",
    "RunOutcome": "interleaf.runner",
    # the run as data
    "RunReader": "interleaf.run.reader",
    "RunWriter": "interleaf.run.writer",
    "RunTotals": "interleaf.run.totals",
    "RunManifest": "interleaf.run.records",
    "DialogueStatus": "interleaf.run.records",
    "ShardRecord": "interleaf.run.records",
    "layout": "interleaf.run",
    # state
    "DialogueState": "interleaf.state",
    "Seed": "interleaf.state",
    "Tree": "interleaf.state",
    "TreeNode": "interleaf.state",
    "Message": "interleaf.state",
    "ImageRef": "interleaf.state",
    "ModelCall": "interleaf.state",
    # extension points
    "NodeKind": "interleaf.nodes.base",
    "NodeIO": "interleaf.nodes.base",
    "node_kinds": "interleaf.nodes.registry",
    "Tool": "interleaf.tools.base",
    "tool_kinds": "interleaf.tools.base",
    "predicates": "interleaf.graphs.predicates",
    "ReportKind": "interleaf.graphs.reporting",
    "report_kinds": "interleaf.graphs.reporting",
    # running
    "RunOptions": "interleaf.launch",
    "run_status": "interleaf.run.status",
    "RunStatus": "interleaf.run.status",
    # storage
    "ObjectStore": "interleaf.storage.store",
    # errors
    "InterleafError": "interleaf.errors",
    "SpecError": "interleaf.errors",
    "SeedError": "interleaf.errors",
}

__all__ = [
    "CompiledGraph", "DialogueState", "DialogueStatus", "GraphSpec", "ImageRef", "InterleafError", "Message",
    "ModelCall", "NodeIO", "NodeKind", "ObjectStore", "ReportKind", "Run", "RunManifest", "RunOptions",
    "RunOutcome", "RunReader", "RunStatus", "RunTotals", "RunWriter", "Seed", "SeedError", "ShardRecord",
    "SpecError", "Tool", "Tree", "TreeNode", "__version__", "attach_run", "builtin_graphs", "compile_graph",
    "layout", "load_graph", "load_graph_text", "node_kinds", "open_run", "predicates", "report_kinds",
    "run_status", "tool_kinds",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interleaf' has no attribute {name!r}")
    value = importlib.import_module(module)
    if name != "layout":
        value = getattr(value, name)
    else:
        value = importlib.import_module("interleaf.run.layout")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from interleaf.errors import InterleafError, SeedError, SpecError
    from interleaf.graphs.compiler import CompiledGraph, compile_graph
    from interleaf.graphs.loading import builtin_graphs, load_graph, load_graph_text
    from interleaf.graphs.predicates import predicates
    from interleaf.graphs.reporting import ReportKind, report_kinds
    from interleaf.graphs.spec import GraphSpec
    from interleaf.launch import RunOptions
    from interleaf.nodes.base import NodeIO, NodeKind
    from interleaf.nodes.registry import node_kinds
    from interleaf.run import layout
    from interleaf.run.reader import RunReader
    from interleaf.run.records import DialogueStatus, RunManifest, ShardRecord
    from interleaf.run.status import RunStatus, run_status
    from interleaf.run.totals import RunTotals
    from interleaf.run.writer import RunWriter
    from interleaf.runner import Run, RunOutcome, attach_run, open_run
    from interleaf.state import DialogueState, ImageRef, Message, ModelCall, Seed, Tree, TreeNode
    from interleaf.storage.store import ObjectStore
    from interleaf.tools.base import Tool, tool_kinds
