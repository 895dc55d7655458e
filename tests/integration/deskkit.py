"""The whole desk as ``make run`` starts it, in this process: ingest, router and metrics served
on loopback ports, with ``make run``'s set of keys (ingest, ops, agent-alice, -bao, -chloe)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from devtools.run import dev_keys
from services.ingest.app import create_app as create_ingest_app
from services.ingest.settings import IngestSettings
from services.metrics.app import create_app as create_metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app as create_router_app
from services.router.settings import RouterSettings
from shared.auth import hash_key
from shared.settings import ApiKeyEntry
from tests.conftest import serving


@dataclass(frozen=True)
class Desk:
    ingest: str
    router: str
    metrics: str
    keys: dict[str, str]  # make run's names: ingest, ops, agent-alice, ...

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@asynccontextmanager
async def make_run_desk(common: dict[str, Any], **router: Any) -> AsyncIterator[Desk]:
    """The three services on loopback with make run's keys (and ``router`` settings)."""
    keys = dev_keys()
    entries = [
        ApiKeyEntry(name=name, sha256=hash_key(str(k["key"])), scopes=k["scopes"])
        for name, k in keys.items()
    ]
    shared = common | {"api_keys": entries}
    group = common["consumer_group"]
    ingest_app = create_ingest_app(IngestSettings(**shared))
    router_app = create_router_app(
        RouterSettings(**shared | {"consumer_group": f"{group}-router"}, **router)
    )
    metrics_app = create_metrics_app(
        MetricsSettings(
            **shared | {"consumer_group": f"{group}-metrics"}, events_fetch_max_wait_ms=20
        )
    )
    async with (
        serving(ingest_app) as ingest,
        serving(router_app) as router_url,
        serving(metrics_app) as metrics,
    ):
        yield Desk(ingest, router_url, metrics, {n: str(k["key"]) for n, k in keys.items()})
