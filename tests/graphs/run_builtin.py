"""Running a built-in graph end to end through the run engine, on the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from interleaf.runner import RunSummary, open_run
from interleaf.state import DialogueState, Seed
from interleaf.storage.manifest import dialogue_key
from interleaf.storage.store import ObjectStore

DATA = Path(__file__).resolve().parents[2] / "src" / "interleaf" / "testing" / "data"


def point_models_at(monkeypatch: pytest.MonkeyPatch, base_url: str, roles: dict[str, str]) -> None:
    """Send every model of a built-in graph to the simulator; ``roles`` maps env var -> simulator role."""
    monkeypatch.setenv("INTERLEAF_API_BASE", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    for var, role in roles.items():
        monkeypatch.setenv(var, f"openai/{role}")


async def run_graph(graph: str | Path, out: Path, seeds: list[Seed]) -> tuple[ObjectStore, RunSummary,
                                                                                list[DialogueState]]:
    """Open a run of ``graph`` in ``out``, run ``seeds``, and read the dialogues back from the store."""
    run = open_run(graph, out, None)
    try:
        summary = await run.arun_seeds(seeds)
    finally:
        await run.aclose()
    states = []
    for seed in seeds:
        raw = run.store.get_json_or_none(dialogue_key(seed.id))
        assert raw is not None, f"no dialogue written for {seed.id}"
        states.append(DialogueState.model_validate(raw))
    return run.store, summary, states
