"""The ``interleaf`` command's basics: lazy imports, validate, graphs list/show, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from interleaf.cli import app
from interleaf.graphs.loading import builtin_graphs

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "litellm", "prefect", "diffusers", "transformers")

_PROBE = """
import json, sys
import pytest
from typer.testing import CliRunner
from interleaf.cli import app
result = CliRunner().invoke(app, ARGS)
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"code": result.exit_code, "output": result.output, "heavy": heavy}))
"""


def _probe(args: list[str]) -> dict[str, object]:
    code = _PROBE.replace("ARGS", json.dumps(args)).replace("HEAVY", repr(HEAVY))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_help_imports_no_heavy_library() -> None:
    out = _probe(["--help"])
    assert out["code"] == 0
    assert out["heavy"] == []
    for command in ("validate", "run", "export", "view", "graphs"):
        assert command in str(out["output"])


def test_validate_imports_no_model_or_image_library() -> None:
    out = _probe(["validate", "intermt"])
    assert out["code"] == 0, out["output"]
    assert out["heavy"] == []


def test_python_dash_m_interleaf_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "interleaf", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout and "validate" in proc.stdout


def test_validate_ok_names_the_graph(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: ok\nnodes:\n  greet: {kind: 'tests.graphs.kinds:Echo'}\n"
        "edges:\n  - {from: START, to: greet}\n  - {from: greet, to: END}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"ok: {path}: graph 'ok', 1 nodes, 2 edges"


def test_graphs_list_and_show() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["graphs", "list"])
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.strip().splitlines()]
    assert names == list(builtin_graphs())
    shown = runner.invoke(app, ["graphs", "show", "intermt"])
    assert shown.exit_code == 0
    assert shown.output == builtin_graphs()["intermt"].read_text(encoding="utf-8")
    missing = runner.invoke(app, ["graphs", "show", "nope"])
    assert missing.exit_code == 2 and "no built-in graph 'nope'" in missing.output


def test_usage_errors_exit_2() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    assert runner.invoke(app, ["validate"]).exit_code == 2


def test_console_script_never_imports_from_the_working_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "interleaf"
    assert script.exists()
    path = tmp_path / "local.yaml"
    path.write_text(
        "name: local\nnodes:\n  greet: {kind: 'tests.graphs.kinds:Shout'}\n"
        "edges:\n  - {from: START, to: greet}\n  - {from: greet, to: END}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Run from the checkout, `tests` sits in the working directory: it is not installed, so refused.
    refused = subprocess.run([str(script), "validate", str(path)], capture_output=True, text=True, cwd=REPO,
                             timeout=60, env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith(f"error: {path}:3:") and "installed" in refused.stderr
    # Named on PYTHONPATH it is a deliberate choice, and it resolves.
    ok = subprocess.run([str(script), "validate", str(path)], capture_output=True, text=True, cwd=tmp_path,
                        timeout=60, env={**env, "PYTHONPATH": str(REPO)})
    assert ok.returncode == 0, ok.stderr


ANSWERING = """\
name: answering
nodes:
  plan: {kind: 'tests.graphs.kinds:MakeTasks', params: {n: 2}}
  answer: {kind: 'tests.graphs.kinds:AnswerTask', params: {label: a}}
edges:
  - {from: START, to: plan}
  - {from: plan, fan_out: tasks, to: answer}
  - {from: answer, to: END}
"""

#: Records only, no tree node: no seed ever has a complete dialogue.
RECORDS_ONLY = """\
name: records-only
nodes:
  greet: {kind: 'tests.graphs.kinds:Echo'}
edges:
  - {from: START, to: greet}
  - {from: greet, to: END}
"""


def _seeds(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"prompt {i}"}) + "\n" for i in range(n)),
                    encoding="utf-8")
    return path


def _run(tmp_path: Path, graph_text: str, name: str) -> tuple[Path, Result]:
    graph = tmp_path / f"{name}.yaml"
    graph.write_text(graph_text, encoding="utf-8")
    out = tmp_path / name
    result = CliRunner().invoke(app, ["run", str(graph), "--seeds", str(_seeds(tmp_path / "seeds.jsonl", 2)),
                                      "--out", str(out), "--quiet", "--no-preflight"])
    return out, result


def _status(out: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["status", str(out), "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_help_lists_the_run_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "status", "check", "export", "view", "demo"):
        assert command in result.output
    run_help = CliRunner().invoke(app, ["run", "--help"])
    assert "Exit codes" in run_help.output and "130" in run_help.output


def test_run_exits_0_when_every_seed_is_done_and_status_agrees(tmp_path: Path) -> None:
    out, result = _run(tmp_path, ANSWERING, "ok")
    assert result.exit_code == 0, result.output
    assert "finished" in result.stdout and "2 done, 0 failed" in result.stdout
    code, status = _status(out)
    assert code == 0
    assert {k: status[k] for k in ("graph", "seeds", "done", "failed", "pending", "invocations")} == {
        "graph": "answering", "seeds": 2, "done": 2, "failed": 0, "pending": 0, "invocations": 1}
    assert status["last_invocation"]["outcome"] == "finished"
    assert status["writer"] is None and status["failed_seeds"] == []  # the lock was released
    # No model was called, and the totals say so (no cost, not an unknown one).
    assert (status["calls"], status["unpriced_calls"], status["cost"]) == (0, 0, None)


def test_run_exits_1_when_seeds_fail_and_status_names_why(tmp_path: Path) -> None:
    out, result = _run(tmp_path, RECORDS_ONLY, "failing")
    assert result.exit_code == 1, result.output
    assert "finished with failed seeds" in result.stdout
    code, status = _status(out)
    assert code == 1
    assert (status["seeds"], status["done"], status["failed"]) == (2, 0, 2)
    assert status["failed_reasons"] == {"no_complete_dialogue": 2}
    failed = status["failed_seeds"]
    assert [f["seed_id"] for f in failed] == ["s0", "s1"]
    assert all("no complete dialogue" in f["error"] for f in failed)
    text = CliRunner().invoke(app, ["status", str(out)])
    assert text.exit_code == 1 and "no_complete_dialogue" in text.output


def test_status_reads_records_only_and_imports_no_heavy_library(tmp_path: Path) -> None:
    out, result = _run(tmp_path, ANSWERING, "light")
    assert result.exit_code == 0, result.output
    probe = _probe(["status", str(out), "--json"])
    assert probe["code"] == 0, probe["output"]
    assert probe["heavy"] == []


def test_status_of_no_run_exits_2(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["status", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "error:" in missing.output
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(app, ["status", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "not a run" in empty.output


def test_check_passes_a_graph_without_models_and_names_an_unset_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(ANSWERING, encoding="utf-8")
    passed = CliRunner().invoke(app, ["check", str(ok), "--no-probe"])
    assert passed.exit_code == 0, passed.output
    monkeypatch.delenv("CLI_BASICS_UNSET_KEY", raising=False)
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(
        ANSWERING.replace("name: answering\n", "name: keyed\nmodels:\n"
                          "  m: {model: openai/x, api_key: '${CLI_BASICS_UNSET_KEY}'}\n")
        .replace("  - {from: answer, to: END}\n",
                 "  - {from: answer, to: ask}\n  - {from: ask, to: END}\n")
        .replace("edges:\n", "  ask: {kind: follow_up, model: m}\nedges:\n"),
        encoding="utf-8",
    )
    refused = CliRunner().invoke(app, ["check", str(keyed), "--no-probe"])
    assert refused.exit_code == 2, refused.output
    assert "CLI_BASICS_UNSET_KEY" in refused.output and "'m'" in refused.output
