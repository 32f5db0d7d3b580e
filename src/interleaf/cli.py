"""The ``interleaf`` command.

Heavy libraries (torch, diffusers, litellm, prefect) are imported inside the
commands that need them, so ``interleaf --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from interleaf.annotate.cli import annotate_app
from interleaf.bench.cli import bench_app
from interleaf.errors import InterleafError

app = typer.Typer(
    name="interleaf",
    help="Generate multi-turn interleaved text-and-image dialogue datasets with preference pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    epilog="Exit codes: 0 all seeds done; 1 finished with failed seeds; 2 bad input, configuration or preflight; "
           "3 stopped by a systemic failure, resumable; 130 interrupted, resumable.",
)
graphs_app = typer.Typer(help="Built-in graphs.", no_args_is_help=True)
import_app = typer.Typer(help="Import existing datasets as runs.", no_args_is_help=True)
prefect_app = typer.Typer(help="Prefect: prepare a server for the deployments of prefect.yaml.", no_args_is_help=True)
app.add_typer(graphs_app, name="graphs")
app.add_typer(import_app, name="import")
app.add_typer(prefect_app, name="prefect")
app.add_typer(bench_app, name="bench")
app.add_typer(annotate_app, name="annotate")


def _fail(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


T = TypeVar("T")


def _guarded(action: Callable[[], T]) -> T:
    """Run a command's work; map interleaf's errors to the documented exit codes.

    A store that stays unreachable is systemic (3, resumable); every other interleaf error is
    bad input, configuration or preflight (2); Ctrl-C outside a run's own handling is 130.
    """
    from interleaf.errors import ServiceUnavailableError
    from interleaf.storage.store import StoreUnavailableError

    try:
        return action()
    except (StoreUnavailableError, ServiceUnavailableError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=3) from None
    except InterleafError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(code=130) from None


@app.command()
def validate(
    graph: Annotated[str, typer.Argument(help="Graph YAML path or built-in graph name.")],
) -> None:
    """Check a graph's schema and wiring without calling any model."""
    from interleaf.graphs.compiler import compile_graph
    from interleaf.graphs.loading import load_graph

    try:
        spec, doc = load_graph(graph)
        cg = compile_graph(spec, doc)
    except InterleafError as exc:
        raise _fail(exc) from None
    typer.echo(f"ok: {doc.path}: graph {spec.name!r}, {len(cg.nodes)} nodes, {len(spec.edges)} edges")


@graphs_app.command("list")
def graphs_list() -> None:
    """List built-in graphs."""
    from interleaf.graphs.loading import builtin_graphs, load_graph

    for name, path in builtin_graphs().items():
        spec, _ = load_graph(path)
        first = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
        typer.echo(f"{name:<18} {first}")


@graphs_app.command("show")
def graphs_show(name: Annotated[str, typer.Argument(help="Built-in graph name.")]) -> None:
    """Print a built-in graph's YAML (copy it and edit it)."""
    from interleaf.graphs.loading import builtin_graphs

    graphs = builtin_graphs()
    if name not in graphs:
        raise _fail(InterleafError(f"no built-in graph {name!r} (built-ins: {', '.join(graphs)})"))
    sys.stdout.write(graphs[name].read_text(encoding="utf-8"))


#: Kept equal to interleaf.processes.MIN_SEEDS_PER_PROCESS (tests check), so --help needs no import.
MIN_SEEDS_PER_PROCESS_HELP = 32

EXIT_CODES_HELP = (
    "Exit codes: 0 every seed done; 1 finished with failed seeds; 2 bad input, configuration or "
    "preflight (nothing run); 3 stopped by a systemic failure (endpoint down, bad key, store gone), "
    "resumable; 130 interrupted, resumable."
)


@app.command(epilog=EXIT_CODES_HELP)
def run(
    graph: Annotated[str, typer.Argument(help="Graph YAML path or built-in graph name.")],
    seeds: Annotated[Path, typer.Option("--seeds", help="Seeds file (JSONL or Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (running again resumes).")],
    store: Annotated[str | None, typer.Option("--store", help="Store URI (file://..., s3://bucket/prefix).")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Dialogues in flight (default: graph defaults).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes on this machine, each with its own event loop; model caps "
                                 "and --concurrency are totals across them (default: the cores, at most one per "
                                 f"{MIN_SEEDS_PER_PROCESS_HELP} pending seeds; one for graphs with image pipelines).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N seeds.")] = None,
    force_new_run: Annotated[
        bool, typer.Option("--force-new-run", help="Start over even if DIR holds a run of another graph.")
    ] = False,
    rerun_changed: Annotated[
        bool, typer.Option("--rerun-changed", help="Redo seeds whose content changed since the run recorded them.")
    ] = False,
    preflight: Annotated[
        bool, typer.Option("--preflight/--no-preflight", help="Probe every endpoint before the first seed.")
    ] = True,
    orchestrate: Annotated[bool, typer.Option("--orchestrate", help="Run through the Prefect flow.")] = False,
    shard_size: Annotated[int, typer.Option(min=1, help="Seeds per shard with --orchestrate.")] = 100,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a graph over seed prompts (same command again resumes)."""
    from interleaf.launch import RunOptions, run_from_cli

    opts = RunOptions(
        graph=graph, seeds=seeds, out=out, store=store, concurrency=concurrency, workers=workers, limit=limit,
        force_new_run=force_new_run, orchestrate=orchestrate, shard_size=shard_size, progress=not quiet,
        preflight=preflight, rerun_changed=rerun_changed,
    )
    outcome = _guarded(lambda: run_from_cli(opts))
    typer.echo(outcome.describe())
    if outcome.exit_code:
        raise typer.Exit(code=outcome.exit_code)


@app.command(epilog="Exit codes: 0 every seed done; 1 some failed or pending; 2 no run there.")
def status(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or store URI).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """What a run holds: seeds done/failed/pending with reasons, branches, calls, tokens, cost."""
    from interleaf.run.status import run_status

    report = _guarded(lambda: run_status(run_dir))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        typer.echo(report.describe())
    if report.totals.failed or report.totals.pending:
        raise typer.Exit(code=1)


@app.command(epilog="Exit codes: 0 every check passed; 2 a check failed.")
def check(
    graph: Annotated[str, typer.Argument(help="Graph YAML path or built-in graph name.")],
    seeds: Annotated[Path | None, typer.Option("--seeds", help="Also estimate calls, images and cost.")] = None,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Send one tiny request per endpoint.")] = True,
) -> None:
    """Preflight a graph alone: credentials, one tiny request per endpoint, image tools."""
    import asyncio

    from interleaf.graphs.compiler import compile_graph
    from interleaf.graphs.loading import load_graph
    from interleaf.preflight import apreflight, estimate
    from interleaf.runtime import Runtime
    from interleaf.seeds import scan_seeds

    def build() -> tuple[Any, Any]:
        spec, doc = load_graph(graph)
        runtime = Runtime(spec, spec_dir=Path(doc.path).parent)
        compile_graph(spec, doc, runtime)
        return spec, runtime

    spec, runtime = _guarded(build)

    async def probe_all() -> Any:
        try:
            return await apreflight(runtime, probe=probe)
        finally:
            await runtime.aclose()

    report = _guarded(lambda: asyncio.run(probe_all()))
    typer.echo(report.text())
    if seeds is not None:
        count = _guarded(lambda: scan_seeds(seeds).count)
        for line in estimate(spec, count).lines():
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(code=2)


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
    images_root: Annotated[
        str | None, typer.Option("--images-root", help="Folder or URI the images are read from "
                                 "(default: the imported file's folder).")
    ] = None,
    allow_outside_root: Annotated[
        bool, typer.Option("--allow-outside-root", help="Also read absolute or ../ image paths outside the root.")
    ] = False,
    missing_images: Annotated[
        str, typer.Option("--missing-images", help="When an image is not there: error | placeholder | skip.")
    ] = "error",
) -> None:
    """Read InterMT-format dialogues into a run (to re-judge, extend or view)."""
    from interleaf.datasets.intermt import import_intermt

    try:
        report = import_intermt(file, out, images_root=images_root, allow_outside_root=allow_outside_root,
                                missing_images=missing_images)  # type: ignore[arg-type]
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
    from interleaf.datasets.pruning_quality import write_pruning_quality
    from interleaf.datasets.reports import write_reports
    from interleaf.run.layout import open_store

    try:
        store = open_store(run_dir)
        keys = write_reports(store) + write_pruning_quality(store)
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
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Answer 401 to requests without this bearer key.")
    ] = None,
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated model names served; others get 404.")
    ] = None,
    hang_rate: Annotated[float, typer.Option(help="Share of requests that never answer.")] = 0.0,
    defect_rate: Annotated[list[str] | None, typer.Option(
        "--defect-rate", help="Planted defects: KIND=RATE, or RATE for every kind; repeatable (kinds: missing_image, "
        "image_text_mismatch, context_contradiction, off_topic, truncated, unsafe).")] = None,
    judge_noise: Annotated[float, typer.Option(
        "--judge-noise", min=0.0, max=1.0, help="Share of judge lines scored wrong on purpose.")] = 0.0,
) -> None:
    """Serve the scripted OpenAI-compatible simulator on 127.0.0.1 until interrupted.

    ``GET /stats`` returns the requests it received (total, by model, by status).
    """
    from interleaf.testing.simulator import parse_defect_rates, serve_forever

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    try:
        rates = parse_defect_rates(defect_rate or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--defect-rate") from None
    serve_forever(port=port, latency=latency, fault_rate=fault_rate, seed=seed, api_key=api_key, models=names,
                  hang_rate=hang_rate, defect_rates=rates, judge_noise=judge_noise)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Run directory (running again resumes).")] = Path("runs/demo"),
    graph: Annotated[str, typer.Option(help="Built-in graph or YAML path to run.")] = "intermt",
    seeds: Annotated[Path | None, typer.Option(help="Seeds file (default: the bundled demo seeds).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a graph offline: models on the local simulator, images from tiny random-weight pipelines."""
    from interleaf.testing.demo import run_demo

    outcome = _guarded(lambda: run_demo(out, graph=graph, seeds=seeds, progress=not quiet))
    typer.echo(outcome.describe())
    if outcome.totals.done or outcome.totals.skipped:
        typer.echo(f"next: interleaf view {out} --out {out}/report")
    if outcome.exit_code:
        raise typer.Exit(code=outcome.exit_code)


@prefect_app.command("setup")
def prefect_setup(
    prefect_file: Annotated[Path, typer.Option("--prefect-file", help="The deployments file.")] = Path("prefect.yaml"),
) -> None:
    """Create the work pools, concurrency limits and the crash-detection automation the deployments need.

    Idempotent. Then: prefect --no-prompt deploy --all
    """
    from interleaf.flows.setup import run_setup

    for line in _guarded(lambda: run_setup(prefect_file)):
        typer.echo(line)


def _configure_logging() -> None:
    """interleaf's warnings (a lock taken over, a dialogue that failed) go to stderr, one line each."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("interleaf")
    if not logger.handlers:
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def main() -> None:
    _configure_logging()
    try:
        app()
    except InterleafError as exc:  # errors raised outside a command's own handler
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
