"""The API key a run is given reaches the model server and nowhere else: not the store, the logs,
the exports or the HTML report."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from interleaf.testing.simulator import Simulator
from tests.faults.cli import CliResult, run_many, subprocess_env
from tests.faults.lite_graph import write_lite_graph, write_seeds

FORMATS = ("intermt", "align-anything", "hf", "jsonl")


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def _keep_output(logs: Path, name: str, result: CliResult) -> None:
    (logs / f"{name}.stdout").write_text(result.stdout, encoding="utf-8")
    (logs / f"{name}.stderr").write_text(result.stderr, encoding="utf-8")


@pytest.mark.slow
def test_api_key_lands_in_no_byte_the_run_wrote(tmp_path: Path, sim: Simulator) -> None:
    key = f"sk-test-{secrets.token_hex(16)}"
    # Faults too, so error paths (retries, failed calls, their messages) are exercised.
    sim.configure(fault_rate=0.2, faults=("429", "500", "malformed_json"))
    graph = write_lite_graph(tmp_path / "g.yaml", sim.base_url, max_retries=1)
    assert b"sk-test-" not in graph.read_bytes()
    seeds = write_seeds(tmp_path / "seeds.jsonl", 3)
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    env = subprocess_env({"OPENAI_API_KEY": key, "LITELLM_LOG": "DEBUG"})

    (ran,) = run_many([["run", str(graph), "--seeds", str(seeds), "--out", str(run_dir)]], env)
    _keep_output(logs, "run", ran)
    assert ran.exit_code == 0, ran.stderr[-3000:]
    assert sim.authorizations[f"Bearer {key}"] > 0, "the key never reached the model server: the test proves nothing"

    commands = [["export", str(run_dir), "--format", fmt, "--out", str(tmp_path / "exports" / fmt)] for fmt in FORMATS]
    commands.append(["view", str(run_dir), "--out", str(tmp_path / "report")])
    results = run_many(commands, env)
    for args, result in zip(commands, results, strict=True):
        _keep_output(logs, args[0] + "-" + args[3].replace("/", "_")[-20:], result)
        assert result.exit_code == 0, (args, result.stderr[-2000:])
    assert (tmp_path / "report").is_dir() and any((tmp_path / "report").rglob("*.html"))
    for fmt in FORMATS:
        assert any(p.is_file() for p in (tmp_path / "exports" / fmt).rglob("*")), f"{fmt} export wrote nothing"

    assert _files_holding(tmp_path, key.encode()) == []
    # The key's distinctive tail, in case something wrote it cut or quoted.
    assert _files_holding(tmp_path, key[-24:].encode()) == []
