"""A sample run shared by the dataset tests (written once per session, read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from interleaf.state import DialogueState
from tests.datasets.sample_run import write_sample_run


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DialogueState]]:
    root = tmp_path_factory.mktemp("sample-run")
    return root, write_sample_run(root)
