"""Build the ASGI app from settings (nothing is read from the environment here)."""

from __future__ import annotations

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
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
from nextbest.api.auth import Authenticator
from nextbest.api.errors import exception_handlers
from nextbest.api.front_door import FrontDoor
from nextbest.api.limits import limiter_for
from nextbest.api.observability import (
    HttpMetrics,
    count_results,
    log_unexpected,
    services_registry,
    stamp_response,
)
from nextbest.api.services import Services, provide_actor, provide_services
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
    limiter = limiter_for(settings)
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
            *decisions.routes(
                services,
                on_loop=settings.decision_reads_on_loop(),
                group_commit=settings.group_commit_on(),
            ),
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
        # One layer before every handler: request id, authentication, rate limit, input rules,
        # roles, timing, metrics and the access line (api/front_door.py, docs/security.md).
        middleware=[
            DefineMiddleware(
                FrontDoor,
                authenticator=Authenticator(
                    db,
                    clock,
                    sessions=services.sessions,
                    on_loop=settings.decision_reads_on_loop(),
                ),
                limiter=limiter,
                metrics=HttpMetrics() if settings.metrics_enabled else None,
            ),
        ],
        before_send=[stamp_response],
        after_request=count_results,
        after_exception=[log_unexpected],
        # Logging is configured for the process (nextbest/logs.py, by `nextbest serve`); an app
        # must not replace the root logger's handlers when it is built.
        logging_config=None,
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
            *([limiter.close] if limiter else []),
            db.dispose,
        ],
        debug=False,
    )
