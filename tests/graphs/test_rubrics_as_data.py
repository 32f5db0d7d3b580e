"""The built-in mirage and SafeSora graphs and rubrics are data only, and a misspelt dimension in a
user rubric is reported with the file and line on both sides (graph reference and rubric file)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import interleaf
from interleaf.datasets.reports import report_kinds
from interleaf.errors import SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import builtin_graphs, load_graph
from interleaf.graphs.rubric import builtin_rubrics, load_rubric
from interleaf.nodes.registry import node_kinds

DATA_ONLY_GRAPHS = ("mirage-probe", "safesora-judge", "safesora-judge-import")
DATA_ONLY_RUBRICS = ("mirage-fabrication", "safesora", "intermt-local", "intermt-global")
PACKAGE = Path(interleaf.__file__).parent


def test_builtin_graphs_and_rubrics_are_yaml_only() -> None:
    assert set(DATA_ONLY_GRAPHS) <= set(builtin_graphs()) and set(DATA_ONLY_RUBRICS) <= set(builtin_rubrics())
    # No Python module anywhere in the package is named after, or mentions, these graphs.
    for py in PACKAGE.rglob("*.py"):
        text = py.read_text(encoding="utf-8").lower()
        for word in ("mirage", "safesora"):
            assert word not in py.name.lower() and word not in text, f"{py} is specific to {word}"
    for name in DATA_ONLY_GRAPHS:
        spec, doc = load_graph(name)
        compile_graph(spec, doc)
        for node_name, node in spec.nodes.items():
            # Registered built-in kinds only: no 'module:attr' import of graph-specific code.
            assert ":" not in node.kind, (name, node_name)
            module = inspect.getmodule(node_kinds.get(node.kind))
            assert module is not None and module.__name__.startswith("interleaf.nodes."), (name, node_name)
        for report in spec.reports.values():
            assert ":" not in report.kind
            assert inspect.getmodule(report_kinds.get(report.kind)).__name__ == "interleaf.datasets.reports"  # type: ignore[union-attr]


RUBRIC = """\
name: my-honesty
instructions: Judge the answer.
dimensions:
  - name: grounding
    level: turn
    description: Claims are supported.
  - name: fabricaton
    level: turn
    description: Invents details.
    scale: {low: 0, high: 2}
"""

GRAPH = """\
name: typo-test
models:
  judge: {{model: openai/judge}}
  assistant: {{model: openai/assistant}}
nodes:
  expand: {{kind: prompt_expansion}}
  plan: {{kind: turn_planner}}
  answer: {{kind: assistant_turn, models: [assistant]}}
  judge:
    kind: consistency_check
    model: judge
    params:
      rubric: my-honesty.yaml
      dimensions: [grounding, {dimension}]
edges:
  - {{from: START, to: expand}}
  - {{from: expand, to: plan}}
  - {{from: plan, fan_out: tasks, to: answer}}
  - {{from: answer, to: judge}}
  - {{from: judge, to: END}}
reports:
  fab:
    kind: score_table
    params: {{metric: {metric}, rubric: my-honesty.yaml, rows: level}}
"""


def test_misspelt_dimension_in_a_user_rubric_names_files_and_lines(tmp_path: Path) -> None:
    rubric_path = tmp_path / "my-honesty.yaml"
    rubric_path.write_text(RUBRIC, encoding="utf-8")
    graph = tmp_path / "graph.yaml"

    # The rubric file spells the dimension 'fabricaton'; the graph asks for 'fabrication'.
    graph.write_text(GRAPH.format(dimension="fabrication", metric="grounding"), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(graph))
    assert str(err.value.location).startswith(f"{graph}:14:") and err.value.field == "nodes.judge.params.dimensions.1"
    assert f"rubric 'my-honesty' ({rubric_path}) has no turn-level dimension 'fabrication'" in err.value.message
    assert f"did you mean 'fabricaton', declared at {rubric_path}:7:5?" in err.value.message

    # The same typo reached through a report's metric.
    graph.write_text(GRAPH.format(dimension="grounding", metric="fabrication"), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(graph))
    assert err.value.location is not None and (err.value.location.path, err.value.location.line) == (str(graph), 24)
    assert f"declared at {rubric_path}:7:5?" in err.value.message

    # Once the rubric is fixed, the graph compiles.
    rubric_path.write_text(RUBRIC.replace("fabricaton", "fabrication"), encoding="utf-8")
    compile_graph(*load_graph(graph))
    graph.write_text(GRAPH.format(dimension="fabrication", metric="fabrication"), encoding="utf-8")
    compile_graph(*load_graph(graph))


@pytest.mark.parametrize(
    ("bad", "line", "message"),
    [
        ("  - name: Fabrication-Rate\n", 7, "must be lower_snake_case"),
        ("  - nmae: fabricaton\n", 7, "unknown field 'nmae' (did you mean 'name'?)"),
        ("  - name: grounding\n", 7, "'grounding' is listed twice"),
    ],
)
def test_bad_dimension_name_in_the_rubric_file_names_its_line(tmp_path: Path, bad: str, line: int,
                                                              message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(RUBRIC.replace("  - name: fabricaton\n", bad), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_rubric(path)
    assert err.value.location is not None and err.value.location.path == str(path)
    assert err.value.location.line == line, str(err.value)
    assert message in err.value.message
