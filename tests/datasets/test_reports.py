"""Run-level reports: `score_table` aggregation, files written into the run store, and checks
that put every report problem at its line of the graph file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from interleaf.datasets.reports import (
    SERIES_METADATA_KEY,
    ScoreTableParams,
    report_kinds,
    score_table,
    write_reports,
)
from interleaf.errors import InterleafError, SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph, load_graph_text
from interleaf.graphs.spec import graph_fingerprint
from interleaf.run.layout import GRAPH as GRAPH_KEY
from interleaf.run.layout import dialogue_key
from interleaf.state import DialogueState, Message, Score, Seed, TreeNode
from interleaf.storage.store import ObjectStore


def node(node_id: str, *, level: int | None, model: str | None, score: float | None,
         status: str = "alive", parent: str | None = None) -> TreeNode:
    tags: dict[str, object] = {}
    if level is not None:
        tags["level"] = level
    if model is not None:
        tags["model"] = model
    return TreeNode(id=node_id, parent=parent, turn=0 if parent is None else 1, user=Message.user("q"),
                    assistant=Message(role="assistant"), status=status,  # type: ignore[arg-type]
                    scores={"fab": Score(value=score)}, tags=tags)


def dialogues() -> list[DialogueState]:
    a = DialogueState(seed=Seed(id="a", prompt="p"), nodes={n.id: n for n in [
        node("v0.0", level=1, model="fast", score=0),
        node("v0.1", level=1, model="slow", score=2),
        node("v1.0", level=2, model="fast", score=1),
        node("v1.1", level=2, model="slow", score=2),
        node("v1.2", level=2, model="slow", score=None),            # unscored: left out
        node("v2.0", level=10, model="fast", score=0, status="failed"),  # failed: not counted by default
        node("v3.0", level=None, model="fast", score=1),             # no row key
    ]})
    b = DialogueState(seed=Seed(id="b", prompt="p"), nodes={n.id: n for n in [
        node("v0.0", level=1, model="fast", score=1),
        node("v0.1", level=1, model="slow", score=0),
        node("v1.0", level=2, model="fast", score=0, status="pruned"),
        node("v1.1", level=2, model="slow", score=1),
    ]}, dialogue_scores={"v1.1": {"fab": Score(value=3)}, "v0.0": {"fab": Score(value=1)}})
    return [a, b]


def test_rate_and_mean_by_row_and_column() -> None:
    rate = score_table(dialogues(), ScoreTableParams(metric="fab", aggregate="rate", threshold=1, rows="level"))
    assert rate.rows == [1, 2] and rate.columns == ["fast", "slow"]
    assert rate.values["fast"] == {1: 0.5, 2: 0.5} and rate.values["slow"] == {1: 0.5, 2: 1.0}
    assert rate.counts["slow"] == {1: 2, 2: 2}
    assert rate.left_out == {"unscored": 1, "no row key": 1}

    mean = score_table(dialogues(), ScoreTableParams(metric="fab", rows="level", columns=None,
                                                     statuses=["alive", "pruned", "failed"]))
    assert mean.columns == ["fab"] and mean.rows == [1, 2, 10]
    assert mean.values["fab"] == {1: pytest.approx(3 / 4), 2: pytest.approx(4 / 4), 10: 0.0}

    by_seed = score_table(dialogues(), ScoreTableParams(metric="fab", rows="seed", columns="status"))
    assert by_seed.values["pruned"] == {"b": 0.0} and by_seed.counts["alive"] == {"a": 5, "b": 3}

    whole = score_table(dialogues(), ScoreTableParams(metric="fab", source="dialogue", rows="model", columns=None))
    assert whole.values["fab"] == {"fast": 1.0, "slow": 3.0}


def test_figure_has_one_series_per_column() -> None:
    table = score_table(dialogues(), ScoreTableParams(metric="fab", rows="level"))
    fig = table.figure(title="t", y_label="y")
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["fast", "slow"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]
    assert list(ax.get_lines()[1].get_ydata()) == [1.0, 1.5]  # type: ignore[arg-type]
    bars = table.figure(title="t", y_label="y", kind="bar")
    assert [c.get_label() for c in bars.axes[0].containers] == ["fast", "slow"]


GRAPH = """\
name: report-test
nodes:
  expand: {kind: prompt_expansion}
edges:
  - {from: START, to: expand}
  - {from: expand, to: END}
reports:
  by_level:
    kind: score_table
    params:
      title: Fab by level
      metric: fab
      aggregate: rate
      threshold: 1
      rows: level
      plot: line
  plain_mean:
    kind: score_table
    params: {metric: fab, rows: level, columns: null}
"""


def write_run(root: Path, graph_text: str = GRAPH) -> ObjectStore:
    store = ObjectStore(root)
    store.put_bytes(GRAPH_KEY, graph_text.encode())
    for state in dialogues():
        store.put_json(dialogue_key(state.seed.id), state.model_dump(mode="json"))
    return store


def test_write_reports_into_the_run_store(tmp_path: Path) -> None:
    store = write_run(tmp_path / "run")
    written = write_reports(tmp_path / "run")
    assert sorted(written) == sorted([
        "reports/by_level.csv", "reports/by_level.json", "reports/by_level.md", "reports/by_level.png",
        "reports/plain_mean.csv", "reports/plain_mean.json", "reports/plain_mean.md", "reports/index.md"])
    rows = list(csv.reader(io.StringIO(store.get_bytes("reports/by_level.csv").decode())))
    assert rows[0] == ["level", "model", "fab_rate", "n"]
    assert ["2", "slow", "1.000000", "2"] in rows and len(rows) == 5
    md = store.get_bytes("reports/by_level.md").decode()
    assert "| 2 | 0.500 (n=2) | 1.000 (n=2) |" in md and "Left out: 1 no row key, 1 unscored." in md
    data = json.loads(store.get_bytes("reports/by_level.json"))
    assert data["series"] == ["fast", "slow"] and data["values"]["slow"] == {"1": 0.5, "2": 1.0}
    with Image.open(io.BytesIO(store.get_bytes("reports/by_level.png"))) as img:
        assert json.loads(img.info[SERIES_METADATA_KEY]) == ["fast", "slow"]
    assert "![Fab by level](by_level.png)" in store.get_bytes("reports/index.md").decode()
    # Rewriting is idempotent.
    assert write_reports(store) == written


def test_write_reports_edge_cases(tmp_path: Path) -> None:
    no_reports = GRAPH[: GRAPH.index("reports:")]
    write_run(tmp_path / "plain", no_reports)
    assert write_reports(tmp_path / "plain") == []
    with pytest.raises(InterleafError, match=r"no graph\.yaml"):
        write_reports(tmp_path / "nothing")
    # An empty run still writes its tables (with no rows) and no plot.
    store = ObjectStore(tmp_path / "empty")
    store.put_bytes(GRAPH_KEY, GRAPH.encode())
    written = write_reports(store)
    assert "reports/by_level.png" not in written and "(no scores)" in store.get_bytes("reports/by_level.md").decode()


def test_reports_stay_out_of_the_graph_fingerprint() -> None:
    with_reports, _ = load_graph_text(GRAPH)
    without, _ = load_graph_text(GRAPH[: GRAPH.index("reports:")])
    assert with_reports.reports and not without.reports
    assert graph_fingerprint(with_reports) == graph_fingerprint(without)


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (("    kind: score_table\n    params:\n      title", "    kind: score_tabel\n    params:\n      title"), 9,
         "unknown report kind 'score_tabel'"),
        (("      threshold: 1\n", ""), 13, "needs a 'threshold'"),
        (("      rows: level\n      plot", "      rows: level\n      plots"), 16, "unknown field 'plots'"),
        (("      plot: line\n", "      plot: pie\n"), 16, "'line'"),
        (("      metric: fab\n", "      metric: fab\n      rubric: nope.yaml\n"), 13, "does not exist"),
    ],
)
def test_report_problems_name_the_graph_line(tmp_path: Path, edit: tuple[str, str], line: int, message: str) -> None:
    assert edit[0] in GRAPH
    path = tmp_path / "g.yaml"
    path.write_text(GRAPH.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(path))
    assert err.value.location is not None and err.value.location.path == str(path)
    assert err.value.location.line == line, str(err.value)
    assert message in err.value.message


def test_report_metric_is_checked_against_its_rubric(tmp_path: Path) -> None:
    text = GRAPH.replace("      metric: fab\n", "      metric: fabricaton\n      rubric: mirage-fabrication\n")
    path = tmp_path / "g.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(path))
    assert err.value.location is not None and err.value.location.line == 12
    assert err.value.field == "reports.by_level.params.metric"
    assert "did you mean 'fabrication', declared at " in err.value.message
    assert "mirage-fabrication.yaml:" in err.value.message

    good = GRAPH.replace("      metric: fab\n", "      metric: fabrication\n      rubric: mirage-fabrication\n")
    path.write_text(good.replace("threshold: 1", "threshold: 5"), encoding="utf-8")
    with pytest.raises(SpecError, match=r"outside 'fabrication'.s scale 0\.\.2"):
        compile_graph(*load_graph(path))
    assert "score_table" in report_kinds.names()
