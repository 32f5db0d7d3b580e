"""``interleaf export``: one entry point that picks the exporter for a format name."""

from __future__ import annotations

from pathlib import Path

from interleaf.datasets.run_reader import RunReader
from interleaf.errors import InterleafError

FORMATS = ("intermt", "align-anything", "hf", "jsonl")


def export_run(run_dir: str, fmt: str, out: Path, push_to_hub: str | None = None) -> str:
    """Export the run at ``run_dir`` (folder, ``--out`` folder or store URI) as ``fmt`` into ``out``.

    Returns a one-line report. ``push_to_hub`` is only for ``hf``.
    """
    name = fmt.strip().lower().replace("_", "-")
    if name not in FORMATS:
        raise InterleafError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if push_to_hub and name != "hf":
        raise InterleafError(f"--push-to-hub is only for --format hf, not {fmt!r}")
    reader = RunReader.open(run_dir)
    out = Path(out)
    if name == "intermt":
        from interleaf.datasets.intermt import export_intermt

        return export_intermt(reader, out)
    if name == "align-anything":
        from interleaf.datasets.align_anything import export_align_anything

        return export_align_anything(reader, out)
    if name == "hf":
        from interleaf.datasets.hf import export_hf

        return export_hf(reader, out, push_to_hub)
    from interleaf.datasets.jsonl import export_jsonl

    return export_jsonl(reader, out)
