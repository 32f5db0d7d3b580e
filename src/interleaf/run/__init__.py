"""The run as data: its layout, typed records, totals, and reading and writing it.

Modules: :mod:`~interleaf.run.layout` (every key and prefix, :func:`locate_root`),
:mod:`~interleaf.run.records` (manifest, invocations, dialogue statuses, shard records),
:mod:`~interleaf.run.totals` (:class:`RunTotals`, the one counting rule),
:mod:`~interleaf.run.reader` and :mod:`~interleaf.run.writer`. Nothing here compiles a
graph or calls a model; the engine that does is :mod:`interleaf.runner`.
"""
