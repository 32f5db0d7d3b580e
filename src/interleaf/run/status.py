"""``interleaf status RUN``: what a run holds, read from its records only (no model, no graph).

Example:
    >>> report = run_status("runs/exp1")                     # doctest: +SKIP
    >>> report.totals.done, report.totals.failed_reasons      # doctest: +SKIP
    (14, {'no_complete_dialogue': 2})
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interleaf.run import layout
from interleaf.run.reader import RunReader
from interleaf.run.records import Invocation, RunManifest
from interleaf.run.totals import RunTotals
from interleaf.storage.lock import RunLock, describe_holder


@dataclass
class RunStatus:
    """A run's counts (seeds by outcome, branches, calls, tokens, cost), its last invocation and its writer."""

    where: str
    totals: RunTotals
    run_id: str | None = None
    graph: str | None = None
    last: Invocation | None = None
    invocations: int = 0
    holder: dict[str, Any] | None = None
    failed_seeds: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object; ``seeds``, ``done``, ``failed``, ``pending`` are integers."""
        t = self.totals.to_dict()
        return {
            "where": self.where, "run_id": self.run_id, "graph": self.graph,
            "seeds": self.totals.seeds, "done": self.totals.done, "failed": self.totals.failed,
            "pending": self.totals.pending,
            "failed_reasons": dict(self.totals.failed_reasons),
            "failed_branches": dict(self.totals.failed_branches),
            "pruned_branches": dict(self.totals.pruned_branches),
            "expansion_fallbacks": dict(self.totals.fallbacks),
            "calls": t["calls"], "cached_calls": t["cached_calls"], "failed_calls": t["failed_calls"],
            "prompt_tokens": t["prompt_tokens"], "completion_tokens": t["completion_tokens"],
            "cost": t["cost"], "unpriced_calls": t["unpriced_calls"], "images": t["images"],
            "invocations": self.invocations,
            "last_invocation": None if self.last is None else {
                "outcome": self.last.outcome, "message": self.last.message,
                "started_at": self.last.started_at, "finished_at": self.last.finished_at,
                "processes": self.last.processes,
            },
            "writer": self.holder,
            "failed_seeds": [{"seed_id": s, "error": e} for s, e in self.failed_seeds],
        }

    def describe(self) -> str:
        """What a person reads: the outcome counts first, then reasons, calls and the writer."""
        t = self.totals
        lines = [f"run {self.run_id or '?'} (graph {self.graph or '?'!r}) in {self.where}"]
        lines.append(f"seeds: {t.seeds}: {t.done} done, {t.failed} failed, {t.pending} pending")
        lines.append(f"calls: {t.calls} model requests sent ({t.failed_calls} gave up, {t.cached_calls} from cache); "
                     f"{t.prompt_tokens}+{t.completion_tokens} tokens; {t.cost_text()}; {t.images} images")
        for label, counts in (("failed seeds", t.failed_reasons), ("failed branches", t.failed_branches),
                              ("pruned branches", t.pruned_branches), ("expansion fallbacks", t.fallbacks)):
            if counts:
                lines.append(f"{label}: " + ", ".join(f"{r} x{n}" for r, n in sorted(counts.items())))
        for seed_id, error in self.failed_seeds[:10]:
            lines.append(f"  failed {seed_id}: {error}")
        if len(self.failed_seeds) > 10:
            lines.append(f"  ... and {len(self.failed_seeds) - 10} more failed seeds")
        if self.last is not None:
            ended = self.last.finished_at or self.last.started_at
            text = f"last invocation ({self.invocations} in all): {self.last.outcome}, {_ago(time.time() - ended)} ago"
            if self.last.processes > 1:
                text += f" on {self.last.processes} processes"
            if self.last.message:
                text += f": {self.last.message}"
            lines.append(text)
        if self.holder is not None:
            lines.append(f"being written now by {describe_holder(self.holder)}")
        return "\n".join(lines)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_status(run: str | Path) -> RunStatus:
    """Read the status of the run at ``run`` (folder, moved folder or store URI)."""
    reader = RunReader.open(run)
    manifest: RunManifest | None = reader.manifest()
    totals = reader.totals()
    failed = sorted((s.seed_id, s.error or s.reason or "failed") for s in reader.statuses().values()
                    if s.status != "done")
    return RunStatus(
        where=str(run), totals=totals,
        run_id=manifest.run_id if manifest else None, graph=manifest.graph_name if manifest else None,
        last=manifest.invocations[-1] if manifest and manifest.invocations else None,
        invocations=len(manifest.invocations) if manifest else 0,
        holder=RunLock.read(reader.store, layout.LOCK), failed_seeds=failed,
    )
