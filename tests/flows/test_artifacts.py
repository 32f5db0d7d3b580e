from __future__ import annotations

from interleaf.flows.artifacts import artifact_key, render_markdown, shard_table
from interleaf.flows.shards import ShardRecord


def record(index: int, status: str, done: int, failed: int) -> ShardRecord:
    return ShardRecord(key=f"k{index}", index=index, graph_hash="g", content_hash="c", seed_ids=["a", "b"],
                       status=status, attempts=2 if failed else 1,  # type: ignore[arg-type]
                       summary={"done": done, "failed": failed, "calls": done * 3, "cost": 0.5})


def test_artifact_key_is_a_valid_prefect_key() -> None:
    assert artifact_key("InterMT Lite_v2") == "interleaf-intermt-lite-v2"


def test_markdown_reports_counts_cost_and_reasons() -> None:
    summary = {"done": 3, "failed": 1, "skipped": 2, "calls": 9, "prompt_tokens": 100, "completion_tokens": 40,
               "cost": 1.25, "failed_reasons": {"judge timeout": 1}, "pruned_reasons": {"low score": 4}}
    md = render_markdown("intermt", summary, [record(1, "done", 2, 0), record(2, "failed", 1, 1)], 1,
                         {2: "1 of 2 dialogues failed | judge timeout"}, "jsonl -> out: 3 rows")
    assert "| 3 | 1 | 2 | 9 | 100 | 40 | $1.2500 |" in md
    assert "Shards: 2 run, 1 skipped (finished earlier), 1 failed." in md
    assert "| judge timeout | 1 |" in md and "| low score | 4 |" in md
    assert "| 2 | 1 of 2 dialogues failed \\| judge timeout |" in md
    assert md.rstrip().endswith("Export: jsonl -> out: 3 rows")


def test_unknown_cost_and_list_reasons() -> None:
    md = render_markdown("g", {"cost": None, "failed_reasons": ["x", "x", "y"]}, [], 0, {}, None)
    assert "| unknown |" in md and "| x | 2 |" in md and "| y | 1 |" in md


def test_shard_table_rows_in_shard_order() -> None:
    rows = shard_table([record(2, "failed", 1, 1), record(0, "done", 2, 0)])
    got = [(r["shard"], r["status"], r["done"], r["attempts"]) for r in rows]
    assert got == [(0, "done", 2, 1), (2, "failed", 1, 2)]
