"""A corpus of bad graph files: each stops ``interleaf run`` with exit code 2 and one paragraph naming
the file, line and field, before any model is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from interleaf.testing.simulator import Simulator
from tests.faults.cli import assert_located_error, invoke, run_many, subprocess_env
from tests.faults.corpus import BAD_GRAPHS, SIM_BASE_VAR, VALID_GRAPH, Case, good_seeds, load_cases

CASES = load_cases(BAD_GRAPHS)


def test_corpus_is_large_and_indexed() -> None:
    files = sorted(BAD_GRAPHS.glob("*.yaml"))
    files.remove(BAD_GRAPHS / "cases.yaml")
    assert len(CASES) >= 40
    assert sorted(c.path for c in CASES) == files, "every corpus file needs an entry in cases.yaml and vice versa"


def test_the_graph_the_corpus_edits_is_valid(sim_graph_env: Simulator) -> None:
    result = invoke(["validate", str(VALID_GRAPH)])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_run_refuses_bad_graph(case: Case, tmp_path: Path, sim_graph_env: Simulator) -> None:
    seeds = good_seeds(tmp_path / "seeds.jsonl")
    result = invoke(["run", str(case.path), "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--quiet"])
    assert_located_error(result, path=str(case.path), line=case.line, field=case.field, fragment=case.message)
    assert sim_graph_env.requests == 0


def _generated(tmp_path: Path) -> list[tuple[Path, int | None, str]]:
    """Bad graphs too big or too binary to keep as files: (path, line, message fragment)."""
    valid = VALID_GRAPH.read_bytes()
    cases: dict[str, tuple[bytes, int | None, str]] = {
        "binary_junk.yaml": (bytes((i * 97 + 13) % 256 for i in range(4096)), None, "binary data"),
        "utf16.yaml": (valid.decode().encode("utf-16"), 1, "UTF-16"),
        "latin1.yaml": (valid.replace(b"name: faults-base", "name: caf\u00e9".encode("latin-1")), 1,
                        "not valid UTF-8"),
        "huge_file.yaml": (valid + b"# " + b"x" * (2 << 20) + b"\n", None, "too large"),
        "deep_nesting.yaml": (valid + b"extra: " + b"[" * 100 + b"]" * 100 + b"\n", 83, "nested more than"),
    }
    out = []
    for name, (data, line, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        out.append((path, line, fragment))
    return out


def test_run_refuses_generated_bad_graphs(tmp_path: Path, sim_graph_env: Simulator) -> None:
    seeds = good_seeds(tmp_path / "seeds.jsonl")
    for path, line, fragment in _generated(tmp_path):
        result = invoke(["run", str(path), "--seeds", str(seeds), "--out", str(tmp_path / f"out-{path.stem}")])
        assert_located_error(result, path=str(path), line=line, field=None, fragment=fragment)
    assert sim_graph_env.requests == 0


@pytest.mark.slow
def test_real_command_exits_2_without_traceback(tmp_path: Path, sim: Simulator) -> None:
    picked = [c for c in CASES if c.id in {"api_key_env_var_unset", "yaml_tab_indent", "node_unknown_rubric"}]
    seeds = good_seeds(tmp_path / "seeds.jsonl")
    env = subprocess_env({SIM_BASE_VAR: sim.base_url})
    env.pop("FAULTS_UNSET_API_KEY", None)
    commands = [["run", str(c.path), "--seeds", str(seeds), "--out", str(tmp_path / c.id), "--quiet"] for c in picked]
    commands.append(["validate", str(BAD_GRAPHS / "edge_unknown_target.yaml")])
    results = run_many(commands, env)
    for case, result in zip(picked, results, strict=False):
        assert_located_error(result, path=str(case.path), line=case.line, field=case.field, fragment=case.message)
    assert_located_error(results[-1], path=str(BAD_GRAPHS / "edge_unknown_target.yaml"), line=78,
                         field="edges.3.to", fragment="unknown node 'chek'")
    assert sim.requests == 0
