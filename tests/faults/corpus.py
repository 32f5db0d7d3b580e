"""The bad-input corpora: case files and the index (``cases.yaml``) of what each must report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from interleaf.testing.simulator import Simulator

HERE = Path(__file__).parent
BAD_GRAPHS = HERE / "bad_graphs"
BAD_SEEDS = HERE / "bad_seeds"
VALID_GRAPH = HERE / "valid_graph.yaml"
#: The environment variable the corpus graphs read their simulator URL from.
SIM_BASE_VAR = "FAULTS_SIM_BASE"


@dataclass(frozen=True)
class Case:
    """One bad input file and the error it must produce."""

    path: Path
    line: int | None
    field: str | None
    message: str

    @property
    def id(self) -> str:
        return self.path.stem


def load_cases(folder: Path) -> list[Case]:
    """Every case of ``folder``'s ``cases.yaml`` (each file listed there must exist)."""
    index = yaml.safe_load((folder / "cases.yaml").read_text(encoding="utf-8"))
    cases = []
    for name, expected in index.items():
        path = folder / name if (folder / name).is_file() else folder / f"{name}.yaml"
        cases.append(Case(path=path, line=expected["line"], field=expected["field"], message=expected["message"]))
    return cases


def good_seeds(path: Path, n: int = 2) -> Path:
    """A valid seeds file of ``n`` seeds."""
    rows = [json.dumps({"id": f"ok{i}", "prompt": f"Draw a kite over the dunes, version {i}."}) for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sim_graph_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """Points the corpus graphs' models at the simulator; the test checks its request count stays 0."""
    monkeypatch.setenv(SIM_BASE_VAR, sim.base_url)
    monkeypatch.delenv("FAULTS_UNSET_API_KEY", raising=False)
    return sim
