"""Watching the server: request ids, access log lines, Prometheus metrics, unexpected errors.

- Every response carries ``X-Request-ID`` (the caller's, if it sent a sane one, else a new
  one); every log line written while serving the request carries it too (nextbest/logs.py).
- One access line per request (logger ``nextbest.access``): method, path, status, duration,
  key, request id. Numbers in the path or query are masked by the formatter.
- Request latency per endpoint comes from Litestar's PrometheusMiddleware (path templates, not
  raw paths, so a decision id never becomes a label). Decisions and outcomes are counted from
  what the handlers return; queue depth, cache hits and the data version's age are read from
  the live services when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_plus

from litestar import Response
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from nextbest.errors import ServiceError
from nextbest.keys import Actor
from nextbest.logs import request_id_var
from nextbest.storage.models import ProvisioningJob
from nextbest.storage.warehouse import NoDataLoaded
from nextbest.wire import DecisionResponse, OutcomeResponse

if TYPE_CHECKING:
    from nextbest.api.services import Services

__all__ = [
    "DECISIONS",
    "OUTCOMES",
    "REQUEST_ID_HEADER",
    "RequestContextMiddleware",
    "ServiceCollector",
    "count_results",
    "log_unexpected",
    "prometheus_config",
    "services_registry",
    "stamp_response",
]

log = logging.getLogger("nextbest.api")
access_log = logging.getLogger("nextbest.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ID = "nextbest.request_id"
_STARTED = "nextbest.started"
_STATUS = "nextbest.status"

# Counted in this process; Prometheus sums processes (PROMETHEUS_MULTIPROC_DIR with workers).
DECISIONS = Counter("nextbest_decisions", "Decisions served", ["channel", "known", "offered"])
OUTCOMES = Counter("nextbest_outcomes", "Outcomes recorded (replays not counted)", ["outcome"])

# Request latency buckets, in seconds: a decision takes about a millisecond.
LATENCY_BUCKETS: list[str | float] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]  # fmt: skip


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(
        app_name="nextbest",
        prefix="nextbest_http",
        group_path=True,
        buckets=LATENCY_BUCKETS,
        exclude=["^/metrics$"],
    )


def _state(scope: Scope) -> dict[str, Any]:
    return cast("dict[str, Any]", scope)


def _new_request_id(scope: Scope) -> str:
    sent = Headers.from_scope(scope).get(REQUEST_ID_HEADER.lower())
    request_id = sent if sent and _SANE_ID.fullmatch(sent) else uuid.uuid4().hex
    _state(scope)[_ID] = request_id
    return request_id


class RequestContextMiddleware:
    """Outermost: gives the request its id (for every log line) and starts its clock."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            request_id_var.set(_new_request_id(scope))
            _state(scope)[_STARTED] = time.perf_counter()
        await self.app(scope, receive, send)


async def stamp_response(message: Message, scope: Scope) -> None:
    """App-level ``before_send`` hook: sees every response, also those no middleware saw (404,
    405): add the request id header, and write the access line when the body is done.
    (Hooks are async on purpose: Litestar runs a sync hook in a worker thread.)"""
    if scope["type"] != ScopeType.HTTP:
        return
    state = _state(scope)
    if message["type"] == "http.response.start":
        request_id = state.get(_ID) or _new_request_id(scope)
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
        state[_STATUS] = message["status"]
    elif (
        message["type"] == "http.response.body"
        and not message.get("more_body", False)
        and access_log.isEnabledFor(logging.INFO)
    ):
        _access_line(scope, state)


def _access_line(scope: Scope, state: dict[str, Any]) -> None:
    started = state.get(_STARTED)
    duration_ms = round((time.perf_counter() - started) * 1000, 3) if started else None
    query = scope.get("query_string", b"")
    # Decoded, so a number written 139%200000%200001 is seen (and masked) as one.
    path = scope["path"] + (f"?{unquote_plus(query.decode('latin-1'))}" if query else "")
    user = state.get("user")
    status = state.get(_STATUS, 0)
    access_log.info(
        "%s %s %s",
        scope.get("method", ""),
        path,
        status,
        extra={
            "method": scope.get("method", ""),
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "key_id": user.key_id if isinstance(user, Actor) else None,
            "user": user.user_id if isinstance(user, Actor) else None,
            "request_id": state.get(_ID),
        },
    )


async def count_results(response: Response[Any]) -> Response[Any]:
    """App-level ``after_request`` hook: count what the handlers return (a handler or router
    with its own after_request hook replaces this one for its routes)."""
    content = getattr(response, "content", None)  # a file response has none
    if isinstance(content, DecisionResponse):
        DECISIONS.labels(
            channel=content.channel,
            known=str(content.known).lower(),
            offered=str(bool(content.offers)).lower(),
        ).inc()
    elif (
        isinstance(content, OutcomeResponse)
        and response.status_code == 201
        and "idempotent-replayed" not in {k.lower() for k in response.headers}
    ):
        OUTCOMES.labels(outcome=content.outcome).inc()
    return response


async def log_unexpected(exc: Exception, scope: Scope) -> None:
    """App-level ``after_exception`` hook: refusals (4xx) are the caller's business and are in
    the access log; anything else is ours and is logged with its traceback."""
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return
    if isinstance(exc, ServiceError) and exc.status < 500:
        return
    where = f"{scope.get('method', '')} {scope.get('path', '')}"
    if isinstance(exc, ServiceError):
        log.warning("%s: %s", where, exc.message)
        return
    log.error("%s failed: %s", where, type(exc).__name__, exc_info=exc)


class ServiceCollector(Collector):
    """State of one app's services, read at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Any]:
        services = self.services
        reader = services.reader
        yield CounterMetricFamily(
            "nextbest_warehouse_cache_hits", "Warehouse reads served from memory", reader.hits
        )
        yield CounterMetricFamily(
            "nextbest_warehouse_cache_misses",
            "Warehouse reads that asked the database",
            reader.misses,
        )
        reads = reader.hits + reader.misses
        yield GaugeMetricFamily(
            "nextbest_warehouse_cache_hit_ratio",
            "Share of warehouse reads served from memory since start",
            reader.hits / reads if reads else 0.0,
        )
        worker = services.worker
        yield CounterMetricFamily(
            "nextbest_provisioning_delivered",
            "Sales this process's outbox worker delivered",
            worker.delivered,
        )
        yield CounterMetricFamily(
            "nextbest_provisioning_failures",
            "Sales this process's outbox worker gave up on (failed)",
            worker.failed,
        )
        yield from self._queue()
        yield from self._data_version()

    def _queue(self) -> Iterator[Any]:
        try:
            with self.services.db.read() as session:
                rows = session.execute(
                    select(ProvisioningJob.status, func.count())
                    .where(ProvisioningJob.status.in_(("pending", "delivering", "failed")))
                    .group_by(ProvisioningJob.status)
                ).all()
        except Exception:
            log.warning("metrics: could not read the provisioning queue", exc_info=True)
            return
        counts = {status: int(n) for status, n in rows}
        yield GaugeMetricFamily(
            "nextbest_provisioning_queue_depth",
            "Accepted sales waiting for provisioning (pending or being delivered)",
            counts.get("pending", 0) + counts.get("delivering", 0),
        )
        yield GaugeMetricFamily(
            "nextbest_provisioning_failed_jobs",
            "Sales provisioning gave up on, waiting for an admin's retry",
            counts.get("failed", 0),
        )

    def _data_version(self) -> Iterator[Any]:
        try:
            active = self.services.reader.active()
        except NoDataLoaded:
            return
        except Exception:
            log.warning("metrics: could not read the active data version", exc_info=True)
            return
        yield GaugeMetricFamily("nextbest_data_version", "Active data version id", active.id)
        if active.loaded_at is not None:
            age = (self.services.clock.now() - active.loaded_at).total_seconds()
            yield GaugeMetricFamily(
                "nextbest_data_version_age_seconds",
                "Seconds since the serving data version was activated",
                max(0.0, age),
            )


def services_registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(services))
    return registry
