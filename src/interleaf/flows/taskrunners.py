"""Where the shards of one flow run execute: threads here, or a Dask cluster.

Scale-out across machines is Prefect's own: start workers on many machines against one
work pool (and ``shard_dispatch: deployment`` spreads one batch's shards over them). Inside
one flow run, shards fan out through the task runner chosen here. Only tested runners are
offered: ``threads`` (built in) and ``dask`` (the ``interleaf[dask]`` extra, a local cluster of
worker processes or an existing scheduler). Ray is not offered: it is not tested here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from interleaf.errors import InterleafError

if TYPE_CHECKING:
    from prefect.futures import PrefectFuture
    from prefect.task_runners import TaskRunner

TaskRunnerName = Literal["threads", "dask"]


_PACKAGES = {
    "dask": ("prefect_dask", "pip install 'interleaf[dask]'"),
}


def check_task_runner(name: str) -> None:
    """Raise before the run starts when ``name`` is unknown or its package is not installed here.

    >>> check_task_runner("threads")
    """
    import importlib.util

    if name == "threads":
        return
    if name not in _PACKAGES:
        raise InterleafError(f"unknown task_runner {name!r} (threads, dask)")
    module, how = _PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise InterleafError(f"task_runner {name!r} needs {module.replace('_', '-')}, which is not installed: {how}")


def make_task_runner(
    name: TaskRunnerName, max_parallel: int, address: str | None = None
) -> TaskRunner[PrefectFuture[Any]]:
    """A fresh task runner; ``address`` is an existing Dask scheduler to join.

    Without one, ``dask`` starts a local cluster of ``max_parallel`` worker processes (one
    thread each), so shards run in separate processes with their own event loops.
    """
    if max_parallel < 1:
        raise InterleafError(f"max_parallel_shards must be at least 1, got {max_parallel}")
    if name == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max_parallel)  # type: ignore[return-value]
    if name == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise InterleafError("task_runner 'dask' needs prefect-dask: pip install 'interleaf[dask]'") from None
        if address:
            return DaskTaskRunner(address=address)  # type: ignore[return-value]
        return DaskTaskRunner(  # type: ignore[return-value]
            cluster_kwargs={"n_workers": max_parallel, "threads_per_worker": 1, "processes": True}
        )
    raise InterleafError(f"unknown task_runner {name!r} (threads, dask)")
