"""``interleaf prefect setup``: what the deployments of prefect.yaml need on a Prefect server.

Idempotent: run it on a fresh server, then ``prefect --no-prompt deploy --all`` from the
repository root deploys every deployment. It creates (or leaves as they are):

- the work pools the deployments name: ``interleaf-process`` (type ``process``) and
  ``interleaf-gpu`` (type ``kubernetes``, with the base job template shipped in
  ``flows/kubernetes_gpu_job_template.json``, so no Kubernetes package is needed to create it);
- the global concurrency limits the deployments' ``limit_sizes`` name, at those sizes;
- the automation ``interleaf: crash unresponsive flow runs``: a flow run that stops sending
  heartbeats (its machine died, its pod was evicted) is marked Crashed after
  ``HEARTBEAT_WINDOW_S`` (or ``$INTERLEAF_HEARTBEAT_WINDOW_S``), so ``prefect flow-run
  retry`` can redo its unfinished shards.
  Heartbeats are switched on in the shipped deployments
  (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` = ``HEARTBEAT_FREQUENCY_S``).

Example:
    >>> report = run_setup(Path("prefect.yaml"))     # doctest: +SKIP
    >>> print("\\n".join(report))                      # doctest: +SKIP
    created work pool interleaf-process (process)
    ...
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound
from prefect.utilities.asyncutils import run_coro_as_sync

from interleaf.errors import InterleafError

GPU_TEMPLATE = Path(__file__).with_name("kubernetes_gpu_job_template.json")
AUTOMATION_NAME = "interleaf: crash unresponsive flow runs"
#: Seconds between a flow run's heartbeats (Prefect needs more than 30).
HEARTBEAT_FREQUENCY_S = 35
#: A run with no heartbeat for this long is marked Crashed (about three missed heartbeats).
HEARTBEAT_WINDOW_S = 120
#: Environment variable that sets another window (seconds, more than the heartbeat frequency and
#: at least 10) when the automation is created: shorter finds dead runs sooner, but a window
#: close to the heartbeat frequency crashes live runs whose heartbeat came a little late.
WINDOW_ENV = "INTERLEAF_HEARTBEAT_WINDOW_S"


def heartbeat_window_s() -> float:
    """The crash window: ``$INTERLEAF_HEARTBEAT_WINDOW_S`` if set, else :data:`HEARTBEAT_WINDOW_S`.

    >>> heartbeat_window_s() == HEARTBEAT_WINDOW_S or bool(os.environ.get(WINDOW_ENV))
    True
    """
    raw = os.environ.get(WINDOW_ENV, "").strip()
    if not raw:
        return float(HEARTBEAT_WINDOW_S)
    try:
        window = float(raw)
    except ValueError:
        raise PrefectSetupError(f"{WINDOW_ENV}={raw!r} is not a number of seconds") from None
    if window < 10:
        raise PrefectSetupError(f"{WINDOW_ENV}={raw!r}: Prefect needs a window of at least 10 s")
    return window

_POOL_TYPES = {"interleaf-process": "process", "interleaf-gpu": "kubernetes"}


class PrefectSetupError(InterleafError):
    """The server is unreachable, or prefect.yaml names something setup cannot create."""


def _deployments(prefect_yaml: Path) -> list[dict[str, Any]]:
    try:
        config = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PrefectSetupError(f"{prefect_yaml}: cannot read it: {exc}") from None
    deployments = config.get("deployments") or []
    if not isinstance(deployments, list):
        raise PrefectSetupError(f"{prefect_yaml}: 'deployments' is not a list")
    return [d for d in deployments if isinstance(d, dict)]


def needed(prefect_yaml: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Work pools (name -> type) and concurrency limits (name -> size) the deployments use."""
    pools: dict[str, str] = {}
    limits: dict[str, int] = {}
    for dep in _deployments(prefect_yaml):
        pool = ((dep.get("work_pool") or {}).get("name"))
        if pool:
            if pool not in _POOL_TYPES:
                raise PrefectSetupError(f"{prefect_yaml}: deployment {dep.get('name')!r} names work pool {pool!r}; "
                                        f"setup knows {', '.join(sorted(_POOL_TYPES))}")
            pools[pool] = _POOL_TYPES[pool]
        for name, size in ((dep.get("parameters") or {}).get("limit_sizes") or {}).items():
            limits[str(name)] = max(int(size), limits.get(str(name), 0))
    return pools, limits


def zombie_automation(window_s: float | None = None) -> Automation:
    """The automation that marks a flow run Crashed when its heartbeats stop for ``window_s``
    (default :func:`heartbeat_window_s`)."""
    window = heartbeat_window_s() if window_s is None else window_s
    return Automation(
        name=AUTOMATION_NAME,
        description="Marks an interleaf flow run Crashed when it sent no heartbeat for "
                    f"{window:g} s (its machine died); retry it to finish the run.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message="no heartbeat: the machine running this flow run is gone")],
    )


async def _asetup(prefect_yaml: Path) -> list[str]:
    pools, limits = needed(prefect_yaml)
    report: list[str] = []
    async with get_client() as client:
        try:
            await client.api_healthcheck()
            existing = {p.name: p for p in await client.read_work_pools()}
        except Exception as exc:  # httpx errors, a server that is not Prefect's
            raise PrefectSetupError(f"cannot reach the Prefect API ({exc}); set PREFECT_API_URL") from None
        for name, kind in sorted(pools.items()):
            if name in existing:
                report.append(f"work pool {name} exists ({existing[name].type})")
                continue
            template: dict[str, Any] = {}
            if kind == "kubernetes":
                template = json.loads(GPU_TEMPLATE.read_text(encoding="utf-8"))
            await client.create_work_pool(WorkPoolCreate(name=name, type=kind, base_job_template=template))
            report.append(f"created work pool {name} ({kind})")
        for name, size in sorted(limits.items()):
            try:
                limit = await client.read_global_concurrency_limit_by_name(name)
                report.append(f"concurrency limit {name} exists (limit {limit.limit})")
            except ObjectNotFound:
                await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=size))
                report.append(f"created concurrency limit {name} (limit {size})")
    try:
        await Automation.aread(name=AUTOMATION_NAME)
        report.append(f"automation {AUTOMATION_NAME!r} exists")
    except ValueError:
        automation = zombie_automation()
        await automation.acreate()
        window = automation.trigger.within.total_seconds()  # type: ignore[union-attr]
        report.append(f"created automation {AUTOMATION_NAME!r} (crash after {window:g} s without heartbeat)")
    return report


def run_setup(prefect_yaml: Path) -> list[str]:
    """Create what ``prefect_yaml``'s deployments need; one line per thing, created or found."""
    result: list[str] = run_coro_as_sync(_asetup(prefect_yaml))  # type: ignore[assignment]
    return result
