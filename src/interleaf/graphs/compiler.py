"""Graph spec -> checked wiring -> LangGraph ``StateGraph``.

Every check here runs before any model is called: unknown names, bad params,
fields read that nothing upstream writes, unreachable nodes and loops without
an exit are all reported with the YAML file, line and column.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from interleaf.errors import Location, SpecError
from interleaf.graphs.predicates import Predicate, predicates
from interleaf.graphs.spec import END, START, EdgeSpec, GraphSpec
from interleaf.graphs.yamlsource import YamlDocument, load_yaml_file, load_yaml_text
from interleaf.nodes.base import NodeContext, NodeKind
from interleaf.nodes.registry import node_kinds
from interleaf.runtime import Runtime
from interleaf.state import INITIAL_FIELDS, DialogueState

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_graphs() -> dict[str, Path]:
    """Built-in graph name -> YAML path (package data)."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def resolve_graph_path(ref: str | Path) -> Path:
    """A graph reference is a YAML path or a built-in graph name."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    builtins = builtin_graphs()
    if str(ref) in builtins:
        return builtins[str(ref)]
    known = ", ".join(builtins) or "none"
    raise SpecError(f"no graph file or built-in graph named {str(ref)!r} (built-ins: {known})", Location(str(ref)))


def _pydantic_errors(doc: YamlDocument, exc: ValidationError, prefix: Sequence[str | int] = ()) -> SpecError:
    first = exc.errors()[0]
    loc = [*prefix, *first["loc"]]
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown field {str(loc[-1])!r}"
    elif first["type"] == "missing":
        msg = f"missing required field {str(loc[-1])!r}"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return doc.error(msg, loc)


def parse_spec(doc: YamlDocument) -> GraphSpec:
    if not isinstance(doc.data, dict):
        raise doc.error("a graph file must be a YAML mapping with 'nodes' and 'edges'")
    try:
        return GraphSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise _pydantic_errors(doc, exc) from None


def load_graph(ref: str | Path) -> tuple[GraphSpec, YamlDocument]:
    """Load and schema-check a graph YAML (path or built-in name)."""
    doc = load_yaml_file(resolve_graph_path(ref))
    return parse_spec(doc), doc


def load_graph_text(text: str, path: str = "<string>") -> tuple[GraphSpec, YamlDocument]:
    doc = load_yaml_text(text, path)
    return parse_spec(doc), doc


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
        return _build_langgraph(self, checkpointer)


def _node_kind(doc: YamlDocument, name: str, kind_name: str) -> type[NodeKind[Any, Any, Any]]:
    try:
        kind = node_kinds.get(kind_name)
    except LookupError as exc:
        raise doc.error(str(exc), ("nodes", name, "kind")) from None
    if not (isinstance(kind, type) and issubclass(kind, NodeKind)):
        raise doc.error(f"{kind_name!r} is not a node kind (a NodeKind subclass)", ("nodes", name, "kind"))
    return kind


def _check_fields(doc: YamlDocument, name: str, kind: type[NodeKind[Any, Any, Any]]) -> None:
    state_fields = set(DialogueState.model_fields)
    for f in kind.reads() | kind.writes():
        if f not in state_fields:
            raise doc.error(
                f"node kind {kind.__name__} uses state field {f!r}, which DialogueState does not have",
                ("nodes", name, "kind"),
            )


def _validate_model(doc: YamlDocument, loc: tuple[str | int, ...], model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_errors(doc, exc, loc) from None


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
    """Strongly connected components (Tarjan, iterative enough for graph files)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: set[str] = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    for n in nodes:
        if n not in index:
            visit(n)
    return out


def compile_graph(
    spec: GraphSpec,
    doc: YamlDocument,
    runtime: Runtime | None = None,
) -> CompiledGraph:
    """Check a spec's wiring and instantiate its nodes; raises :class:`SpecError` on the first problem."""
    runtime = runtime or Runtime(spec, spec_dir=Path(doc.path).parent)

    # Models and tools referenced must exist; tools must resolve and take their params.
    from interleaf.tools.base import validate_tool_spec

    for tname, tspec in spec.tools.items():
        try:
            validate_tool_spec(tname, tspec)
        except LookupError as exc:
            raise doc.error(str(exc), ("tools", tname, "kind")) from None
        except ValidationError as exc:
            raise _pydantic_errors(doc, exc, ("tools", tname)) from None

    instances: dict[str, NodeKind[Any, Any, Any]] = {}
    for name, nspec in spec.nodes.items():
        kind = _node_kind(doc, name, nspec.kind)
        _check_fields(doc, name, kind)
        params = _validate_model(doc, ("nodes", name, "params"), kind.Params, nspec.params)
        names = nspec.model_names()
        where = ("nodes", name, "models" if nspec.models is not None else "model")
        for i, m in enumerate(names):
            if m not in spec.models:
                known = ", ".join(spec.models) or "none"
                loc = (*where, i) if nspec.models is not None else where
                raise doc.error(f"unknown model {m!r} (models in this file: {known})", loc)
        if kind.models == "none" and names:
            raise doc.error(f"node kind {nspec.kind!r} uses no model; remove 'model'", where)
        if kind.models == "one" and len(names) != 1:
            raise doc.error(f"node kind {nspec.kind!r} needs exactly one model ('model: NAME')", ("nodes", name))
        if kind.models == "many" and not names:
            raise doc.error(f"node kind {nspec.kind!r} needs 'model' or 'models'", ("nodes", name))
        for i, t in enumerate(nspec.tools):
            if t not in spec.tools:
                known = ", ".join(spec.tools) or "none"
                raise doc.error(f"unknown tool {t!r} (tools in this file: {known})", ("nodes", name, "tools", i))
        if nspec.tools and not kind.uses_tools:
            raise doc.error(f"node kind {nspec.kind!r} takes no tools", ("nodes", name, "tools"))
        ctx = NodeContext(name=name, spec=nspec, runtime=runtime, model_names=names, tool_names=list(nspec.tools))
        instances[name] = kind(ctx, params)

    # Edges: names, forms, predicates.
    graph_edges: dict[str, set[str]] = {}
    fan_targets: set[str] = set()
    preds: dict[int, Predicate] = {}
    state_lists = {
        n for n, f in DialogueState.model_fields.items() if getattr(f.annotation, "__origin__", None) is list
        or str(f.annotation).startswith("list[")
    }
    for i, edge in enumerate(spec.edges):
        if edge.source != START and edge.source not in instances:
            raise doc.error(f"edge from unknown node {edge.source!r}", ("edges", i, "from"))
        for key, target in (("to", edge.to), ("then", edge.then), ("else", edge.else_), ("empty", edge.empty)):
            if target is None:
                continue
            if target == START:
                raise doc.error("an edge cannot go to START", ("edges", i, key))
            if target != END and target not in instances:
                raise doc.error(f"edge to unknown node {target!r}", ("edges", i, key))
        if edge.fan_out is not None:
            if edge.fan_out not in state_lists:
                raise doc.error(
                    f"fan_out needs a list field of the state, not {edge.fan_out!r}", ("edges", i, "fan_out")
                )
            if edge.to == END:
                raise doc.error("fan_out needs a node as 'to'", ("edges", i, "to"))
            if edge.to is not None and "task" not in instances[edge.to].reads():
                raise doc.error(
                    f"fan_out target {edge.to!r} does not read 'task', so it cannot take fanned-out items",
                    ("edges", i, "to"),
                )
            if edge.to is not None:
                fan_targets.add(edge.to)
        if edge.if_ is not None:
            try:
                pred_cls = predicates.get(edge.if_)
            except LookupError as exc:
                raise doc.error(str(exc), ("edges", i, "if")) from None
            args = _validate_model(doc, ("edges", i, "args"), pred_cls.Args, edge.args)
            preds[i] = pred_cls(args)
        graph_edges.setdefault(edge.source, set()).update(edge.targets())

    if START not in graph_edges:
        raise doc.error("no edge from START: add '- {from: START, to: <first node>}'", ("edges",))
    reach = _reachable(graph_edges, START)
    for name in instances:
        if name not in reach:
            raise doc.error(f"node {name!r} is unreachable from START", ("nodes", name))
        if name not in graph_edges:
            raise doc.error(f"node {name!r} has no outgoing edge (add one to END if it is the last)", ("nodes", name))
    if END not in reach:
        raise doc.error("no path from START reaches END", ("edges",))

    # Data flow: every field a node reads is written by some node that can run before it.
    for name, inst in instances.items():
        ups = _ancestors(graph_edges, name) - {START}
        written = set(INITIAL_FIELDS)
        for u in ups:
            written |= instances[u].writes()
        if name in fan_targets:
            written.add("task")
        for f in sorted(inst.reads() - written):
            raise doc.error(
                f"node {name!r} ({inst.kind}) reads state field {f!r}, but no node before it writes it",
                ("nodes", name, "kind"),
            )
    for i, pred in preds.items():
        src = spec.edges[i].source
        written = set(INITIAL_FIELDS)
        for u in (_ancestors(graph_edges, src) | {src}) - {START}:
            written |= instances[u].writes()
        for f in sorted(pred.reads - written):
            raise doc.error(f"predicate {spec.edges[i].if_!r} reads {f!r}, which nothing before it writes", ("edges", i, "if"))

    # Loops need an exit: a conditional (or fan-out 'empty') edge leaving the cycle.
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
            first = min(comp, key=lambda n: list(instances).index(n) if n in instances else -1)
            cycle = " -> ".join(sorted(comp))
            raise doc.error(f"loop {cycle} has no exit: add a conditional edge ('if') that leaves it", ("nodes", first))

    return CompiledGraph(spec=spec, doc=doc, runtime=runtime, nodes=instances, predicates=preds,
                         order=list(instances))


def _fan_out_router(field_name: str, target: str, empty: str, reads: frozenset[str]) -> Callable[[Any], Any]:
    from langgraph.types import Send

    def route(state: DialogueState) -> Any:
        items = getattr(state, field_name)
        if not items:
            return empty
        base = {f: getattr(state, f) for f in reads if f != "task"}
        base.setdefault("seed", state.seed)
        return [Send(target, {**base, "task": item}) for item in items]

    return route


def _conditional_router(pred: Predicate, then: str, else_: str) -> Callable[[Any], str]:
    def route(state: DialogueState) -> str:
        return then if pred(state) else else_

    return route


def _retry_policy(edge_or_none: Any) -> Any:
    from langgraph.types import RetryPolicy

    r = edge_or_none
    return RetryPolicy(
        max_attempts=r.max_attempts,
        initial_interval=r.initial_interval,
        backoff_factor=r.backoff_factor,
        max_interval=r.max_interval,
    )


def _build_langgraph(cg: CompiledGraph, checkpointer: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
    from langgraph.graph import END as LG_END
    from langgraph.graph import START as LG_START
    from langgraph.graph import StateGraph

    def real(n: str | None) -> Hashable:
        return LG_START if n == START else LG_END if n == END or n is None else n

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(DialogueState)
    for name, inst in cg.nodes.items():
        nspec = cg.spec.nodes[name]
        kwargs: dict[str, Any] = {}
        if nspec.retry is not None:
            kwargs["retry_policy"] = _retry_policy(nspec.retry)
        builder.add_node(name, inst, **kwargs)
    for i, edge in enumerate(cg.spec.edges):
        e: EdgeSpec = edge
        if e.fan_out is not None:
            assert e.to is not None
            empty = real(e.empty)
            router = _fan_out_router(e.fan_out, e.to, empty, cg.nodes[e.to].reads())  # type: ignore[arg-type]
            builder.add_conditional_edges(real(e.source), router, [e.to, empty])  # type: ignore[arg-type]
        elif e.if_ is not None:
            then, else_ = real(e.then), real(e.else_)
            builder.add_conditional_edges(
                real(e.source), _conditional_router(cg.predicates[i], then, else_), [then, else_]  # type: ignore[arg-type]
            )
        else:
            builder.add_edge(real(e.source), real(e.to))  # type: ignore[arg-type]
    return builder.compile(checkpointer=checkpointer)
