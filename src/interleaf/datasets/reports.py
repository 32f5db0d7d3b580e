"""Run-level reports: tables and plots computed from a finished run's dialogues.

A graph lists its reports as data::

    reports:
      fabrication_by_level:
        kind: score_table
        params: {metric: fabrication, aggregate: rate, threshold: 1, rows: level, columns: model, plot: line}

:func:`check_reports` validates them with the graph (file and line on every problem);
:func:`write_reports` reads a run's ``graph.yaml`` and ``dialogues/*.json`` and writes
``reports/<name>.md``, ``.csv``, ``.json`` and (with a plot) ``.png``, plus ``reports/index.md``.
Report kinds register in :data:`report_kinds` (entry-point group ``interleaf.reports``).

Matplotlib is imported only when a plot is drawn, through its object-oriented API (no pyplot
state), so reports can be written from any thread.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from interleaf.datasets.outputs import OutputError
from interleaf.errors import InterleafError, SpecError
from interleaf.graphs.loading import load_graph_text
from interleaf.graphs.reporting import ReportFile, ReportKind, ReportOutput, check_reports, make_report, report_kinds
from interleaf.graphs.rubric import Level, RubricNotFound, dimension_hint, load_rubric
from interleaf.run import layout
from interleaf.state import DialogueState, NodeStatus, Score, TreeNode
from interleaf.storage.store import ObjectStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from interleaf.graphs.spec import GraphSpec

#: PNG text chunk holding the plotted series' labels (JSON list), for readers that cannot see lines.
SERIES_METADATA_KEY = "interleaf:series"
#: Keys that name a tree node's own fields rather than one of its tags.
NODE_FIELDS = ("seed", "turn", "candidate", "status", "id")


# -- score_table ---------------------------------------------------------------------------------

class ScoreTableParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    metric: str = Field(description="The score dimension to aggregate.")
    rubric: str | None = Field(
        default=None, description="Rubric (built-in name or path from the graph's folder) the metric must be in."
    )
    source: Literal["turn", "dialogue"] = Field(
        default="turn", description="turn: each tree node's scores; dialogue: whole-dialogue scores by leaf."
    )
    aggregate: Literal["mean", "rate"] = Field(
        default="mean", description="mean of the scores, or the fraction with score >= threshold."
    )
    threshold: float | None = None
    rows: str = Field(default="turn", description="Row key: a node tag (e.g. level) or seed/turn/candidate/status/id.")
    columns: str | None = Field(default="model", description="Column key (a plotted series each); None: one column.")
    statuses: list[NodeStatus] = Field(default_factory=lambda: list[NodeStatus](["alive", "pruned"]), min_length=1)
    plot: Literal["none", "line", "bar"] = "none"
    y_label: str | None = None
    digits: int = Field(default=3, ge=0, le=12)


Key = str | int | float | bool


def _sort_key(value: Key) -> tuple[int, float, str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _fmt(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.{digits}f}"


@dataclass
class ScoreTable:
    """Aggregated scores: ``values[column][row]`` with the number of scores behind each cell."""

    row_key: str
    column_key: str | None
    metric: str
    rows: list[Key]
    columns: list[Key]
    values: dict[Key, dict[Key, float]]
    counts: dict[Key, dict[Key, int]]
    left_out: dict[str, int]

    def series_labels(self) -> list[str]:
        return [str(c) for c in self.columns]

    def figure(self, *, title: str, y_label: str, kind: Literal["line", "bar"] = "line") -> Figure:
        """A matplotlib figure: one series (line or bar group) per column, rows along x."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        xs = list(range(len(self.rows)))
        width = 0.8 / max(1, len(self.columns))
        for i, column in enumerate(self.columns):
            ys = [self.values[column].get(r, math.nan) for r in self.rows]
            if kind == "line":
                ax.plot(xs, ys, marker="o", label=str(column))
            else:
                ax.bar([x + (i - (len(self.columns) - 1) / 2) * width for x in xs], ys, width=width,
                       label=str(column))
        ax.set_xticks(xs, [str(r) for r in self.rows])
        ax.set_xlabel(self.row_key)
        ax.set_ylabel(y_label)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if self.column_key is not None:
            ax.legend(title=self.column_key)
        fig.tight_layout()
        return fig


def _node_key(seed_id: str, node: TreeNode, key: str) -> Key | None:
    if key == "seed":
        return seed_id
    if key in NODE_FIELDS:
        value = getattr(node, key)
        return value if isinstance(value, (str, int, float, bool)) else None
    value = node.tags.get(key)
    if isinstance(value, (str, int, float, bool)):
        return value
    return None if value is None else json.dumps(value, sort_keys=True)


def _scored(dialogues: Iterable[DialogueState], source: str, statuses: Sequence[str]) -> Iterator[
        tuple[str, TreeNode, dict[str, Score]]]:
    for state in dialogues:
        if source == "turn":
            for node in sorted(state.nodes.values(), key=lambda n: n.id):
                if node.status in statuses:
                    yield state.seed.id, node, node.scores
        else:
            for leaf_id in sorted(state.dialogue_scores):
                leaf = state.nodes.get(leaf_id)
                if leaf is not None and leaf.status in statuses:
                    yield state.seed.id, leaf, state.dialogue_scores[leaf_id]


def score_table(dialogues: Iterable[DialogueState], params: ScoreTableParams) -> ScoreTable:
    """Group scores of ``params.metric`` by row and column keys and aggregate each cell."""
    cells: dict[Key, dict[Key, list[float]]] = {}
    left_out = {"unscored": 0, "no row key": 0, "no column key": 0}
    single = params.metric
    for seed_id, node, scores in _scored(dialogues, params.source, params.statuses):
        score = scores.get(params.metric)
        if score is None or score.value is None:
            left_out["unscored"] += 1
            continue
        row = _node_key(seed_id, node, params.rows)
        if row is None:
            left_out["no row key"] += 1
            continue
        column: Key | None = single
        if params.columns is not None:
            column = _node_key(seed_id, node, params.columns)
            if column is None:
                left_out["no column key"] += 1
                continue
        assert column is not None
        cells.setdefault(column, {}).setdefault(row, []).append(score.value)
    columns = sorted(cells, key=_sort_key)
    rows = sorted({r for col in cells.values() for r in col}, key=_sort_key)
    values: dict[Key, dict[Key, float]] = {}
    counts: dict[Key, dict[Key, int]] = {}
    for column in columns:
        for row, scores_ in cells[column].items():
            if params.aggregate == "rate":
                assert params.threshold is not None
                agg = sum(1 for v in scores_ if v >= params.threshold) / len(scores_)
            else:
                agg = sum(scores_) / len(scores_)
            values.setdefault(column, {})[row] = agg
            counts.setdefault(column, {})[row] = len(scores_)
    return ScoreTable(row_key=params.rows, column_key=params.columns, metric=params.metric, rows=rows,
                      columns=columns, values=values, counts=counts, left_out={k: v for k, v in left_out.items() if v})


@report_kinds.register("score_table")
class ScoreTableReport(ReportKind):
    """A table of one score dimension (mean, or rate of ``>= threshold``) by row and column keys,
    optionally plotted with one series per column."""

    kind = "score_table"
    Params = ScoreTableParams
    params: ScoreTableParams

    def __init__(self, name: str, params: ScoreTableParams):
        super().__init__(name, params)
        if params.aggregate == "rate" and params.threshold is None:
            raise SpecError("aggregate 'rate' needs a 'threshold' (a score counts when it is >= threshold)",
                            None, "params.aggregate")
        if params.aggregate == "mean" and params.threshold is not None:
            raise SpecError("'threshold' belongs to aggregate 'rate'", None, "params.threshold")

    def check(self, base_dir: Path | None) -> None:
        p = self.params
        if p.rubric is None:
            return
        try:
            rubric = load_rubric(p.rubric, base_dir)
        except RubricNotFound as exc:
            raise SpecError(str(exc), None, "params.rubric") from None
        level: Level = "turn" if p.source == "turn" else "dialogue"
        names = [d.name for d in rubric.dims(level)]
        if p.metric not in names:
            raise SpecError(
                f"rubric {rubric.name!r} ({rubric.source}) has no {level}-level dimension {p.metric!r} "
                f"(it has: {', '.join(names) or 'none'}){dimension_hint(rubric, p.metric, names)}",
                None, "params.metric",
            )
        dim = rubric.dimension(p.metric)
        if p.threshold is not None and not dim.scale.low <= p.threshold <= dim.scale.high:
            raise SpecError(
                f"threshold {p.threshold:g} lies outside {p.metric!r}'s scale {dim.scale.low}..{dim.scale.high}",
                None, "params.threshold",
            )

    def _describe(self) -> str:
        p = self.params
        if p.aggregate == "rate":
            assert p.threshold is not None
            what = f"share of {p.source}-level scores of `{p.metric}` >= {p.threshold:g}"
        else:
            what = f"mean {p.source}-level score of `{p.metric}`"
        by = f"rows: `{p.rows}`" + (f", columns: `{p.columns}`" if p.columns else "")
        return f"{what}; {by}; statuses counted: {', '.join(p.statuses)}."

    def build(self, dialogues: Iterable[DialogueState]) -> ReportOutput:
        p = self.params
        table = score_table(dialogues, p)
        title = p.title or self.name
        y_label = p.y_label or (f"rate of {p.metric} >= {p.threshold:g}" if p.aggregate == "rate" else
                                f"mean {p.metric}")
        out = ReportOutput()

        header = [p.rows, *[str(c) for c in table.columns]]
        lines = [f"## {title}", "", self._describe(), "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table.rows:
            cells = []
            for column in table.columns:
                n = table.counts.get(column, {}).get(row, 0)
                value = table.values.get(column, {}).get(row)
                cells.append(f"{_fmt(value, p.digits)} (n={n})" if n else "-")
            lines.append("| " + " | ".join([str(row), *cells]) + " |")
        if not table.rows:
            lines.append("| (no scores) |" + " |" * len(table.columns))
        if table.left_out:
            lines += ["", "Left out: " + ", ".join(f"{n} {why}" for why, n in sorted(table.left_out.items())) + "."]

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([p.rows, p.columns or "column", p.metric if p.aggregate == "mean" else f"{p.metric}_rate", "n"])
        for column in table.columns:
            for row in table.rows:
                if row in table.counts.get(column, {}):
                    writer.writerow([row, column, _fmt(table.values[column][row], 6), table.counts[column][row]])
        out.files.append(ReportFile(f"{self.name}.csv", buf.getvalue().encode("utf-8")))

        data = {
            "title": title, "metric": p.metric, "aggregate": p.aggregate, "threshold": p.threshold,
            "rows_key": p.rows, "columns_key": p.columns, "rows": table.rows, "series": table.series_labels(),
            "values": {str(c): {str(r): v for r, v in table.values[c].items()} for c in table.columns},
            "counts": {str(c): {str(r): n for r, n in table.counts[c].items()} for c in table.columns},
            "left_out": table.left_out,
        }
        out.files.append(ReportFile(f"{self.name}.json", json.dumps(data, indent=2, sort_keys=True).encode("utf-8")))

        if p.plot != "none" and table.rows:
            fig = table.figure(title=title, y_label=y_label, kind=p.plot)
            png = io.BytesIO()
            fig.savefig(png, format="png", metadata={SERIES_METADATA_KEY: json.dumps(table.series_labels())})
            out.files.append(ReportFile(f"{self.name}.png", png.getvalue()))
            lines += ["", f"![{title}]({self.name}.png)"]
        out.markdown = "\n".join(lines) + "\n"
        out.files.append(ReportFile(f"{self.name}.md", out.markdown.encode("utf-8")))
        return out


# -- wiring ----------------------------------------------------------------------------------------

def build_reports(spec: GraphSpec, dialogues: Sequence[DialogueState]) -> dict[str, ReportOutput]:
    """Every report of ``spec`` built over ``dialogues`` (no I/O)."""
    return {name: make_report(name, rspec).build(dialogues) for name, rspec in spec.reports.items()}


def _open_store(run: str | Path | ObjectStore) -> ObjectStore:
    return run if isinstance(run, ObjectStore) else ObjectStore(run)


def write_reports(run: str | Path | ObjectStore) -> list[str]:
    """Build the reports the run's ``graph.yaml`` declares and write them under ``reports/``.

    ``run`` is the run's store root (a path, a URI, or an open :class:`ObjectStore`). Returns the
    store keys written (empty when the graph declares no reports). A run with no dialogue gets
    reports that say so; a store that cannot be written raises
    :class:`~interleaf.datasets.outputs.OutputError`. Dialogues that failed before
    finishing have no ``dialogues/<seed>.json`` and are not counted.
    """
    store = _open_store(run)
    raw = store.get_bytes_or_none(layout.GRAPH)
    if raw is None:
        raise InterleafError(f"{store.uri}: no {layout.GRAPH}; is this a run's store root?")
    spec, doc = load_graph_text(raw.decode("utf-8"), store.url(layout.GRAPH))
    if not spec.reports:
        return []
    check_reports(spec, doc, rubrics=False)
    dialogues = [DialogueState.model_validate(value) for _, value in store.iter_json(layout.DIALOGUE_PREFIX)]
    written: list[str] = []
    index = [f"# Reports: {spec.name}", "", f"{len(dialogues)} dialogues.", ""]
    outputs = build_reports(spec, dialogues)
    try:
        for output in outputs.values():
            for f in output.files:
                key = layout.report_key(f.name)
                store.put_bytes(key, f.data)
                written.append(key)
            index.append(output.markdown)
        key = layout.report_key("index.md")
        store.put_bytes(key, "\n".join(index).encode("utf-8"))
    except OSError as exc:
        if isinstance(exc, InterleafError):  # the store gave up retrying: its own message
            raise
        raise OutputError.from_os(store.url(layout.REPORTS_PREFIX), exc) from None
    written.append(key)
    return written

