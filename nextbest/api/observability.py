"""Watching the server: request ids, access log lines, Prometheus metrics, unexpected errors.

- Every response carries ``X-Request-ID`` (the caller's, if it sent a sane one, else a new
  one); every log line written while serving the request carries it too (nextbest/logs.py).
- One access line per request (logger ``nextbest.access``): method, path, status, duration,
  key, request id. Numbers in the path or query are masked by the formatter.
- Request latency per endpoint (path templates, not raw paths, so a decision id never becomes
  a label), kept by the front door (front_door.py) in ``HttpMetrics``. Decisions and outcomes
  are counted from what the handlers return; queue depth, cache hits and the data version's age
  are read from the live services when Prometheus scrapes.
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
from litestar.types import Message, Scope
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from nextbest.errors import ServiceError
from nextbest.keys import Actor
from nextbest.storage.models import ProvisioningJob
from nextbest.storage.warehouse import NoDataLoaded
from nextbest.wire import DecisionResponse, OutcomeResponse

if TYPE_CHECKING:
    from nextbest.api.services import Services

__all__ = [
    "DECISIONS",
    "FRONT_DOOR",
    "OUTCOMES",
    "REQUEST_ID",
    "REQUEST_ID_HEADER",
    "STARTED",
    "STATUS",
    "HttpMetrics",
    "ServiceCollector",
    "access_line",
    "count_results",
    "log_unexpected",
    "sane_request_id",
    "services_registry",
    "stamp_response",
]

log = logging.getLogger("nextbest.api")
access_log = logging.getLogger("nextbest.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Keys in the ASGI scope: the request's id, its start, its status, and that the front door
# (nextbest/api/front_door.py) saw it.
REQUEST_ID = "nextbest.request_id"
STARTED = "nextbest.started"
STATUS = "nextbest.status"
FRONT_DOOR = "nextbest.front_door"

# Counted in this process; Prometheus sums processes (PROMETHEUS_MULTIPROC_DIR with workers).
DECISIONS = Counter("nextbest_decisions", "Decisions served", ["channel", "known", "offered"])
OUTCOMES = Counter("nextbest_outcomes", "Outcomes recorded (replays not counted)", ["outcome"])

# Request latency buckets, in seconds: a decision takes about a millisecond.
LATENCY_BUCKETS: list[str | float] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]  # fmt: skip
_LABELS = ["method", "path", "status_code", "app_name"]
_REQUESTS = Counter("nextbest_http_requests", "Total requests", _LABELS)
_DURATION = Histogram(
    "nextbest_http_request_duration_seconds",
    "Request duration, in seconds",
    _LABELS,
    buckets=LATENCY_BUCKETS,
)
_IN_PROGRESS = Gauge(
    "nextbest_http_requests_in_progress",
    "Total requests currently in progress",
    _LABELS,
    multiprocess_mode="livesum",
)
_ERRORS = Counter("nextbest_http_requests_error", "Total errors in requests", _LABELS)


class HttpMetrics:
    """Requests per endpoint (by path template, so a decision id never becomes a label),
    method and status: count, latency, in progress, 5xx. The names and labels of Litestar's
    Prometheus middleware, which this replaces (it built a Request and looked each metric's
    labels up anew on every request); here each label set's series is looked up once."""

    def __init__(self, app_name: str = "nextbest") -> None:
        self.app_name = app_name
        self._done: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._running: dict[tuple[str, str], Any] = {}

    def started(self, method: str, path: str) -> None:
        gauge = self._running.get((method, path))
        if gauge is None:
            gauge = self._running[method, path] = _IN_PROGRESS.labels(
                method, path, 200, self.app_name
            )
        gauge.inc()

    def ended(self, method: str, path: str, status: int | None) -> None:
        self._running[method, path].dec()
        if status is None:  # no response was sent: the outer handler answers 500
            self.observe(method, path, 500, 0.0)

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        series = self._done.get((method, path, status))
        if series is None:
            labels = (method, path, status, self.app_name)
            series = self._done[method, path, status] = (
                _REQUESTS.labels(*labels),
                _DURATION.labels(*labels),
                _ERRORS.labels(*labels),
            )
        series[0].inc()
        series[1].observe(seconds)
        if status >= 500:
            series[2].inc()


def sane_request_id(sent: str | None) -> str | None:
    """The caller's request id, if it is one we may repeat in headers and logs."""
    return sent if sent and _SANE_ID.fullmatch(sent) else None


def _state(scope: Scope) -> dict[str, Any]:
    return cast("dict[str, Any]", scope)


def _new_request_id(scope: Scope) -> str:
    sent = Headers.from_scope(scope).get(REQUEST_ID_HEADER.lower())
    request_id = sane_request_id(sent) or uuid.uuid4().hex
    _state(scope)[REQUEST_ID] = request_id
    return request_id


async def stamp_response(message: Message, scope: Scope) -> None:
    """App-level ``before_send`` hook, for the responses the front door never saw (404 and 405
    from the router): the request id header, and the access line when the body is done.
    (Hooks are async on purpose: Litestar runs a sync hook in a worker thread.)"""
    if scope["type"] != ScopeType.HTTP:
        return
    state = _state(scope)
    if FRONT_DOOR in state:
        return
    if message["type"] == "http.response.start":
        request_id = state.get(REQUEST_ID) or _new_request_id(scope)
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
        state[STATUS] = message["status"]
    elif (
        message["type"] == "http.response.body"
        and not message.get("more_body", False)
        and access_log.isEnabledFor(logging.INFO)
    ):
        access_line(scope, state)


def access_line(scope: Scope, state: dict[str, Any]) -> None:
    """The request's one access log line (numbers in the path masked by the formatter)."""
    started = state.get(STARTED)
    duration_ms = round((time.perf_counter() - started) * 1000, 3) if started else None
    query = scope.get("query_string", b"")
    # Decoded, so a number written 139%200000%200001 is seen (and masked) as one.
    path = scope["path"] + (f"?{unquote_plus(query.decode('latin-1'))}" if query else "")
    user = state.get("user")
    status = state.get(STATUS, 0)
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
            "request_id": state.get(REQUEST_ID),
        },
    )


_DECISION_SERIES: dict[tuple[str, bool, bool], Any] = {}


async def count_results(response: Response[Any]) -> Response[Any]:
    """App-level ``after_request`` hook: count what the handlers return (a handler or router
    with its own after_request hook replaces this one for its routes)."""
    content = getattr(response, "content", None)  # a file response has none
    if isinstance(content, DecisionResponse):
        key = (content.channel, content.known, bool(content.offers))
        series = _DECISION_SERIES.get(key)
        if series is None:
            series = _DECISION_SERIES[key] = DECISIONS.labels(
                channel=key[0], known=str(key[1]).lower(), offered=str(key[2]).lower()
            )
        series.inc()
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
