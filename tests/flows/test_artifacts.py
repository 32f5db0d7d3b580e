from __future__ import annotations

from interleaf import RunTotals, ShardRecord
from interleaf.flows.artifacts import artifact_key, render_markdown, shard_table


def record(index: int, status: str, done: int, failed: int) -> ShardRecord:
    return ShardRecord(key=f"k{index}", index=index, graph_hash="g", content_hash="c", seed_ids=["a", "b"],
                       status=status, attempts=2 if failed else 1,  # type: ignore[arg-type]
                       totals=RunTotals(seeds=2, done=done, failed=failed, pending=2 - done - failed,
                                        calls=done * 3, cost=0.5))


def test_artifact_key_is_a_valid_prefect_key() -> None:
    assert artifact_key("InterMT Lite_v2") == "interleaf-intermt-lite-v2"


def test_markdown_reports_counts_cost_and_reasons() -> None:
    totals = RunTotals(seeds=7, done=3, failed=1, pending=1, skipped=2, calls=9, prompt_tokens=100,
                       completion_tokens=40, cost=1.25, failed_reasons={"judge timeout": 1},
                       failed_branches={"model call failed": 2}, pruned_branches={"low score": 4},
                       fallbacks={"model 'expander'": 1})
    md = render_markdown("intermt", totals, [record(1, "done", 2, 0), record(2, "failed", 1, 1)], 1,
                         {2: "1 of 2 dialogues failed | judge timeout"}, "jsonl -> out: 3 rows")
    assert md.startswith("# interleaf run: intermt\n")
    assert "| seeds done | failed | pending | skipped | model requests |" in md
    assert "| 3 | 1 | 1 | 2 | 9 | 100 | 40 | $1.2500 |" in md
    assert "Shards: 2 run, 1 skipped (finished earlier), 1 failed." in md
    assert "## Failed seeds" in md and "| judge timeout | 1 |" in md
    assert "## Failed branches" in md and "| model call failed | 2 |" in md
    assert "## Pruned branches" in md and "| low score | 4 |" in md
    assert "## Expansion fallbacks" in md and "| model 'expander' | 1 |" in md
    assert "| 2 | 1 of 2 dialogues failed \\| judge timeout |" in md
    assert md.rstrip().endswith("Export: jsonl -> out: 3 rows")


def test_unknown_cost_is_never_shown_as_free() -> None:
    unpriced = render_markdown("g", RunTotals(calls=3, unpriced_calls=3), [], 0, {}, None)
    assert "| 0 | 0 | 0 | 0 | 3 | 0 | 0 | unknown |" in unpriced
    nothing_sent = render_markdown("g", RunTotals(), [], 0, {}, None)
    assert "| $0 |" in nothing_sent
    partly = render_markdown("g", RunTotals(calls=3, cost=0.5, unpriced_calls=1), [], 0, {}, None)
    assert "| $0.5000 (+1 calls without a known price) |" in partly
    # Sections only for reasons that occurred.
    assert "## " not in unpriced


def test_reasons_are_listed_most_frequent_first() -> None:
    md = render_markdown("g", RunTotals(failed_reasons={"x": 2, "y": 1, "z": 5}), [], 0, {}, None)
    assert md.index("| z | 5 |") < md.index("| x | 2 |") < md.index("| y | 1 |")


def test_shard_table_rows_in_shard_order() -> None:
    rows = shard_table([record(2, "failed", 1, 1), record(0, "done", 2, 0)])
    got = [(r["shard"], r["status"], r["done"], r["failed"], r["pending"], r["attempts"], r["calls"], r["key"])
           for r in rows]
    assert got == [(0, "done", 2, 0, 0, 1, 6, "k0"), (2, "failed", 1, 1, 0, 2, 3, "k2")]
    assert all(r["seeds"] == 2 and r["cost"] == 0.5 for r in rows)
