"""``interleaf bench``: is your judge good enough? (InterMT-Bench, and agreement on your own data.)

The sub-app the ``interleaf`` command mounts (``app.add_typer(bench_app, name="bench")``):

``interleaf bench intermt FILE --task score|pair|crucial --judge MODEL --out DIR``
    imports FILE, runs the built-in ``intermt-bench-<task>`` graph through the normal engine
    (resumable, counted like any run; same exit codes as ``interleaf run``) and writes
    ``DIR/reports/intermt_bench.{json,md}`` with the scaling plot.
``interleaf bench agreement RUN_DIR``
    the same metrics for any run holding both judge scores and people's scores.

Heavy modules (the engine, litellm, matplotlib) are imported inside the commands, so
``interleaf --help`` stays fast. Bad input is exit 2, a store that stays unreachable 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from interleaf.errors import InterleafError

bench_app = typer.Typer(help="Is your judge good enough? Measure it against people's labels.",
                        no_args_is_help=True)


def _exit(code: int, message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _guard(exc: BaseException) -> typer.Exit:
    # Imported here: the store module pulls in fsspec, which --help does not need.
    from interleaf.storage.store import StoreUnavailableError

    if isinstance(exc, StoreUnavailableError):
        return _exit(3, str(exc))
    return _exit(2, str(exc))


def headline(summary: dict[str, Any]) -> str:
    """The numbers a person reads first, one line.

    >>> headline({"task": "pair", "judge": "openai/x", "items": 4, "parsed": 3, "unparsed": 1, "accuracy": 0.5,
    ...           "by_turns": [{"turns": 1, "items": 2, "metric": 1.0}, {"turns": 2, "items": 2, "metric": 0.0}]})
    'openai/x on 4 items (3 parsed, 1 unparsed): accuracy 0.500; by turns 1:1.00 2:0.00'
    """
    task = summary["task"]
    key = {"pair": "accuracy", "crucial": "mean_score"}.get(task, "agreement")
    value = summary.get(key)
    shown = "–" if value is None else f"{value:.3f}"
    extra = ""
    if task in ("score", "agreement") and summary.get("pearson") is not None:
        extra = f", Pearson {summary['pearson']:.3f}"
    curve = " ".join(f"{p['turns']}:{p['metric']:.2f}" for p in summary.get("by_turns", []))
    return (f"{summary.get('judge') or 'judge'} on {summary['items']} items ({summary['parsed']} parsed, "
            f"{summary['unparsed']} unparsed): {key.replace('_', ' ')} {shown}{extra}"
            + (f"; by turns {curve}" if curve else ""))


@bench_app.command("intermt", epilog=(
    "Exit codes as for `interleaf run`: 0 every item judged; 1 some failed; 2 bad input (nothing run); "
    "3 stopped by a systemic failure, resumable; 130 interrupted, resumable."))
def intermt(
    file: Annotated[Path, typer.Argument(help="InterMT-Bench file (JSON list or JSONL) or an InterMT export folder.")],
    task: Annotated[str, typer.Option("--task", help="score | pair | crucial")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (running again resumes).")],
    judge: Annotated[str | None, typer.Option("--judge", help="litellm model string of the judge under test "
                                              "(default: INTERLEAF_JUDGE_MODEL, else openai/gpt-4o).")] = None,
    grader: Annotated[str | None, typer.Option("--grader", help="crucial only: the model that grades the "
                                               "judge's answers (default: INTERLEAF_GRADER_MODEL).")] = None,
    images_root: Annotated[str | None, typer.Option("--images-root", help="Folder or fsspec URI (s3://..., "
                                                    "hf://datasets/...) the images are under.")] = None,
    missing_images: Annotated[str, typer.Option("--missing-images", help="error | placeholder | skip")] = "error",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items of FILE.")] = None,
    allow_outside_root: Annotated[bool, typer.Option("--allow-outside-root",
                                                     help="Also read absolute or ../ image paths.")] = False,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Items in flight.")] = None,
    preflight: Annotated[bool, typer.Option("--preflight/--no-preflight",
                                            help="Probe the judge's endpoint before the first item.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Judge an InterMT-Bench file with MODEL and compare it with the people's labels."""
    # Imported here: the engine pulls in LangGraph and litellm (seconds), which --help does not need.
    from interleaf.bench.prepare import BenchRequest, prepare_intermt_bench

    # Imported here too (reading the report back): the store and the report module.
    from interleaf.bench.report import read_summary
    from interleaf.launch import RunOptions, run_from_cli
    from interleaf.run.layout import open_store

    if missing_images not in ("error", "placeholder", "skip"):
        raise _exit(2, f"--missing-images must be error, placeholder or skip, not {missing_images!r}")
    request = BenchRequest(file=file, task=task, out=out, judge=judge, grader=grader, images_root=images_root,
                           missing_images=missing_images, limit=limit,  # type: ignore[arg-type]
                           allow_outside_root=allow_outside_root)
    try:
        plan = prepare_intermt_bench(request)
        typer.echo(plan.describe(), err=True)
        # --rerun-changed: the seeds are derived from FILE, so an item whose import changed
        # (an image found at last) is judged again; unchanged items are skipped.
        outcome = run_from_cli(RunOptions(graph=plan.graph, seeds=plan.seeds, out=plan.out, concurrency=concurrency,
                                          progress=not quiet, preflight=preflight, rerun_changed=True))
    except KeyboardInterrupt:
        raise _exit(130, "interrupted") from None
    except InterleafError as exc:
        raise _guard(exc) from None
    typer.echo(outcome.describe())
    try:
        summary = read_summary(open_store(str(plan.out)))
    except InterleafError:
        summary = None
    if summary is not None:
        typer.echo(headline(summary))
        typer.echo(f"report: {plan.out / 'reports' / 'intermt_bench.md'}")
    if outcome.exit_code:
        raise typer.Exit(code=outcome.exit_code)


@bench_app.command("agreement", epilog="Exit codes: 0 report written; 2 no run there, or no people's scores in it.")
def agreement(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or store URI) with judge and people's scores.")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the report (default: the run's "
                                             "reports/).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print intermt_bench.json instead of a summary.")] = False,
) -> None:
    """Compare a run's judge scores with its people's scores (imported, or annotated later)."""
    # Imported here: reading a run and drawing plots pull in pydantic models and matplotlib.
    from interleaf.bench.metrics import bench_summary
    from interleaf.bench.prepare import BenchError

    # Imported here as well: the report writer and the run reader (fsspec, pydantic models).
    from interleaf.bench.report import write_bench_report
    from interleaf.run.reader import RunReader

    try:
        states = list(RunReader.open(run_dir).dialogues())
        summary = bench_summary(states, "agreement")
        if not summary["judgments"] and not (summary.get("pair") or {}).get("judgments"):
            raise BenchError(
                f"{run_dir}: nothing to compare; the run needs turns or dialogues scored both by its judge and by "
                "people (HumanScore records: `interleaf import intermt` of annotated data, or an annotation "
                "round trip), or people's preference pairs with judge pairs on the same answers")
        written = write_bench_report(run_dir, "agreement", out)
    except InterleafError as exc:
        raise _guard(exc) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(headline(summary))
    for where in written:
        typer.echo(where)
