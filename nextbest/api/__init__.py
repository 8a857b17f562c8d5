"""The HTTP layer: thin Litestar controllers over the services."""

from nextbest.api.app import create_app

__all__ = ["create_app"]
