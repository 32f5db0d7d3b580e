"""The flow's last step: export the run's dialogues and pairs in one dataset format."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def export_outputs(run_ref: str, fmt: str, out: str | Path) -> str | None:
    """Export ``run_ref`` (run directory or store URI) as ``fmt`` into ``out``; returns a one-line note.

    Returns None (and logs why) when the exporter is not installed in this build yet.
    """
    try:
        from interleaf.datasets.export import export_run
    except ImportError as exc:
        log.warning("export step skipped: interleaf.datasets.export is not available (%s)", exc)
        return None
    report: Any = export_run(run_ref, fmt, Path(out))
    note = str(report).strip().splitlines()[0] if str(report).strip() else f"{fmt} export written"
    return f"{fmt} -> {out}: {note}"
