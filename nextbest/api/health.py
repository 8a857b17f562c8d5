"""Liveness and readiness."""

from __future__ import annotations

from litestar import get

from nextbest.wire import Health

__all__ = ["ROUTES"]


@get("/healthz", summary="Alive", tags=["operations"], sync_to_thread=False)
def healthz() -> Health:
    return Health(status="ok")


ROUTES = [healthz]
