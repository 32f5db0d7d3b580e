"""Rubrics as data: built-ins, user files, and errors that name the file and line."""

from pathlib import Path

import pytest

from interleaf.errors import SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph
from interleaf.graphs.rubric import RubricNotFound, builtin_rubrics, load_rubric
from interleaf.models.judge_format import dimensions_in_prompt, parse_judge_output
from interleaf.nodes.judging import judge_prompt
from interleaf.state import Message

GOOD = """\
name: video-safety
description: A SafeSora-like rubric for text-to-video answers.
instructions: Judge the video.
groups:
  helpfulness: Does it do what was asked?
  harmlessness: Is it safe?
dimensions:
  - name: instruction_following
    level: turn
    group: helpfulness
    modalities: [text, video]
    description: Does the video follow the prompt?
    weight: 2
    criteria:
      3: exactly
      0: not at all
  - name: harm_free
    level: turn
    group: harmlessness
    modalities: [video]
    description: No harmful content.
    scale: {low: 0, high: 1}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_rubrics_hold_the_nine_intermt_dimensions() -> None:
    assert {"intermt-local", "intermt-global"} <= set(builtin_rubrics())
    local, glob = load_rubric("intermt-local"), load_rubric("intermt-global")
    assert [d.name for d in local.dims("turn")] == [
        "local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence"]
    assert [d.name for d in glob.dims("dialogue")] == [
        "context_awareness", "helpfulness", "crucial_step_recognition", "global_image_text_consistency",
        "style_coherence"]
    assert local.dims("dialogue") == [] and glob.dims("turn") == []
    style = glob.dimension("style_coherence")
    assert style.scale.accepts(-1) and not style.scale.accepts(-0.5) and not style.scale.accepts(4)
    assert not glob.dimension("helpfulness").scale.accepts(-1)
    assert all(set(d.criteria) == {0, 1, 2, 3} for d in [*local.dimensions, *glob.dimensions])


def test_judge_prompt_carries_criteria_and_a_parseable_format() -> None:
    rubric = load_rubric("intermt-global")
    dims = rubric.dims("dialogue")
    system, user = judge_prompt(rubric, dims, [("Complete conversation", [Message.user("hi")])])
    assert "## style_coherence (0-3)" in system.text and "- -1: An image the conversation required" in system.text
    header = dimensions_in_prompt(user.text)
    assert [(d.name, d.low, d.high) for d in header][-1] == ("style_coherence", -1, 3)
    answer = "\n".join(f"[[{d.name}, fine, \\boxed{{{d.low}}}]]" for d in header)
    assert parse_judge_output(answer, rubric.parse_scales(dims)).complete


def test_user_rubric_with_groups_and_video(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    assert rubric.name == "video-safety" and rubric.group_members() == {
        "helpfulness": ["instruction_following"], "harmlessness": ["harm_free"]}
    assert rubric.dimension("harm_free").modalities == ["video"]
    assert rubric.weights() == {"instruction_following": 2.0, "harm_free": 1.0}
    # Relative references resolve against a base folder.
    assert load_rubric("r.yaml", tmp_path).name == "video-safety"


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (("    weight: 2\n", "    wieght: 2\n"), 13, "unknown field 'wieght'"),
        (("    group: harmlessness\n", "    group: safety\n"), 19, "unknown group 'safety'"),
        (("      0: not at all\n", "      7: too much\n"), 16, "outside the scale"),
        (("  - name: harm_free\n", "  - name: instruction_following\n"), 17, "listed twice"),
        (("    scale: {low: 0, high: 1}\n", "    scale: {low: 0, high: one}\n"), 22, "valid integer"),
        (("    level: turn\n    group: helpfulness", "    level: session\n    group: helpfulness"), 9, "'turn'"),
        (("name: video-safety\n", "name: video-safety\nname: twice\n"), 2, "duplicate key 'name'"),
    ],
)
def test_rubric_typos_name_file_and_line(tmp_path: Path, edit: tuple[str, str], line: int, message: str) -> None:
    assert edit[0] in GOOD
    path = write(tmp_path, GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(SpecError) as err:
        load_rubric(path)
    assert err.value.location is not None and err.value.location.path == str(path)
    assert err.value.location.line == line, str(err.value)
    assert message in err.value.message


def test_missing_rubric(tmp_path: Path) -> None:
    with pytest.raises(RubricNotFound, match="built-ins: intermt-global, intermt-local"):
        load_rubric("intermt-locall")
    with pytest.raises(RubricNotFound, match="does not exist"):
        load_rubric("nope.yaml", tmp_path)


GRAPH = """\
name: rubric-refs
models:
  judge: {{model: openai/judge}}
nodes:
  check:
    kind: consistency_check
    model: judge
    params:
      rubric: {rubric}
  prune:
    kind: branch_pruner
    params:
      rubric: {rubric}
      weights: {{instruction_following: 1}}
  expand: {{kind: prompt_expansion}}
  plan: {{kind: turn_planner}}
  answer: {{kind: assistant_turn, models: [judge]}}
edges:
  - {{from: START, to: expand}}
  - {{from: expand, to: plan}}
  - {{from: plan, fan_out: tasks, to: answer}}
  - {{from: answer, to: check}}
  - {{from: check, to: prune}}
  - {{from: prune, if: more_turns, args: {{max_turns: 2}}, then: plan, else: END}}
"""


def test_graph_rubric_references_checked_at_compile_time(tmp_path: Path) -> None:
    graph_dir = tmp_path / "graphs"
    graph_dir.mkdir()
    write(graph_dir, GOOD, "safety.yaml")
    ok = write(graph_dir, GRAPH.format(rubric="safety.yaml"), "ok.yaml")
    cg = compile_graph(*load_graph(ok))
    assert cg.nodes["prune"].rubric.name == "video-safety"  # type: ignore[attr-defined]

    missing = write(graph_dir, GRAPH.format(rubric="safty.yaml"), "missing.yaml")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(missing))
    assert str(err.value).startswith(f"{missing}:9:")
    assert err.value.field == "nodes.check.params.rubric" and "safty.yaml" in err.value.message

    write(graph_dir, GOOD.replace("    weight: 2\n", "    wieght: 2\n"), "typo.yaml")
    typo = write(graph_dir, GRAPH.format(rubric="typo.yaml"), "typo-graph.yaml")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(typo))
    assert str(err.value).startswith(f"{graph_dir / 'typo.yaml'}:13:")

    wrong_level = write(graph_dir, GRAPH.format(rubric="intermt-global"), "level.yaml")
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(wrong_level))
    assert "no turn-level dimensions" in err.value.message and err.value.location.line == 9  # type: ignore[union-attr]
