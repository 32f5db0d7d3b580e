"""Bad input: each a clear message, exit code 2, and nothing in the run changed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.annotate.conftest import cli, project_tasks, run_id, snapshot
from tests.fixtures.label_studio import Annotator, LabelStudioServer, choice


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-token")
    before = snapshot(run_dir)
    url = f"http://127.0.0.1:{_closed_port()}"
    for command in ("push", "pull"):
        result = cli(command, str(run_dir), "--url", url)
        assert result.exit_code == 2, result.output
        assert f"cannot reach Label Studio at {url}" in result.output
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    result = cli("push", str(run_dir))
    assert result.exit_code == 2 and "pass --url or set LABEL_STUDIO_URL" in result.output
    assert snapshot(run_dir) == before


def test_wrong_or_missing_token(
    run_dir: Path, label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(run_dir)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token-0123")
    for command in ("push", "pull"):
        result = cli(command, str(run_dir), "--url", label_studio.url)
        assert result.exit_code == 2, result.output
        assert "refused the token in LABEL_STUDIO_API_KEY" in result.output
        assert "not-the-token-0123" not in result.output  # never echoed
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    result = cli("pull", str(run_dir), "--url", label_studio.url)
    assert result.exit_code == 2 and "set LABEL_STUDIO_API_KEY" in result.output
    assert snapshot(run_dir) == before


def test_hand_edited_labeling_config(
    run_dir: Path, ls: LabelStudioServer, annotators: tuple[Annotator, Annotator]
) -> None:
    assert cli("push", str(run_dir)).exit_code == 0
    project, tasks = project_tasks(ls, f"{run_id(run_dir)} turns")
    annotators[0].annotate(tasks[("house", "v0.1")]["id"], [choice("text_quality", "dialogue", "2")])
    edited = project["label_config"].replace('<Choice value="0 - Wrong', '<Choice value="0 - Off topic or wrong')
    assert edited != project["label_config"]
    with ls.api() as http:
        http.patch(f"/api/projects/{project['id']}/", json={"label_config": edited}).raise_for_status()
    before = snapshot(run_dir)
    for command in ("pull", "push"):
        result = cli(command, str(run_dir))
        assert result.exit_code == 2, result.output
        assert "labeling interface that is not the one interleaf generates" in result.output
        assert project["title"] in result.output
    assert snapshot(run_dir) == before


def test_annotations_on_items_the_run_no_longer_has(
    run_dir: Path, ls: LabelStudioServer, annotators: tuple[Annotator, Annotator]
) -> None:
    assert cli("push", str(run_dir)).exit_code == 0
    _, tasks = project_tasks(ls, f"{run_id(run_dir)} turns")
    house = json.loads((run_dir / "dialogues" / "house.json").read_text())
    gone = sorted(k for k in house["nodes"] if k.count(".") == 2)[-1]  # a second-turn answer
    a = annotators[0]
    a.annotate(tasks[("house", gone)]["id"], [choice("text_quality", "dialogue", "1")])
    a.annotate(tasks[("flower", "v0.1")]["id"], [choice("text_quality", "dialogue", "2")])
    a.annotate(tasks[("flower", "v0.0")]["id"], [choice("text_quality", "dialogue", "3")])
    # The run changed under the project: one node is gone, another's answer was rewritten.
    for seed, edit in (("house", "drop"), ("flower", "rewrite")):
        path = run_dir / "dialogues" / f"{seed}.json"
        state = json.loads(path.read_text())
        if edit == "drop":
            del state["nodes"][gone]
        else:
            state["nodes"]["v0.1"]["assistant"]["parts"][0]["text"] = "A different answer."
        path.write_text(json.dumps(state))
    before = snapshot(run_dir)
    result = cli("pull", str(run_dir))
    assert result.exit_code == 2, result.output
    assert "2 annotated task(s) refer to items the run no longer has" in result.output
    assert f"node '{gone}' of seed 'house' is not in the run" in result.output
    assert "flower/v0.1 changed since it was pushed" in result.output
    assert snapshot(run_dir) == before  # flower/v0.0's good annotation was not written either


def test_annotation_value_off_the_scale(run_dir: Path, ls: LabelStudioServer,
                                        annotators: tuple[Annotator, Annotator]) -> None:
    assert cli("push", str(run_dir)).exit_code == 0
    _, tasks = project_tasks(ls, f"{run_id(run_dir)} turns")
    annotators[1].annotate(tasks[("house", "v0.0")]["id"], [choice("text_quality", "dialogue", "7")])
    before = snapshot(run_dir)
    result = cli("pull", str(run_dir))
    assert result.exit_code == 2, result.output
    assert "'text_quality' = '7' is not on the scale of text_quality (0..3)" in result.output
    assert snapshot(run_dir) == before


def test_not_a_run_and_no_projects(tmp_path: Path, run_dir: Path, ls: LabelStudioServer) -> None:
    result = cli("push", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "no such run directory" in result.output
    result = cli("pull", str(run_dir))
    assert result.exit_code == 2 and "has no project of run" in result.output
    result = cli("push", str(run_dir), "--project", "x" * 60)
    assert result.exit_code == 2 and "3-50 characters" in result.output
