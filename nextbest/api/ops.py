"""Readiness and metrics, for the load balancer and Prometheus (no key: see docs/operations.md).

``/healthz`` (api/health.py) says the process answers; ``/readyz`` says it can serve a
decision: the database answers and a warehouse data version is active.
"""

from __future__ import annotations

import os
from datetime import datetime

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text

from nextbest.api.services import ServicesDep
from nextbest.errors import Unavailable
from nextbest.storage.warehouse import NoDataLoaded

__all__ = ["METRICS_ROUTES", "ROUTES", "Ready"]

PUBLIC = {"exclude_from_auth": True}


class Ready(msgspec.Struct, kw_only=True):
    status: str
    data_version: int
    catalog_version: str
    data_version_loaded_at: datetime | None


@get(
    "/readyz",
    summary="Ready to serve: database reachable, a data version loaded (503 with the reason)",
    tags=["operations"],
    opt=PUBLIC,
    sync_to_thread=True,
)
def readyz(services: ServicesDep) -> Ready:
    try:
        with services.db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        raise Unavailable(f"database unreachable: {type(exc).__name__}") from None
    try:
        active = services.reader.active()
    except NoDataLoaded as exc:
        raise Unavailable(str(exc)) from None
    except Exception as exc:
        raise Unavailable(f"cannot read the active data version: {type(exc).__name__}") from None
    return Ready(
        status="ready",
        data_version=active.id,
        catalog_version=active.catalog.version,
        data_version_loaded_at=active.loaded_at,
    )


@get("/metrics", opt=PUBLIC, include_in_schema=False, sync_to_thread=True)
def metrics(state: State) -> Response[bytes]:
    """The process's metrics (Litestar's request histograms and our counters; with several
    workers set PROMETHEUS_MULTIPROC_DIR and they are summed over workers) followed by the
    state of this app's services, read now.

    Written out rather than Litestar's PrometheusController, which exposes only the global
    registry: the services' collector is per app (tests build many apps in one process)."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = generate_latest(registry) + generate_latest(state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ROUTES = [readyz]
METRICS_ROUTES = [metrics]
