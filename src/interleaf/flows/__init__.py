"""Prefect orchestration of runs: the generate flow and its parts.

``generate`` (the flow; ``interleaf.launch.run_orchestrated`` runs it for the CLI), ``shards`` (splitting, cache keys,
ledger), ``shard_work`` (one shard, with or without Prefect), ``dispatch`` (running the pending
shards: task runs here, or flow runs of the shard deployment), ``shard_flow`` (the
``interleaf-shard`` flow), ``limits`` (global concurrency limits), ``taskrunners`` (threads /
Dask), ``export`` and ``artifacts``. Importing this
package imports nothing heavy; ``generate`` imports Prefect.
"""
