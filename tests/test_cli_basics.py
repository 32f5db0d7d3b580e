"""The ``interleaf`` command's basics: lazy imports, validate, graphs list/show, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from interleaf.cli import app
from interleaf.graphs.compiler import builtin_graphs

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "litellm", "prefect", "diffusers", "transformers")

_PROBE = """
import json, sys
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


def test_console_script_resolves_import_paths_from_the_working_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "interleaf"
    assert script.exists()
    path = tmp_path / "local.yaml"
    path.write_text(
        "name: local\nnodes:\n  greet: {kind: 'tests.graphs.kinds:Shout'}\n"
        "edges:\n  - {from: START, to: greet}\n  - {from: greet, to: END}\n",
        encoding="utf-8",
    )
    ok = subprocess.run([str(script), "validate", str(path)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ok.returncode == 0, ok.stderr
    elsewhere = subprocess.run([str(script), "validate", str(path)], capture_output=True, text=True,
                               cwd=tmp_path, timeout=60)
    assert elsewhere.returncode == 2
    assert elsewhere.stderr.startswith(f"error: {path}:3:") and "No module named 'tests'" in elsewhere.stderr
