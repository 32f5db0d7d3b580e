"""The ``interleaf`` command.

Heavy libraries (torch, diffusers, litellm, prefect) are imported inside the
commands that need them, so ``interleaf --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from interleaf.errors import InterleafError

app = typer.Typer(
    name="interleaf",
    help="Generate multi-turn interleaved text-and-image dialogue datasets with preference pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
graphs_app = typer.Typer(help="Built-in graphs.", no_args_is_help=True)
import_app = typer.Typer(help="Import existing datasets as runs.", no_args_is_help=True)
app.add_typer(graphs_app, name="graphs")
app.add_typer(import_app, name="import")


def _fail(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


@app.command()
def validate(
    graph: Annotated[str, typer.Argument(help="Graph YAML path or built-in graph name.")],
) -> None:
    """Check a graph's schema and wiring without calling any model."""
    from interleaf.graphs.compiler import compile_graph, load_graph

    try:
        spec, doc = load_graph(graph)
        cg = compile_graph(spec, doc)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(f"ok: {doc.path}: graph {spec.name!r}, {len(cg.nodes)} nodes, {len(spec.edges)} edges")


@graphs_app.command("list")
def graphs_list() -> None:
    """List built-in graphs."""
    from interleaf.graphs.compiler import builtin_graphs, load_graph

    for name, path in builtin_graphs().items():
        spec, _ = load_graph(path)
        first = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
        typer.echo(f"{name:<18} {first}")


@graphs_app.command("show")
def graphs_show(name: Annotated[str, typer.Argument(help="Built-in graph name.")]) -> None:
    """Print a built-in graph's YAML (copy it and edit it)."""
    from interleaf.graphs.compiler import builtin_graphs

    graphs = builtin_graphs()
    if name not in graphs:
        raise _fail(InterleafError(f"no built-in graph {name!r} (built-ins: {', '.join(graphs)})"))
    sys.stdout.write(graphs[name].read_text(encoding="utf-8"))


@app.command()
def run(
    graph: Annotated[str, typer.Argument(help="Graph YAML path or built-in graph name.")],
    seeds: Annotated[Path, typer.Option("--seeds", help="Seeds file (JSONL or Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (running again resumes).")],
    store: Annotated[str | None, typer.Option("--store", help="Store URI (file://..., s3://bucket/prefix).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Dialogues in flight (default: graph defaults).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N seeds.")] = None,
    force_new_run: Annotated[
        bool, typer.Option("--force-new-run", help="Start over even if DIR holds a run of another graph.")
    ] = False,
    orchestrate: Annotated[bool, typer.Option("--orchestrate", help="Run through the Prefect flow.")] = False,
    shard_size: Annotated[int, typer.Option(help="Seeds per shard with --orchestrate.")] = 100,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a graph over seed prompts (same command again resumes)."""
    from interleaf.runner import RunOptions, run_from_cli

    opts = RunOptions(
        graph=graph, seeds=seeds, out=out, store=store, concurrency=concurrency, limit=limit,
        force_new_run=force_new_run, orchestrate=orchestrate, shard_size=shard_size, progress=not quiet,
    )
    try:
        summary = run_from_cli(opts)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(summary.describe())
    if summary.failed and summary.done == 0:
        raise typer.Exit(code=1)


@app.command()
def export(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or store URI).")],
    format: Annotated[str, typer.Option("--format", help="intermt | align-anything | hf | jsonl")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    push_to_hub: Annotated[str | None, typer.Option(help="hf only: push to this Hub repo id.")] = None,
) -> None:
    """Export a run's dialogues and preference pairs."""
    from interleaf.datasets.export import export_run

    try:
        report = export_run(run_dir, format, out, push_to_hub=push_to_hub)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(report)


@import_app.command("intermt")
def import_intermt_cmd(
    file: Annotated[Path, typer.Argument(help="InterMT-format JSON or JSONL file.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to create.")],
) -> None:
    """Read InterMT-format dialogues into a run (to re-judge, extend or view)."""
    from interleaf.datasets.intermt import import_intermt

    try:
        report = import_intermt(file, out)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(report)


@app.command()
def view(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or store URI).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the static HTML report.")],
) -> None:
    """Write a self-contained HTML report of a run's trees."""
    from interleaf.datasets.viewer import render_run

    try:
        index = render_run(run_dir, out)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {index}")


@app.command()
def report(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or store URI).")],
) -> None:
    """(Re)build the run-level reports its graph declares (tables, plots) under reports/."""
    from interleaf.datasets.reports import write_reports
    from interleaf.datasets.run_reader import resolve_store

    try:
        store = resolve_store(run_dir)
        keys = write_reports(store)
    except InterleafError as exc:
        raise _fail(exc) from None
    if not keys:
        typer.echo("this run's graph declares no reports")
    for key in keys:
        typer.echo(store.url(key))


@app.command()
def sim(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8765,
    latency: Annotated[float, typer.Option(help="Seconds added to every answer.")] = 0.0,
    fault_rate: Annotated[float, typer.Option(help="Share of requests answered with an injected fault.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for scripted answers and faults.")] = 0,
) -> None:
    """Serve the scripted OpenAI-compatible simulator on 127.0.0.1 until interrupted."""
    from interleaf.testing.simulator import serve_forever

    serve_forever(port=port, latency=latency, fault_rate=fault_rate, seed=seed)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Run directory (running again resumes).")] = Path("runs/demo"),
    graph: Annotated[str, typer.Option(help="Built-in graph or YAML path to run.")] = "intermt",
    seeds: Annotated[Path | None, typer.Option(help="Seeds file (default: the bundled demo seeds).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a graph offline: models on the local simulator, images from tiny random-weight pipelines."""
    from interleaf.testing.demo import run_demo

    try:
        summary = run_demo(out, graph=graph, seeds=seeds, progress=not quiet)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(summary.describe())
    typer.echo(f"run written to {out}; next: interleaf view {out} --out {out}/report")


def main() -> None:
    try:
        app()
    except InterleafError as exc:  # errors raised outside a command's own handler
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
