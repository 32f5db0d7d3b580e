"""Fixtures of the human-review tests: a simulator-made run (once), fresh copies, the server, two people."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from interleaf.annotate.cli import annotate_app
from interleaf.testing.simulator import Simulator
from tests.annotate.runs import copy_run, make_sim_run
from tests.fixtures.label_studio import Annotator, LabelStudioServer


@pytest.fixture(scope="session")
async def sim_run_template(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One two-seed intermt-lite run made on the simulator, shared read-only by the tests."""
    return await make_sim_run(tmp_path_factory.mktemp("annotate-sim"), simulator.base_url)


@pytest.fixture
def run_dir(sim_run_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the simulator run, with its own run id (so its own Label Studio projects)."""
    return copy_run(sim_run_template, tmp_path / "run")


@pytest.fixture
def ls(label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> LabelStudioServer:
    """The server, with ``LABEL_STUDIO_API_KEY`` and ``LABEL_STUDIO_URL`` set as a user would."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    return label_studio


@pytest.fixture(scope="session")
def annotators(label_studio: LabelStudioServer) -> Iterator[tuple[Annotator, Annotator]]:
    """Two people with their own Label Studio accounts, signed up through the web forms."""
    a = Annotator(label_studio, "ann-a@example.com")
    b = Annotator(label_studio, "ann-b@example.com")
    yield a, b
    a.close()
    b.close()


def cli(*args: str) -> Result:
    """Run ``interleaf annotate ARGS`` in-process."""
    return CliRunner().invoke(annotate_app, list(args))


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run folder and its bytes (to show that nothing changed)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def project_tasks(
    server: LabelStudioServer, title: str
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """A project by title and its tasks keyed by (seed, item) from the data interleaf put in them."""
    with server.api() as http:
        projects = http.get("/api/projects/", params={"page_size": 1000}).json()["results"]
        project = next(p for p in projects if p["title"] == title)
        tasks = http.get("/api/tasks/", params={"project": project["id"], "page_size": 1000, "fields": "all"}).json()
    by_item = {(t["data"]["interleaf"]["seed"], t["data"]["interleaf"]["item"]): t for t in tasks["tasks"]}
    return project, by_item


def run_id(run: Path) -> str:
    return str(json.loads((run / "manifest.json").read_text())["run_id"])
