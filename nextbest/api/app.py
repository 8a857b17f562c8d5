"""Build the ASGI app from settings (nothing is read from the environment here)."""

from __future__ import annotations

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware._internal.exceptions import ExceptionHandlerMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from nextbest import __version__
from nextbest.api import (
    campaigns,
    decisions,
    health,
    lookups,
    ops,
    pages,
    reports,
    sales,
    session,
    tasks,
)
from nextbest.api import keys as key_routes
from nextbest.api.auth import KeyAuthMiddleware
from nextbest.api.errors import exception_handlers
from nextbest.api.limits import (
    InputRulesMiddleware,
    close_stores,
    rate_limit_config,
    rate_limit_stores,
)
from nextbest.api.observability import (
    RequestContextMiddleware,
    count_results,
    log_unexpected,
    prometheus_config,
    services_registry,
    stamp_response,
)
from nextbest.api.services import Services, provide_actor, provide_services
from nextbest.api.timing import ServerTimingMiddleware
from nextbest.clock import Clock, SystemClock
from nextbest.provisioning import Provisioner, load_provisioner
from nextbest.settings import Settings
from nextbest.storage.db import Database

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    db: Database | None = None,
    provisioner: Provisioner | None = None,
) -> Litestar:
    clock = clock or SystemClock()
    db = db or Database(settings)
    db.create_schema()
    services = Services(settings, db, clock, provisioner or load_provisioner(settings))
    stores = rate_limit_stores(settings)
    openapi = OpenAPIConfig(
        title="nextbest",
        version=__version__,
        description=(
            "Next-best-offer decisions for store clerks and call-center agents. "
            "Send `Authorization: Bearer <key>`; keys come from `nextbest keys create`."
        ),
        render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        path="/schema",
    )
    origins = settings.cors_origin_list()
    # Another origin's page may call the API with a bearer key (never with the session
    # cookie: it is SameSite=Strict, and credentials are not allowed here).
    cors = (
        CORSConfig(
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After", "Idempotent-Replayed"],
            allow_credentials=False,
            max_age=600,
        )
        if origins
        else None
    )
    return Litestar(
        cors_config=cors,
        route_handlers=[
            *health.ROUTES,
            *decisions.routes(on_loop=settings.decision_reads_on_loop()),
            *sales.ROUTES,
            *reports.ROUTES,
            *ops.ROUTES,
            *session.ROUTES,
            *key_routes.ROUTES,
            *lookups.ROUTES,
            # The screens (console, dashboard, demo CRM) and their browser files.
            *pages.ROUTES,
            *campaigns.ROUTES,
            *tasks.ROUTES,
            *(ops.METRICS_ROUTES if settings.metrics_enabled else []),
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "actor": Provide(provide_actor, sync_to_thread=False),
        },
        # Outermost first. docs/security.md explains the order.
        middleware=[
            ServerTimingMiddleware,
            RequestContextMiddleware,
            *([prometheus_config().middleware] if settings.metrics_enabled else []),
            # Litestar's own error-to-response middleware (not public API; stable across 2.x):
            # errors raised by the middleware below it (401, 403 CSRF, 429, 415) become
            # responses the request-id and metrics middleware above see. Otherwise they meet
            # only the outermost handler, and are counted as 200s with no request id.
            DefineMiddleware(ExceptionHandlerMiddleware, debug=None),
            DefineMiddleware(
                KeyAuthMiddleware,
                db=db,
                clock=clock,
                sessions=services.sessions,
                on_loop=settings.decision_reads_on_loop(),
            ),
            *([limit.middleware] if (limit := rate_limit_config(settings)) else []),
            InputRulesMiddleware,
        ],
        before_send=[stamp_response],
        after_request=count_results,
        after_exception=[log_unexpected],
        # Logging is configured for the process (nextbest/logs.py, by `nextbest serve`); an app
        # must not replace the root logger's handlers when it is built.
        logging_config=None,
        stores=stores,
        exception_handlers=exception_handlers,
        template_config=pages.template_config(),
        openapi_config=openapi if settings.docs_enabled else None,
        state=State({"services": services, "metrics_registry": services_registry(services)}),
        request_max_body_size=settings.max_body_bytes,
        on_startup=[
            services.start_impressions,
            services.start_worker,
            services.start_learning,
            services.start_housekeeping,
        ],
        on_shutdown=[
            services.stop_impressions,
            services.stop_worker,
            services.stop_learning,
            services.stop_housekeeping,
            close_stores(stores),
            db.dispose,
        ],
        debug=False,
    )
