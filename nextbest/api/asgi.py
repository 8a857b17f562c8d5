"""ASGI entry point for servers that import an app factory (uvicorn --factory, granian)."""

from __future__ import annotations

from litestar import Litestar

from nextbest.api.app import create_app
from nextbest.settings import Settings

__all__ = ["app_from_env"]


def app_from_env() -> Litestar:
    return create_app(Settings.from_env())
