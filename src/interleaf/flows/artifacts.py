"""Prefect UI artifacts for a generate run: a markdown report and a per-shard table."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from interleaf.run.records import ShardRecord
from interleaf.run.totals import RunTotals


def artifact_key(graph_name: str, where: str | None = None) -> str:
    """The artifact key of one output: graph, output folder and a short hash of the store URI.

    Prefect keeps an artifact's history by key, so two experiments on one graph must not
    share one (lowercase letters, digits and dashes only).

    >>> artifact_key("InterMT lite", "file:///data/runs/exp1")[:28]
    'interleaf-intermt-lite-exp1-'
    """
    parts = [graph_name]
    if where:
        parts.append(where.rstrip("/").rsplit("/", 1)[-1])
    slug = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-") or "graph"
    if where:
        slug = f"{slug[:80]}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"
    return f"interleaf-{slug}"[:100]


def _money(totals: RunTotals) -> str:
    return totals.cost_text().removeprefix("cost ")


def render_markdown(
    graph_name: str,
    totals: RunTotals,
    shards_run: Sequence[ShardRecord],
    shards_skipped: int,
    shards_failed: Mapping[int, str],
    export_note: str | None,
) -> str:
    """The run report shown on the flow run's Artifacts tab."""
    lines = [
        f"# interleaf run: {graph_name}",
        "",
        "| seeds done | failed | pending | skipped | model requests | prompt tokens | completion tokens | cost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {totals.done} | {totals.failed} | {totals.pending} | {totals.skipped} "
        f"| {totals.calls} | {totals.prompt_tokens} | {totals.completion_tokens} | {_money(totals)} |",
        "",
        f"Shards: {len(shards_run)} run, {shards_skipped} skipped (finished earlier), {len(shards_failed)} failed.",
    ]
    for title, reasons in (("Failed seeds", totals.failed_reasons), ("Failed branches", totals.failed_branches),
                           ("Pruned branches", totals.pruned_branches), ("Expansion fallbacks", totals.fallbacks)):
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
        s = r.totals
        rows.append({
            "shard": r.index,
            "status": r.status,
            "attempts": r.attempts,
            "seeds": len(r.seed_ids),
            "done": s.done,
            "failed": s.failed,
            "pending": s.pending,
            "calls": s.calls,
            "cost": s.cost,
            "key": r.key,
        })
    return rows


def publish_artifacts(
    graph_name: str,
    totals: RunTotals,
    shards_run: Sequence[ShardRecord],
    shards_skipped: int,
    shards_failed: Mapping[int, str],
    export_note: str | None = None,
    *,
    where: str | None = None,
) -> None:
    """Create the markdown report and the shard table on the current flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = artifact_key(graph_name, where)
    create_markdown_artifact(
        markdown=render_markdown(graph_name, totals, shards_run, shards_skipped, shards_failed, export_note),
        key=key,
        description=f"interleaf run summary for graph {graph_name!r}",
    )
    rows = shard_table(shards_run)
    if rows:
        create_table_artifact(table=rows, key=f"{key}-shards", description="Shards attempted in this flow run")
