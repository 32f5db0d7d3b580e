"""The ``intermt_bench`` report kind: a readable report with plots, and ``intermt_bench.json``.

A bench graph declares it (``interleaf report DIR`` rebuilds it like any declared report)::

    reports:
      intermt_bench:
        kind: intermt_bench
        params: {task: score}

Files, under ``reports/``: ``<name>.json`` (:func:`~interleaf.bench.metrics.bench_summary`),
``<name>.md``, ``<name>_by_turns.png`` (the multi-turn scaling curve) and, for score and pair,
``<name>_dimensions.png`` (the metric per dimension). :func:`write_bench_report` writes the same
files for any run (``interleaf bench agreement RUN_DIR``).

Matplotlib is imported only when a plot is drawn, through its object-oriented API.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.bench.metrics import Task, bench_summary
from interleaf.datasets.outputs import OutputError, prepare_out_dir, write_bytes
from interleaf.errors import InterleafError
from interleaf.graphs.reporting import ReportFile, ReportKind, ReportOutput, report_kinds
from interleaf.run import layout
from interleaf.state import DialogueState
from interleaf.storage.store import ObjectStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The report's name in the bench graphs, so the machine-readable file is ``intermt_bench.json``.
REPORT_NAME = "intermt_bench"

_METRIC_LABEL = {"agreement": "exact agreement with people", "accuracy": "accuracy against people's preference",
                 "mean_score": "mean grade (1-5) against people's reference"}
_TITLES = {"score": "InterMT-Bench: Scoring Evaluation", "pair": "InterMT-Bench: Pair Comparison",
           "crucial": "InterMT-Bench: Crucial Step Recognition", "agreement": "Judge agreement with people"}


class BenchReportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: Literal["score", "pair", "crucial", "agreement"] = Field(
        description="score (agreement, Pearson), pair (accuracy), crucial (grades), agreement (any run).")
    title: str | None = None
    digits: int = Field(default=3, ge=0, le=12)


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure() -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def scaling_figure(summary: dict[str, Any], title: str) -> Figure:
    """The multi-turn scaling curve: the task's metric against the turns the judge read."""
    fig, ax = _figure()
    series: list[tuple[str, list[dict[str, Any]]]] = [("all judgments", summary["by_turns"])]
    by_level = summary.get("by_turns_by_level") or {}
    if by_level.get("turn") and by_level.get("dialogue"):
        series += [("turn scores", by_level["turn"]), ("dialogue scores", by_level["dialogue"])]
    for label, points in series:
        xs = [p["turns"] for p in points]
        ys = [p["metric"] for p in points]
        ax.plot(xs, ys, marker="o", label=label, linewidth=2.2 if label == "all judgments" else 1.2,
                linestyle="-" if label == "all judgments" else "--")
        if label == "all judgments":
            for x, y, p in zip(xs, ys, points, strict=True):
                ax.annotate(f"n={p['items']}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center",
                            fontsize=8)
    turns = sorted({p["turns"] for _, pts in series for p in pts})
    ax.set_xticks(turns or [1])
    ax.set_xlabel("turns of dialogue the judge read")
    ax.set_ylabel(_METRIC_LABEL.get(summary["metric"], summary["metric"]))
    if summary["metric"] == "mean_score":
        low, high = summary.get("scale", [1, 5])
        ax.set_ylim(low - 0.2, high + 0.5)
    else:
        ax.set_ylim(-0.05, 1.12)  # room for the n= labels above 1.0
    judge = summary.get("judge") or "unknown judge"
    ax.set_title(f"{title}\n{judge}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def dimensions_figure(summary: dict[str, Any], title: str) -> Figure:
    """The task's metric per dimension (bars), turn-level and dialogue-level dimensions apart."""
    fig, ax = _figure()
    key = "accuracy" if summary["task"] == "pair" else "agreement"
    dims = summary["dimensions"]
    names = sorted(dims, key=lambda d: (dims[d]["level"] != "turn", d))
    values = [dims[d][key] if dims[d][key] is not None else 0.0 for d in names]
    colours = ["#2f6fde" if dims[d]["level"] == "turn" else "#1f9d55" for d in names]
    ax.barh(range(len(names)), values, color=colours)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(_METRIC_LABEL[key])
    ax.set_title(f"{title}\nper dimension (blue: turn level, green: dialogue level)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def summary_markdown(summary: dict[str, Any], title: str, name: str, digits: int = 3) -> str:
    """The readable report: what was measured, the numbers, what they mean, the plots."""
    d = digits
    task = summary["task"]
    lines = [f"## {title}", "", f"Judge: `{summary.get('judge') or 'unknown'}`"]
    if summary.get("grader"):
        lines[-1] += f"; grader: `{summary['grader']}`"
    lines += ["", f"{summary['items']} items, {summary['judgments']} judge answers: {summary['parsed']} parsed, "
              f"{summary['unparsed']} unparsed (counted, never guessed)."]
    placeholders = summary.get("placeholders") or {}
    if placeholders.get("items"):
        lines += ["", f"**{placeholders['items']} items judged without their images** "
                  f"({placeholders['images']} missing images replaced by placeholders)."]
    lines.append("")
    if task in ("score", "agreement"):
        lines += [f"Exact agreement: **{_fmt(summary['agreement'], d)}** over {summary['comparisons']} labels; "
                  f"mean Pearson r: **{_fmt(summary['pearson'], d)}**.", "",
                  "| dimension | level | n | agreement | Pearson r | mean abs. error | unparsed |",
                  "|---|---|---|---|---|---|---|"]
        for dim, v in summary["dimensions"].items():
            lines.append(f"| `{dim}` | {v['level']} | {v['n']} | {_fmt(v['agreement'], d)} | {_fmt(v['pearson'], d)} "
                         f"| {_fmt(v['mean_abs_error'], d)} | {v['unparsed']} |")
        between = summary.get("human_agreement") or {}
        if between.get("n"):
            lines += ["", f"People agreed with each other on {_fmt(between['agreement'], d)} of the labels two of "
                      f"them gave the same turn or dialogue (n={between['n']}): the level to compare the judge with."]
        lines += ["", "Agreement is the share of people's labels the judge matched exactly (0-3 scales); Pearson r "
                  "(per dimension, '–' when a side is constant or has under two points) says whether the judge "
                  "ranks turns and dialogues as people do even where it is off by one."]
    if task == "pair" or (task == "agreement" and summary.get("pair")):
        p = summary if task == "pair" else summary["pair"]
        lines += ["", f"Accuracy: **{_fmt(p['accuracy'], d)}** over {p['comparisons']} preferences "
                  f"({p['ties_excluded']} people's ties left out; {p['judge_ties']} judge ties counted wrong).",
                  "", "| dimension | level | n | accuracy | ties left out | unparsed |", "|---|---|---|---|---|---|"]
        for dim, v in p["dimensions"].items():
            lines.append(f"| `{dim}` | {v['level']} | {v['n']} | {_fmt(v['accuracy'], d)} | {v['ties_excluded']} "
                         f"| {v['unparsed']} |")
        if p.get("first_position_rate") is not None:
            lines += ["", f"The judge chose the response shown first {_fmt(p['first_position_rate'], d)} of the "
                      "time (0.5 is no position bias; half the pairs were shown swapped)."]
    if task == "crucial":
        dist = ", ".join(f"{k}: {v}" for k, v in summary["distribution"].items())
        low, high = summary["scale"]
        lines += [f"Mean grade: **{_fmt(summary['mean_score'], d)}** ({low}-{high}) over {summary['graded']} "
                  f"graded answers ({summary['ungraded']} ungraded). Distribution: {dist}.", "",
                  "The grader compares the judge's account of the crucial step(s) and their fulfilment with the "
                  "person's reference reason."]
        sa = summary["score_agreement"]
        if sa["n"]:
            lines += ["", f"The judge's own crucial_step_recognition score matched people's "
                      f"{_fmt(sa['agreement'], d)} of the time (n={sa['n']})."]
    lines += ["", "### Multi-turn scaling", "",
              f"{_METRIC_LABEL.get(summary['metric'], summary['metric'])} by the number of turns the judge read:", "",
              "| turns | items | metric |", "|---|---|---|"]
    for point in summary["by_turns"]:
        lines.append(f"| {point['turns']} | {point['items']} | {_fmt(point['metric'], d)} |")
    if not summary["by_turns"]:
        lines.append("| (nothing to compare) | | |")
    else:
        lines += ["", f"![multi-turn scaling]({name}_by_turns.png)"]
        if task != "crucial" and summary.get("dimensions"):
            lines += ["", f"![per dimension]({name}_dimensions.png)"]
    return "\n".join(lines) + "\n"


def bench_files(dialogues: Iterable[DialogueState], task: Task, name: str = REPORT_NAME,
                title: str | None = None, digits: int = 3) -> ReportOutput:
    """Every file of the report (no I/O)."""
    summary = bench_summary(dialogues, task)
    title = title or _TITLES[task]
    out = ReportOutput()
    out.files.append(ReportFile(f"{name}.json", (json.dumps(summary, indent=2, sort_keys=False) + "\n").encode()))
    if summary["by_turns"]:
        out.files.append(ReportFile(f"{name}_by_turns.png", _png(scaling_figure(summary, title))))
        if task != "crucial" and summary.get("dimensions"):
            out.files.append(ReportFile(f"{name}_dimensions.png", _png(dimensions_figure(summary, title))))
    out.markdown = summary_markdown(summary, title, name, digits)
    out.files.append(ReportFile(f"{name}.md", out.markdown.encode("utf-8")))
    return out


@report_kinds.register("intermt_bench")
class InterMTBenchReport(ReportKind):
    """Judge-vs-people metrics of one bench task, the multi-turn scaling plot, per-dimension plot."""

    kind = "intermt_bench"
    Params = BenchReportParams
    params: BenchReportParams

    def build(self, dialogues: Iterable[DialogueState]) -> ReportOutput:
        p = self.params
        return bench_files(dialogues, p.task, self.name, p.title, p.digits)


def write_bench_report(run: str | Path, task: Task = "agreement", out: Path | None = None) -> list[str]:
    """Build the report of ``task`` over the run at ``run`` and write it: under the run's
    ``reports/`` (its store), or into the folder ``out``. Returns where each file went."""
    store = layout.open_store(run)
    dialogues = [DialogueState.model_validate(v) for _, v in store.iter_json(layout.DIALOGUE_PREFIX)]
    if not dialogues:
        raise InterleafError(f"{run}: no dialogues in this run ({store.uri})")
    output = bench_files(dialogues, task)
    written: list[str] = []
    if out is not None:
        folder = prepare_out_dir(Path(out))
        for f in output.files:
            write_bytes(folder / f.name, f.data)
            written.append(str(folder / f.name))
        return written
    try:
        for f in output.files:
            key = layout.report_key(f.name)
            store.put_bytes(key, f.data)
            written.append(store.url(key))
    except OSError as exc:
        if isinstance(exc, InterleafError):
            raise
        raise OutputError.from_os(store.url(layout.REPORTS_PREFIX), exc) from None
    return written


def read_summary(store: ObjectStore, name: str = REPORT_NAME) -> dict[str, Any] | None:
    """The ``<name>.json`` a run's reports hold, if any."""
    raw = store.get_json_or_none(layout.report_key(f"{name}.json"))
    return raw if isinstance(raw, dict) else None
