"""Prefect orchestration of runs: the generate flow and its parts.

``generate`` (the flow; ``interleaf.launch.run_orchestrated`` runs it for the CLI), ``shards`` (splitting, cache keys,
ledger), ``shard_work`` (one shard, with or without Prefect), ``limits`` (global concurrency
limits), ``taskrunners`` (threads / Dask / Ray), ``export`` and ``artifacts``. Importing this
package imports nothing heavy; ``generate`` imports Prefect.
"""
