"""Running a built-in graph end to end through the run engine, on the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from interleaf import DialogueState, DialogueStatus, ObjectStore, RunTotals, Seed, layout, open_run

DATA = Path(__file__).resolve().parents[2] / "src" / "interleaf" / "testing" / "data"


def point_models_at(monkeypatch: pytest.MonkeyPatch, base_url: str, roles: dict[str, str]) -> None:
    """Send every model of a built-in graph to the simulator; ``roles`` maps env var -> simulator role."""
    monkeypatch.setenv("INTERLEAF_API_BASE", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")
    for var, role in roles.items():
        monkeypatch.setenv(var, f"openai/{role}")


async def run_graph(graph: str | Path, out: Path, seeds: list[Seed]) -> tuple[ObjectStore, RunTotals,
                                                                                list[DialogueState]]:
    """Open a run of ``graph`` in ``out``, run ``seeds``, and read the dialogues back from the store.

    Every seed must have ended with a status and a dialogue, and the statuses must agree with
    the returned totals.
    """
    run = open_run(graph, out)
    try:
        totals = await run.arun_seeds(seeds)
    finally:
        await run.aclose()
        run.release()
    assert not run.store.exists(layout.LOCK), "the writer lock outlived release()"
    assert totals.seeds == len(seeds) and totals.done + totals.failed == len(seeds), totals
    states = []
    done = 0
    for seed in seeds:
        raw = run.store.get_json_or_none(layout.dialogue_key(seed.id))
        assert raw is not None, f"no dialogue written for {seed.id}"
        status = DialogueStatus.load(run.store, seed.id)
        assert status is not None, f"no status written for {seed.id}"
        done += status.status == "done"
        states.append(DialogueState.model_validate(raw))
    assert done == totals.done
    return run.store, totals, states
