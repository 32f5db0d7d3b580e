"""Reading a finished run back and checking that every seed ended exactly once, with a reason if failed."""

from __future__ import annotations

from typing import Any

from interleaf import DialogueState, DialogueStatus, ObjectStore, layout

#: Wall-clock fields: the only ones two runs of the same graph and seeds may differ in.
TIMING_FIELDS = frozenset({"seconds", "latency_s"})


def without_timings(value: Any) -> Any:
    """``value`` with every :data:`TIMING_FIELDS` key dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def final_dataset(store: ObjectStore) -> dict[str, Any]:
    """Every dialogue file of a run, timings removed, by key."""
    return {key: without_timings(store.get_json(key)) for key in sorted(store.list(layout.DIALOGUE_PREFIX))}


def check_every_seed_ended_once(store: ObjectStore, seed_ids: list[str]) -> dict[str, int]:
    """Assert each seed has one status (done, or failed with a reason) and nothing else is there.

    Returns ``{"done": n, "failed": m}``.
    """
    expected_status = sorted(layout.status_key(s) for s in seed_ids)
    assert sorted(store.list(layout.STATUS_PREFIX)) == expected_status, "a dialogue was lost or an unknown one appeared"
    dialogue_keys = set(store.list(layout.DIALOGUE_PREFIX))
    assert dialogue_keys <= {layout.dialogue_key(s) for s in seed_ids}
    counts = {"done": 0, "failed": 0}
    for seed_id in seed_ids:
        status = DialogueStatus.load(store, seed_id)
        assert status is not None and status.seed_id == seed_id
        assert status.status in counts, status
        counts[status.status] += 1
        # The status's own totals count this one seed, with the same outcome.
        assert status.totals.seeds == 1, status
        assert (status.totals.done, status.totals.failed) == (int(status.status == "done"),
                                                               int(status.status == "failed")), status
        if status.status == "failed":
            assert status.reason and status.error, f"failed without a reason: {status}"
            assert status.totals.failed_reasons == {status.reason: 1}, status
            continue
        assert layout.dialogue_key(seed_id) in dialogue_keys, f"{seed_id} is done but has no dialogue"
        state = DialogueState.model_validate(store.get_json(layout.dialogue_key(seed_id)))
        assert state.seed.id == seed_id and state.status == "done"
        # Done means at least one complete dialogue, and the status says how many.
        complete = len(state.tree().complete_ends())
        assert complete >= 1 and status.complete == complete, (seed_id, status.complete, complete)
        for node in state.nodes.values():
            if node.status != "alive":
                assert node.reason, f"{seed_id}/{node.id} is {node.status} without a reason"
    return counts
