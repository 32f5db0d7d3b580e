"""Graph spec -> checked wiring -> LangGraph ``StateGraph``.

Every check here runs before any model is called: unknown names, bad params,
fields read that nothing upstream writes, unreachable nodes and loops without
an exit are all reported with the YAML file, line and column. Whatever the
input, the only exception that leaves :func:`load_graph` and
:func:`compile_graph` is :class:`~interleaf.errors.SpecError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from interleaf.errors import SpecError, SystemicFailure
from interleaf.graphs.loading import (
    Loc,
    located_validation_error,
    unwrap_optional,
)
from interleaf.graphs.predicates import Predicate, predicates
from interleaf.graphs.reporting import check_reports
from interleaf.graphs.spec import END, START, EdgeSpec, GraphSpec, RetrySpec
from interleaf.graphs.yamlsource import YamlDocument
from interleaf.nodes.base import NodeContext, NodeKind
from interleaf.nodes.registry import node_kinds
from interleaf.registry import untrusted_dirs
from interleaf.runtime import Runtime
from interleaf.state import INITIAL_FIELDS, CandidateTask, DialogueState
from interleaf.tools.base import Tool, tool_kind_of, validate_tool_spec

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

AnyKind = type[NodeKind[Any, Any, Any]]

_MODEL_ARITIES = ("none", "one", "optional", "many")


# ---------------------------------------------------------------------------------------------
# Compiled graph


@dataclass
class CompiledGraph:
    """A checked graph, its node instances and (once built) the LangGraph runnable."""

    spec: GraphSpec
    doc: YamlDocument
    runtime: Runtime
    nodes: dict[str, NodeKind[Any, Any, Any]]
    predicates: dict[int, Predicate]
    order: list[str] = field(default_factory=list)

    def build(self, checkpointer: Any = None) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The LangGraph runnable; ``checkpointer`` makes each dialogue resumable."""
        try:
            return _build_langgraph(self, checkpointer)
        except ValueError as exc:  # LangGraph's own wiring checks, should ours ever miss one
            raise self.doc.error(f"LangGraph rejected the graph: {exc}", ("edges",)) from None


# ---------------------------------------------------------------------------------------------
# Node checks


def _node_kind(doc: YamlDocument, name: str, kind_name: str) -> AnyKind:
    where = ("nodes", name, "kind")
    try:
        kind = node_kinds.get(kind_name)
    except LookupError as exc:
        raise doc.error(str(exc), where) from None
    if not (isinstance(kind, type) and issubclass(kind, NodeKind)):
        raise doc.error(f"{kind_name!r} is not a node kind (a NodeKind subclass)", where)
    for attr in ("Input", "Output", "Params"):
        model = getattr(kind, attr, None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise doc.error(f"node kind {kind.__name__} has no pydantic {attr} model", where)
    if getattr(kind, "models", None) not in _MODEL_ARITIES:
        raise doc.error(f"node kind {kind.__name__} declares models={kind.models!r}", where)
    state_fields = set(DialogueState.model_fields)
    for f in sorted(kind.reads() | kind.writes()):
        if f not in state_fields:
            raise doc.error(
                f"node kind {kind.__name__} uses state field {f!r}, which DialogueState does not have", where
            )
    return kind


def _validate_model(
    doc: YamlDocument, loc: Loc, model: type[BaseModel], data: Any
) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise located_validation_error(doc, exc, model, loc) from None


def _check_models(doc: YamlDocument, spec: GraphSpec, name: str, kind: AnyKind) -> list[str]:
    nspec = spec.nodes[name]
    names = nspec.model_names()
    where: Loc = ("nodes", name, "models" if nspec.models is not None else "model")
    for i, m in enumerate(names):
        if m not in spec.models:
            known = ", ".join(spec.models) or "none"
            loc = (*where, i) if nspec.models is not None else where
            raise doc.error(f"unknown model {m!r} (models in this file: {known})", loc)
    label = f"node kind {nspec.kind!r}"
    if kind.models == "none" and names:
        raise doc.error(f"{label} uses no model; remove '{where[-1]}'", where)
    if kind.models == "one" and len(names) != 1:
        raise doc.error(f"{label} needs exactly one model ('model: NAME')", ("nodes", name))
    if kind.models == "optional" and len(names) > 1:
        raise doc.error(f"{label} takes at most one model", where)
    if kind.models == "many" and not names:
        raise doc.error(f"{label} needs 'model' or 'models'", ("nodes", name))
    return names


def _instantiate(
    doc: YamlDocument, spec: GraphSpec, runtime: Runtime, name: str
) -> NodeKind[Any, Any, Any]:
    nspec = spec.nodes[name]
    kind = _node_kind(doc, name, nspec.kind)
    params = _validate_model(doc, ("nodes", name, "params"), kind.Params, nspec.params)
    names = _check_models(doc, spec, name, kind)
    for i, t in enumerate(nspec.tools):
        if t not in spec.tools:
            known = ", ".join(spec.tools) or "none"
            raise doc.error(f"unknown tool {t!r} (tools in this file: {known})", ("nodes", name, "tools", i))
    if nspec.tools and not kind.uses_tools:
        raise doc.error(f"node kind {nspec.kind!r} takes no tools", ("nodes", name, "tools"))
    ctx = NodeContext(name=name, spec=nspec, runtime=runtime, model_names=names, tool_names=list(nspec.tools))
    try:
        return kind(ctx, params)
    except SpecError as exc:
        # A node names a bad param value (e.g. a rubric reference) by field only; place it here.
        if exc.location is not None or not exc.field:
            raise
        path = [int(p) if p.isdigit() else p for p in exc.field.split(".")]
        raise doc.error(f"node {name!r}: {exc.message}", ("nodes", name, *path)) from None
    except Exception as exc:  # a kind refusing its params in its constructor
        raise doc.error(
            f"node {name!r} ({nspec.kind}) could not be set up: {type(exc).__name__}: {exc}", ("nodes", name)
        ) from None


def _check_tools(doc: YamlDocument, spec: GraphSpec) -> None:
    for tname, tspec in spec.tools.items():
        where = ("tools", tname, "kind")
        try:
            kind = tool_kind_of(tname, tspec)
        except LookupError as exc:
            raise doc.error(str(exc), where) from None
        if not (isinstance(kind, type) and issubclass(kind, Tool)):
            raise doc.error(f"{tspec.kind or tname!r} is not a tool kind (a Tool subclass)", where)
        try:
            validate_tool_spec(tname, tspec)
        except ValidationError as exc:
            raise located_validation_error(doc, exc, kind.Params, ("tools", tname)) from None
        except Exception as exc:
            raise doc.error(f"tool {tname!r}: {type(exc).__name__}: {exc}", ("tools", tname)) from None


# ---------------------------------------------------------------------------------------------
# Graph analysis


def _ancestors(edges: dict[str, set[str]], target: str) -> set[str]:
    rev: dict[str, set[str]] = {}
    for src, dsts in edges.items():
        for d in dsts:
            rev.setdefault(d, set()).add(src)
    seen: set[str] = set()
    stack = list(rev.get(target, ()))
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(rev.get(n, ()))
    return seen


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(edges.get(n, ()))
    return seen


def _sccs(nodes: list[str], edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components (iterative Tarjan: graph files may be long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(sorted(edges.get(root, ())))))
        while work:
            v, successors = work[-1]
            advanced = False
            for w in successors:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp: set[str] = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def _task_lists() -> set[str]:
    """State fields that are lists of :class:`CandidateTask` (what a fan-out can spread)."""
    out = set()
    for name, info in DialogueState.model_fields.items():
        tp = unwrap_optional(info.annotation)
        if get_origin(tp) is list and get_args(tp) and get_args(tp)[0] is CandidateTask:
            out.add(name)
    return out


def _edge_label(i: int) -> str:
    return f"edges[{i}]"


def _check_edges(
    doc: YamlDocument, spec: GraphSpec, instances: dict[str, NodeKind[Any, Any, Any]]
) -> tuple[dict[str, set[str]], set[str], dict[int, Predicate]]:
    graph_edges: dict[str, set[str]] = {}
    fan_targets: dict[str, int] = {}
    routed: dict[str, int] = {}
    plain: dict[str, int] = {}
    plain_into: dict[str, int] = {}
    seen_plain: dict[tuple[str, str], int] = {}
    preds: dict[int, Predicate] = {}
    task_lists = _task_lists()
    for i, edge in enumerate(spec.edges):
        if edge.source == END:
            raise doc.error("an edge cannot start at END", ("edges", i, "from"))
        if edge.source != START and edge.source not in instances:
            raise doc.error(f"edge from unknown node {edge.source!r}{_suggest(edge.source, instances)}",
                            ("edges", i, "from"))
        for key, target in (("to", edge.to), ("then", edge.then), ("else", edge.else_), ("empty", edge.empty)):
            if target is None:
                continue
            if target == START:
                raise doc.error("an edge cannot go to START", ("edges", i, key))
            if target != END and target not in instances:
                raise doc.error(f"edge to unknown node {target!r}{_suggest(target, instances)}", ("edges", i, key))
        if edge.fan_out is not None or edge.if_ is not None:
            if edge.source in routed:
                raise doc.error(
                    f"node {edge.source!r} already has a conditional or fan_out edge "
                    f"({_edge_label(routed[edge.source])}); a node takes at most one",
                    ("edges", i),
                )
            if edge.source in plain:
                raise doc.error(
                    f"node {edge.source!r} has a plain edge ({_edge_label(plain[edge.source])}) and a "
                    "conditional or fan_out edge; both would run. Keep one",
                    ("edges", i),
                )
            routed[edge.source] = i
        else:
            assert edge.to is not None
            if edge.source in routed:
                raise doc.error(
                    f"node {edge.source!r} has a conditional or fan_out edge ({_edge_label(routed[edge.source])}) "
                    "and a plain edge; both would run. Keep one",
                    ("edges", i),
                )
            pair = (edge.source, edge.to)
            if pair in seen_plain:
                raise doc.error(
                    f"duplicate edge {edge.source} -> {edge.to} (also {_edge_label(seen_plain[pair])})", ("edges", i)
                )
            seen_plain[pair] = i
            plain.setdefault(edge.source, i)
        if edge.fan_out is not None:
            if edge.fan_out not in task_lists:
                choices = ", ".join(sorted(task_lists))
                raise doc.error(
                    f"fan_out spreads a state list of tasks ({choices}), not {edge.fan_out!r}",
                    ("edges", i, "fan_out"),
                )
            assert edge.to is not None
            if edge.to == END:
                raise doc.error("fan_out needs a node as 'to', not END", ("edges", i, "to"))
            if "task" not in instances[edge.to].reads():
                raise doc.error(
                    f"fan_out target {edge.to!r} ({spec.nodes[edge.to].kind}) does not read 'task', "
                    "so it cannot take fanned-out items",
                    ("edges", i, "to"),
                )
            fan_targets.setdefault(edge.to, i)
        for target in _entered_plainly(edge):
            plain_into.setdefault(target, i)
        if edge.if_ is not None:
            try:
                pred_cls = predicates.get(edge.if_)
            except LookupError as exc:
                raise doc.error(str(exc), ("edges", i, "if")) from None
            if not (isinstance(pred_cls, type) and issubclass(pred_cls, Predicate)):
                raise doc.error(f"{edge.if_!r} is not an edge predicate (a Predicate subclass)", ("edges", i, "if"))
            args = _validate_model(doc, ("edges", i, "args"), pred_cls.Args, edge.args)
            try:
                preds[i] = pred_cls(args)
            except Exception as exc:
                raise doc.error(f"predicate {edge.if_!r}: {type(exc).__name__}: {exc}", ("edges", i, "args")) from None
        graph_edges.setdefault(edge.source, set()).update(edge.targets())
    for target, i in fan_targets.items():
        if target in plain_into:
            raise doc.error(
                f"node {target!r} takes fanned-out tasks ({_edge_label(i)}) and cannot also be entered by "
                f"{_edge_label(plain_into[target])}, where it would run without a task",
                ("edges", plain_into[target]),
            )
    return graph_edges, set(fan_targets), preds


def _entered_plainly(edge: EdgeSpec) -> list[str]:
    """Nodes an edge enters with the whole state (not through a fan-out ``Send``)."""
    if edge.if_ is not None:
        return [t for t in (edge.then, edge.else_) if t is not None and t != END]
    if edge.fan_out is not None:
        return [edge.empty] if edge.empty not in (None, END) else []  # type: ignore[list-item]
    return [edge.to] if edge.to not in (None, END) else []  # type: ignore[list-item]


def _suggest(name: str, known: Sequence[str] | dict[str, Any]) -> str:
    pool = [*known, START, END]
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (nodes: {', '.join(known)})"


def _written_before(
    graph_edges: dict[str, set[str]], instances: dict[str, NodeKind[Any, Any, Any]], node: str,
    include_self: bool = False,
) -> set[str]:
    ups = _ancestors(graph_edges, node) | ({node} if include_self else set())
    written = set(INITIAL_FIELDS)
    for u in ups - {START}:
        written |= instances[u].writes()
    return written


def _check_flow(
    doc: YamlDocument,
    spec: GraphSpec,
    instances: dict[str, NodeKind[Any, Any, Any]],
    graph_edges: dict[str, set[str]],
    fan_targets: set[str],
    preds: dict[int, Predicate],
) -> None:
    if START not in graph_edges:
        raise doc.error("no edge from START: add '- {from: START, to: <first node>}'", ("edges",))
    reach = _reachable(graph_edges, START)
    for name in instances:
        if name not in reach:
            raise doc.error(f"node {name!r} is unreachable from START", ("nodes", name))
        if name not in graph_edges:
            raise doc.error(f"node {name!r} has no outgoing edge (add one to END if it is the last)", ("nodes", name))
    # Loops need an exit: a conditional (or fan-out 'empty') edge leaving the cycle. A plain edge out
    # of a loop does not count: LangGraph would follow it *and* keep looping.
    order = list(instances)
    for comp in _sccs([START, *instances], graph_edges):
        cyclic = len(comp) > 1 or any(n in graph_edges.get(n, ()) for n in comp)
        if not cyclic:
            continue
        exits = [
            e for e in spec.edges
            if e.source in comp and (e.if_ is not None or e.fan_out is not None)
            and any(t not in comp for t in e.targets())
        ]
        if not exits:
            members = sorted(comp, key=lambda n: order.index(n) if n in order else -1)
            cycle = " -> ".join([*members, members[0]])
            raise doc.error(
                f"loop {cycle} has no exit: add a conditional edge ('if') that leaves it", ("nodes", members[0])
            )
    if END not in reach:
        raise doc.error("no path from START reaches END", ("edges",))

    # Data flow: every field a node reads is written by some node that can run before it.
    for name, inst in instances.items():
        written = _written_before(graph_edges, instances, name)
        if name in fan_targets:
            written.add("task")
        for f in sorted(inst.reads() - written - inst.optional_reads):
            raise doc.error(
                f"node {name!r} ({spec.nodes[name].kind}) reads state field {f!r}, but no node before it writes it",
                ("nodes", name, "kind"),
            )
    for i, edge in enumerate(spec.edges):
        if edge.fan_out is not None:
            written = _written_before(graph_edges, instances, edge.source, include_self=True)
            if edge.fan_out not in written:
                raise doc.error(
                    f"fan_out spreads {edge.fan_out!r}, but no node up to {edge.source!r} writes it",
                    ("edges", i, "fan_out"),
                )
    for i, pred in preds.items():
        src = spec.edges[i].source
        written = _written_before(graph_edges, instances, src, include_self=True)
        for f in sorted(pred.reads - written):
            raise doc.error(
                f"predicate {spec.edges[i].if_!r} reads {f!r}, which nothing before it writes", ("edges", i, "if")
            )


def compile_graph(
    spec: GraphSpec,
    doc: YamlDocument,
    runtime: Runtime | None = None,
) -> CompiledGraph:
    """Check a spec's wiring and instantiate its nodes; raises :class:`SpecError` on the first problem."""
    runtime = runtime or Runtime(spec, spec_dir=Path(doc.path).parent)
    # A `module:attr` kind never runs code that merely sits next to the graph file (or in the
    # working directory): only installed modules are imported.
    with untrusted_dirs(Path(doc.path).parent):
        _check_tools(doc, spec)
        instances = {name: _instantiate(doc, spec, runtime, name) for name in spec.nodes}
        graph_edges, fan_targets, preds = _check_edges(doc, spec, instances)
    _check_flow(doc, spec, instances, graph_edges, fan_targets, preds)
    # Reports run after the graph, but a typo in one should not wait for the run to end.
    check_reports(spec, doc)
    return CompiledGraph(spec=spec, doc=doc, runtime=runtime, nodes=instances, predicates=preds,
                         order=list(instances))


# ---------------------------------------------------------------------------------------------
# LangGraph


def _fan_out_router(field_name: str, target: str, empty: str, reads: frozenset[str]) -> Callable[[Any], Awaitable[Any]]:
    from langgraph.types import Send

    # Routers are coroutine functions: LangGraph runs a plain function in a thread pool, one
    # hand-off to a thread (and back, through the GIL) per routing decision.
    async def route(state: DialogueState) -> Any:
        items = getattr(state, field_name)
        if not items:
            return empty
        # The target gets only what it declares it reads (plus the seed the state schema needs).
        base = {f: getattr(state, f) for f in reads if f != "task"}
        base.setdefault("seed", state.seed)
        return [Send(target, {**base, "task": item}) for item in items]

    return route


def _conditional_router(pred: Predicate, then: str, else_: str) -> Callable[[Any], Awaitable[str]]:
    async def route(state: DialogueState) -> str:  # a coroutine function: see _fan_out_router
        return then if pred(state) else else_

    return route


def _retry_any(exc: Exception) -> bool:
    # A systemic failure stops the run; retrying the node would only delay that.
    return not isinstance(exc, SystemicFailure)


def retry_policy(spec: RetrySpec) -> Any:
    """The LangGraph ``RetryPolicy`` for a node's YAML ``retry:``."""
    from langgraph.types import RetryPolicy

    kwargs: dict[str, Any] = {}
    if spec.retry_on == "any":
        kwargs["retry_on"] = _retry_any
    return RetryPolicy(
        max_attempts=spec.max_attempts,
        initial_interval=spec.initial_interval,
        backoff_factor=spec.backoff_factor,
        max_interval=spec.max_interval,
        jitter=spec.jitter,
        **kwargs,
    )


def _build_langgraph(cg: CompiledGraph, checkpointer: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
    from langgraph.graph import END as LG_END
    from langgraph.graph import START as LG_START
    from langgraph.graph import StateGraph

    def real(n: str | None) -> str:
        return LG_START if n == START else LG_END if n == END or n is None else n

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(DialogueState)
    for name, inst in cg.nodes.items():
        nspec = cg.spec.nodes[name]
        kwargs: dict[str, Any] = {}
        if nspec.retry is not None:
            kwargs["retry_policy"] = retry_policy(nspec.retry)
        builder.add_node(name, inst, **kwargs)
    for i, e in enumerate(cg.spec.edges):
        if e.fan_out is not None:
            assert e.to is not None
            empty = real(e.empty)
            router = _fan_out_router(e.fan_out, e.to, empty, cg.nodes[e.to].reads())
            builder.add_conditional_edges(real(e.source), router, [e.to, empty])
        elif e.if_ is not None:
            then, else_ = real(e.then), real(e.else_)
            builder.add_conditional_edges(
                real(e.source), _conditional_router(cg.predicates[i], then, else_), [then, else_]
            )
        else:
            builder.add_edge(real(e.source), real(e.to))
    return builder.compile(checkpointer=checkpointer)
