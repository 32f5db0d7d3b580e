"""Bad graphs: every one is a ``SpecError`` naming the file, line and problem, never a raw exception.

Each file in ``invalid/`` starts with ``# error: <text the message must contain>`` and optionally
``# field: <dotted field>``; the line the error must point at ends with ``# <-``. Inputs that
cannot be written as text files (binary junk, other encodings, alias bombs) are built here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from interleaf.cli import app
from interleaf.errors import SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import builtin_graphs, load_graph, load_graph_text

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))
REPO = Path(__file__).resolve().parents[2]


class Expectation:
    def __init__(self, path: Path):
        text = path.read_text(encoding="utf-8")
        error = re.search(r"^# error: (.*)$", text, re.M)
        assert error is not None, f"{path.name} lacks an '# error:' header"
        self.message = error.group(1)
        field = re.search(r"^# field: (.*)$", text, re.M)
        self.field = field.group(1) if field else None
        marked = [i + 1 for i, line in enumerate(text.splitlines()) if line.rstrip().endswith("# <-")]
        self.line = marked[0] if marked else 1


def _error_for(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_graph(*load_graph(path))
    return info.value


def test_there_are_many_distinct_invalid_graphs() -> None:
    assert len(CASES) >= 40
    assert len({Expectation(p).message for p in CASES}) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_graph_error_names_file_line_and_problem(path: Path) -> None:
    expected = Expectation(path)
    err = _error_for(path)
    assert err.location is not None and err.location.path == str(path)
    assert err.location.line == expected.line, str(err)
    assert expected.message in err.message, str(err)
    if expected.field is not None:
        assert err.field == expected.field, str(err)
    rendered = str(err)
    assert rendered.startswith(f"{path}:{expected.line}:")
    assert "\n" not in rendered


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_cli_validate_reports_invalid_graph_with_exit_2(path: Path) -> None:
    expected = Expectation(path)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = result.stderr if result.stderr else result.output
    first = out.strip().splitlines()[0]
    field = rf" \[{re.escape(expected.field)}\]" if expected.field else r"( \[[^\]]+\])?"
    assert re.match(rf"^error: {re.escape(str(path))}:{expected.line}:\d+{field}: ", first), first
    assert expected.message in out
    assert "Traceback" not in out


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


GOOD = b"name: g\nnodes:\n  greet: {kind: 'tests.graphs.kinds:Echo'}\nedges:\n  - {from: START, to: greet}\n" \
       b"  - {from: greet, to: END}\n"


@pytest.mark.parametrize(
    ("name", "data", "message", "line"),
    [
        ("junk.yaml", bytes(range(256)) * 4, "binary data", 1),
        ("nul.yaml", GOOD.replace(b"nodes:", b"nodes:\x00"), "binary data", 2),
        ("latin1.yaml", GOOD.replace(b"name: g", "name: caf\u00e9".encode("latin-1")), "not valid UTF-8", 1),
        ("utf16.yaml", GOOD.decode().encode("utf-16"), "UTF-16", 1),
        ("control.yaml", GOOD.replace(b"name: g", b"name: g\x07"), "control character U+0007", 1),
        ("deep.yaml", b"name: " + b"[" * 1200 + b"]" * 1200 + b"\n", "nested", None),
        ("wide_nesting.yaml", b"name: g\nx: " + b"[" * 60 + b"]" * 60 + b"\n", "nested more than", 2),
    ],
)
def test_bytes_that_are_not_yaml_text(tmp_path: Path, name: str, data: bytes, message: str,
                                      line: int | None) -> None:
    path = _write(tmp_path, name, data)
    err = _error_for(path)
    assert message in err.message
    assert err.location is not None and err.location.path == str(path)
    if line is not None:
        assert err.location.line == line


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = _write(tmp_path, "bomb.yaml", ("\n".join(lines) + "\n").encode())
    err = _error_for(path)
    assert "more than" in err.message and "aliases" in err.message


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    body = GOOD + b"description: '" + b"x" * (2 << 20) + b"'\n"
    err = _error_for(_write(tmp_path, "huge.yaml", body))
    assert "too large" in err.message


def test_aliases_and_merge_keys_are_plain_data(tmp_path: Path) -> None:
    text = (
        "name: anchors\n"
        "x-base: &base {kind: 'tests.graphs.kinds:Echo', params: {label: shared}}\n"
        "nodes:\n"
        "  one: *base\n"
        "  two:\n"
        "    <<: *base\n"
        "    params: {label: own}\n"
        "edges: []\n"
    )
    err = _error_for(_write(tmp_path, "anchors.yaml", text.encode()))
    # The merged graph itself is fine up to the unknown top-level key, which is reported at its line.
    assert err.location is not None and err.location.line == 2
    assert "unknown field 'x-base'" in err.message


def test_missing_file_and_unknown_graph_name() -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["validate", "/no/such/dir/graph.yaml"])
    assert missing.exit_code == 2
    assert missing.output.startswith("error: /no/such/dir/graph.yaml: cannot read file")
    unknown = runner.invoke(app, ["validate", "no-such-graph"])
    assert unknown.exit_code == 2
    assert "no graph file or built-in graph named 'no-such-graph'" in unknown.output
    assert "intermt" in unknown.output


def test_validate_as_a_real_process(tmp_path: Path) -> None:
    bad = INVALID / "edge_to_unknown_node.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "interleaf", "validate", str(bad)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        # The test node kinds live in the checkout: named on PYTHONPATH, they are trusted.
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert re.match(rf"^error: {re.escape(str(bad))}:7:\d+ \[edges\.0\.to\]: edge to unknown node 'gret'", proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


_BUILTIN_TEXTS = [p.read_text(encoding="utf-8") for p in builtin_graphs().values()]
_SNIPPETS = [":", "{", "}", "[", "]", "- ", ",", "&a ", "*a", "!!str ", "!x ", "${", "\n", "\t", "  ", "#", "'", '"',
             "<<: *a\n", "kind: x", "if: more_turns", "fan_out: prompts", "null", "END", "START", "\x07"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(_BUILTIN_TEXTS),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 25), st.sampled_from(_SNIPPETS)),
        min_size=1, max_size=4,
    ),
)
def test_mangled_builtin_graphs_fail_only_with_located_spec_errors(
    base: str, edits: list[tuple[float, int, str]]
) -> None:
    text = base
    for where, cut, snippet in edits:
        pos = int(where * len(text))
        text = text[:pos] + snippet + text[pos + cut:]
    try:
        compile_graph(*load_graph_text(text, "mangled.yaml")).build()
    except SpecError as err:
        assert err.location is not None and err.location.path == "mangled.yaml"
        assert err.location.line is not None and "\n" not in err.message
