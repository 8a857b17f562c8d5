"""Build the ASGI app from settings (nothing is read from the environment here)."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from nextbest import __version__
from nextbest.api import decisions, health, sales
from nextbest.api.auth import KeyAuthMiddleware
from nextbest.api.errors import exception_handlers
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
    return Litestar(
        route_handlers=[*health.ROUTES, *decisions.ROUTES, *sales.ROUTES],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "actor": Provide(provide_actor, sync_to_thread=False),
        },
        middleware=[
            ServerTimingMiddleware,
            DefineMiddleware(KeyAuthMiddleware, db=db, clock=clock),
        ],
        exception_handlers=exception_handlers,
        openapi_config=openapi if settings.docs_enabled else None,
        state=State({"services": services}),
        request_max_body_size=settings.max_body_bytes,
        on_startup=[services.start_worker],
        on_shutdown=[services.stop_worker, db.dispose],
        debug=False,
    )
