"""Shared inputs of the flow tests: a counting graph and a seeds file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.flows.kinds import CallLog

MODELS_TEMPLATE = """\
models:
  endpoint:
    model: openai/unused
    api_base: http://127.0.0.1:9/v1
    concurrency_key: {concurrency_key}
"""

GRAPH_TEMPLATE = """\
name: counting
description: One countable call per dialogue (tests only).
defaults:
  concurrency: 4
{models}nodes:
  answer:
    kind: tests.flows.kinds:CountingAnswer
    params:
      log_file: {log_file}
      fail_once_dir: {fail_dir}
      sleep: {sleep}
edges:
  - {{from: START, to: answer}}
  - {{from: answer, to: END}}
"""


@dataclass
class CountingSetup:
    """Paths of one flow test's inputs and outputs."""

    root: Path
    graph: Path
    seeds: Path
    out: Path
    fail_dir: Path
    log: CallLog

    def fail_once(self, seed_id: str) -> None:
        (self.fail_dir / seed_id).touch()


def make_counting_setup(root: Path, n_seeds: int = 6, sleep: float = 0.0,
                        concurrency_key: str | None = None) -> CountingSetup:
    """Inputs under ``root``; with ``concurrency_key`` the graph declares a model endpoint under that limit."""
    root.mkdir(parents=True, exist_ok=True)
    fail_dir = root / "fail-once"
    fail_dir.mkdir(exist_ok=True)
    log_file = root / "calls.log"
    graph = root / "graph.yaml"
    graph.write_text(GRAPH_TEMPLATE.format(
        models=MODELS_TEMPLATE.format(concurrency_key=concurrency_key) if concurrency_key else "", log_file=log_file,
                                           fail_dir=fail_dir, sleep=sleep))
    seeds = root / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"prompt number {i}"}) + "\n"
                             for i in range(n_seeds)))
    return CountingSetup(root=root, graph=graph, seeds=seeds, out=root / "run", fail_dir=fail_dir,
                         log=CallLog(log_file))


@pytest.fixture
def counting(tmp_path: Path) -> CountingSetup:
    return make_counting_setup(tmp_path / "counting")
