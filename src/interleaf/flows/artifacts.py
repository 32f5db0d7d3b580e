"""Prefect UI artifacts for a generate run: a markdown report and a per-shard table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from interleaf.flows.shards import ShardRecord


def artifact_key(graph_name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", graph_name.lower()).strip("-") or "graph"
    return f"interleaf-{slug}"[:100]


def _reasons(value: Any) -> dict[str, int]:
    """Reason -> count, whether the summary keeps a mapping or a plain list of reasons."""
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    counts: dict[str, int] = {}
    for item in value or ():
        counts[str(item)] = counts.get(str(item), 0) + 1
    return counts


def _money(cost: Any) -> str:
    return "unknown" if cost is None else f"${float(cost):.4f}"


def render_markdown(
    graph_name: str,
    summary: Mapping[str, Any],
    shards_run: Sequence[ShardRecord],
    shards_skipped: int,
    shards_failed: Mapping[int, str],
    export_note: str | None,
) -> str:
    """The run report shown on the flow run's Artifacts tab."""
    lines = [
        f"# interleaf run: {graph_name}",
        "",
        "| dialogues done | failed | skipped | model calls | prompt tokens | completion tokens | cost |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary.get('done', 0)} | {summary.get('failed', 0)} | {summary.get('skipped', 0)} "
        f"| {summary.get('calls', 0)} | {summary.get('prompt_tokens', 0)} | {summary.get('completion_tokens', 0)} "
        f"| {_money(summary.get('cost'))} |",
        "",
        f"Shards: {len(shards_run)} run, {shards_skipped} skipped (finished earlier), {len(shards_failed)} failed.",
    ]
    for title, field in (("Failed dialogues", "failed_reasons"), ("Pruned candidates", "pruned_reasons")):
        reasons = _reasons(summary.get(field))
        if reasons:
            lines += ["", f"## {title}", "", "| reason | count |", "|---|---:|"]
            lines += [f"| {_cell(r)} | {n} |" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    if shards_failed:
        lines += ["", "## Failed shards", "", "| shard | error |", "|---:|---|"]
        lines += [f"| {i} | {_cell(err)} |" for i, err in sorted(shards_failed.items())]
    if export_note:
        lines += ["", f"Export: {export_note}"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def shard_table(records: Sequence[ShardRecord]) -> list[dict[str, Any]]:
    """One row per shard attempted in this flow run."""
    rows = []
    for r in sorted(records, key=lambda r: r.index):
        s = r.summary
        rows.append({
            "shard": r.index,
            "status": r.status,
            "attempts": r.attempts,
            "seeds": len(r.seed_ids),
            "done": s.get("done", 0),
            "failed": s.get("failed", 0),
            "calls": s.get("calls", 0),
            "cost": s.get("cost"),
            "key": r.key,
        })
    return rows


def publish_artifacts(
    graph_name: str,
    summary: Mapping[str, Any],
    shards_run: Sequence[ShardRecord],
    shards_skipped: int,
    shards_failed: Mapping[int, str],
    export_note: str | None = None,
) -> None:
    """Create the markdown report and the shard table on the current flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = artifact_key(graph_name)
    create_markdown_artifact(
        markdown=render_markdown(graph_name, summary, shards_run, shards_skipped, shards_failed, export_note),
        key=key,
        description=f"interleaf run summary for graph {graph_name!r}",
    )
    rows = shard_table(shards_run)
    if rows:
        create_table_artifact(table=rows, key=f"{key}-shards", description="Shards attempted in this flow run")
