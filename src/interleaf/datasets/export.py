"""``interleaf export``: one entry point that picks the exporter for a format name."""

from __future__ import annotations

from pathlib import Path

from interleaf.errors import InterleafError
from interleaf.run.reader import RunReader

FORMATS = ("intermt", "align-anything", "hf", "jsonl")


def export_run(run_dir: str, fmt: str, out: Path, push_to_hub: str | None = None) -> str:
    """Export the run at ``run_dir`` (folder, ``--out`` folder or store URI) as ``fmt`` into ``out``.

    Returns a one-line report. ``push_to_hub`` is only for ``hf``. Any run exports, also one
    with no finished dialogue (empty but valid files). Raises
    :class:`~interleaf.datasets.outputs.OutputError` when ``out`` cannot be written (a file in
    the way, no permission, a read-only or full disk); files already in ``out`` are replaced
    only by complete new ones.

    Example::

        export_run("runs/demo", "align-anything", Path("runs/demo/aa"))
    """
    name = fmt.strip().lower().replace("_", "-")
    if name not in FORMATS:
        raise InterleafError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if push_to_hub and name != "hf":
        raise InterleafError(f"--push-to-hub is only for --format hf, not {fmt!r}")
    reader = RunReader.open(run_dir)
    out = Path(out)
    # Each exporter is imported only when chosen: hf pulls in datasets and pyarrow (seconds).
    if name == "intermt":
        from interleaf.datasets.intermt import export_intermt  # lazy, as above

        return export_intermt(reader, out)
    if name == "align-anything":
        from interleaf.datasets.align_anything import export_align_anything  # lazy, as above

        return export_align_anything(reader, out)
    if name == "hf":
        from interleaf.datasets.hf import export_hf  # lazy: datasets and pyarrow are heavy

        return export_hf(reader, out, push_to_hub)
    from interleaf.datasets.jsonl import export_jsonl  # lazy, as above

    return export_jsonl(reader, out)
