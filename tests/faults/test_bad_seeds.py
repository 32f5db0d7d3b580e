"""A corpus of bad seed files: each stops ``interleaf run`` (valid graph, models on the simulator) with
exit code 2 and one paragraph naming the file, line and field, before any model is called."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interleaf.testing.simulator import Simulator
from tests.faults.cli import assert_located_error, invoke, run_many, subprocess_env
from tests.faults.corpus import BAD_SEEDS, SIM_BASE_VAR, VALID_GRAPH, Case, load_cases

CASES = load_cases(BAD_SEEDS)


def _run(seeds: Path, out: Path) -> list[str]:
    return ["run", str(VALID_GRAPH), "--seeds", str(seeds), "--out", str(out), "--quiet"]


def test_corpus_is_large_and_indexed() -> None:
    files = sorted(p for p in BAD_SEEDS.iterdir() if p.name != "cases.yaml")
    assert len(CASES) >= 20
    assert sorted(c.path for c in CASES) == files, "every corpus file needs an entry in cases.yaml and vice versa"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_run_refuses_bad_seeds(case: Case, tmp_path: Path, sim_graph_env: Simulator) -> None:
    result = invoke(_run(case.path, tmp_path / "out"))
    assert_located_error(result, path=str(case.path), line=case.line, field=case.field, fragment=case.message)
    assert sim_graph_env.requests == 0
    # Refused before the run was opened: nothing was written.
    assert not (tmp_path / "out").exists()


def _write_huge_prompt(path: Path, megabytes: int = 50) -> Path:
    """Two good lines, then one line whose prompt is ``megabytes`` MB (written in chunks)."""
    with path.open("wb") as fh:
        for i in range(2):
            fh.write(json.dumps({"id": f"ok{i}", "prompt": "a small prompt"}).encode() + b"\n")
        fh.write(b'{"id": "huge", "prompt": "')
        chunk = b"lorem ipsum " * 87_382  # ~1 MiB
        for _ in range(megabytes):
            fh.write(chunk)
        fh.write(b'"}\n')
    return path


def _write_parquet(path: Path, columns: dict[str, list[object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.slow
def test_huge_prompt_line_is_refused_with_its_line(tmp_path: Path, sim_graph_env: Simulator) -> None:
    seeds = _write_huge_prompt(tmp_path / "huge.jsonl")
    result = invoke(_run(seeds, tmp_path / "out"))
    assert_located_error(result, path=str(seeds), line=3, field=None, fragment="longer than")
    assert sim_graph_env.requests == 0


def test_json_nesting_bomb_is_refused(tmp_path: Path, sim_graph_env: Simulator) -> None:
    seeds = tmp_path / "deep.jsonl"
    seeds.write_text('{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "p", "extra": ' + "[" * 200_000
                     + "]" * 200_000 + "}\n", encoding="utf-8")
    result = invoke(_run(seeds, tmp_path / "out"))
    assert_located_error(result, path=str(seeds), line=2, field=None, fragment="nested")
    assert sim_graph_env.requests == 0


@pytest.mark.parametrize(
    ("name", "columns", "line", "field", "fragment"),
    [
        ("prompt_numbers.parquet", {"id": ["a", "b"], "prompt": [1.5, 2.5]}, 1, "prompt", "must be a string"),
        ("id_lists.parquet", {"id": [["a"], ["b"]], "prompt": ["p", "q"]}, 1, "id", "must be a string"),
        ("no_prompt.parquet", {"id": ["a"], "question": ["p"]}, None, "prompt", "no column 'prompt'"),
        ("null_prompt.parquet", {"id": ["a", "b"], "prompt": ["p", None]}, 2, "prompt", "missing required field"),
        ("binary_metadata.parquet", {"id": ["a"], "prompt": ["p"], "blob": [b"\x00\x01"]}, 1, "blob",
         "binary data"),
        ("duplicate_ids.parquet", {"id": ["a", "b", "a"], "prompt": ["p", "q", "r"]}, 3, "id", "duplicate seed id"),
    ],
)
def test_run_refuses_bad_parquet(tmp_path: Path, sim_graph_env: Simulator, name: str, columns: dict[str, list[object]],
                                 line: int | None, field: str, fragment: str) -> None:
    seeds = _write_parquet(tmp_path / name, columns)
    result = invoke(_run(seeds, tmp_path / "out"))
    assert_located_error(result, path=str(seeds), line=line, field=field, fragment=fragment)
    assert sim_graph_env.requests == 0


def test_junk_named_parquet_is_refused(tmp_path: Path, sim_graph_env: Simulator) -> None:
    seeds = tmp_path / "junk.parquet"
    seeds.write_bytes(b"PAR1" + bytes(range(256)) * 8)
    result = invoke(_run(seeds, tmp_path / "out"))
    assert_located_error(result, path=str(seeds), line=None, field=None, fragment="not a readable Parquet file")
    assert sim_graph_env.requests == 0


@pytest.mark.slow
def test_real_command_exits_2_without_traceback(tmp_path: Path, sim: Simulator) -> None:
    picked = [c for c in CASES if c.id in {"binary_junk", "utf16_with_bom", "duplicate_id", "prompt_is_list"}]
    assert len(picked) == 4
    env = subprocess_env({SIM_BASE_VAR: sim.base_url})
    results = run_many([_run(c.path, tmp_path / c.id) for c in picked], env)
    for case, result in zip(picked, results, strict=True):
        assert_located_error(result, path=str(case.path), line=case.line, field=case.field, fragment=case.message)
    assert sim.requests == 0
