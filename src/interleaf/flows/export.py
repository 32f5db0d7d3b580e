"""The flow's last steps: run-level reports, then an export in one dataset format."""

from __future__ import annotations

from pathlib import Path

from interleaf.datasets.export import export_run


def export_outputs(run_ref: str, fmt: str, out: str | Path) -> str:
    """Export ``run_ref`` (run directory or store URI) as ``fmt`` into ``out``; returns a one-line note."""
    report = str(export_run(run_ref, fmt, Path(out))).strip()
    note = report.splitlines()[0] if report else f"{fmt} export written"
    return f"{fmt} -> {out}: {note}"
