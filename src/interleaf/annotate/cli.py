"""``interleaf annotate push|pull|apply``: the human-review round trip through Label Studio.

Mounted by the main command as ``app.add_typer(annotate_app, name="annotate")``; it also works
on its own (``annotate_app()``). Every interleaf error - bad input, an unreachable server, a
refused token, an edited interface, annotations on vanished items - is one ``error: ...``
paragraph on stderr and exit code 2, with nothing in the run changed.

The token is read from ``LABEL_STUDIO_API_KEY`` only; there is deliberately no ``--token``
option, because command lines land in shell history, process lists and CI logs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer

from interleaf.errors import InterleafError

T = TypeVar("T")

annotate_app = typer.Typer(
    name="annotate",
    help="Human review through Label Studio: push trees, pull people's scores, re-prune and re-pair by them. "
         "Token: LABEL_STUDIO_API_KEY; server: --url or LABEL_STUDIO_URL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EPILOG = "Exit codes: 0 done; 2 bad input or configuration (nothing in the run changed)."

RunArg = Annotated[Path, typer.Argument(help="Run directory (or its run.json pointer folder).")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL).")]
GraphOpt = Annotated[
    str | None,
    typer.Option("--graph", help="Graph file or built-in name to read rubrics and rules from (default: the run's "
                                 "graph.yaml)."),
]


def _guarded(action: Callable[[], T]) -> T:
    try:
        return action()
    except InterleafError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


@annotate_app.command(epilog=EPILOG)
def push(
    run: RunArg,
    url: UrlOpt = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="Project title (default: '<run id> <what>'; pairs add ' local-pairs' / "
                                       "' global-pairs')."),
    ] = None,
    what: Annotated[
        Literal["turns", "dialogues", "pairs"],
        typer.Option("--what", help="One task per tree node (turns), complete dialogue, or candidate pair."),
    ] = "turns",
    only: Annotated[
        Literal["pruned", "alive", "all"], typer.Option("--only", help="Items by the status of their nodes.")
    ] = "all",
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Push N items drawn at random (the same N on every push).")
    ] = None,
    graph: GraphOpt = None,
) -> None:
    """Create or update a Label Studio project from the run's rubrics and upload its items as tasks."""
    from interleaf.annotate.push import push as do_push  # imported per command: `interleaf --help` stays fast

    result = _guarded(lambda: do_push(run, url=url, project=project, what=what, only=only, sample=sample, graph=graph))
    typer.echo(result.summary())


@annotate_app.command(epilog=EPILOG)
def pull(
    run: RunArg,
    url: UrlOpt = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project title (default: every project pushed from this run).")
    ] = None,
    graph: GraphOpt = None,
) -> None:
    """Read submitted annotations into the run as human score records (idempotent); write the agreement report."""
    from interleaf.annotate.pull import pull as do_pull  # imported per command: `interleaf --help` stays fast

    result = _guarded(lambda: do_pull(run, url=url, project=project, graph=graph))
    typer.echo(result.summary())


@annotate_app.command(epilog=EPILOG)
def apply(
    run: RunArg,
    graph: GraphOpt = None,
    prefer: Annotated[
        Literal["human", "judge"] | None,
        typer.Option("--prefer", help="Whose score wins where both exist (default: the graph's prefer param, "
                                      "else human)."),
    ] = None,
) -> None:
    """Re-prune and re-pair the run with human scores taking precedence; no model is called."""
    from interleaf.annotate.apply import apply as do_apply  # imported per command: `interleaf --help` stays fast

    result = _guarded(lambda: do_apply(run, graph=graph, prefer=prefer))
    typer.echo(result.summary())
