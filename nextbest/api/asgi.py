"""ASGI entry point for servers that import an app factory (uvicorn --factory, granian)."""

from __future__ import annotations

from litestar import Litestar

from nextbest.api.app import create_app
from nextbest.runtime import freeze_startup_objects
from nextbest.settings import Settings

__all__ = ["app_from_env", "server_app"]


def server_app(settings: Settings) -> Litestar:
    """The app as a server process runs it: once started, what start-up built is frozen out
    of the garbage collector's sight (nextbest/runtime.py). Not in ``create_app``: a process
    that builds many apps (the tests) would collect its whole heap at each start."""
    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)
    return app


def app_from_env() -> Litestar:
    return server_app(Settings.from_env())
