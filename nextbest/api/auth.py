"""Bearer-key authentication and role guards."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from nextbest.clock import Clock
from nextbest.keys import Actor, authenticate
from nextbest.storage.db import Database

__all__ = ["PUBLIC_PATHS", "KeyAuthMiddleware", "requires"]

# Paths that answer without a key (regexes matched against the path).
PUBLIC_PATHS = ["^/healthz$", "^/schema"]


class KeyAuthMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, db: Database, clock: Clock, **kwargs: Any) -> None:
        super().__init__(app, exclude=PUBLIC_PATHS, **kwargs)
        self.db = db
        self.clock = clock

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            raise NotAuthorizedException("missing Authorization header: send 'Bearer <key>'")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("Authorization header must be 'Bearer <key>'")
        actor = authenticate(self.db, key.strip(), self.clock.now())
        if actor is None:
            raise NotAuthorizedException("unknown, revoked or expired key")
        return AuthenticationResult(user=actor, auth=actor.key_id)


def requires(*roles: str) -> Any:
    allowed = frozenset(roles)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        actor = connection.user
        if not isinstance(actor, Actor) or actor.role not in allowed:
            role = actor.role if isinstance(actor, Actor) else "anonymous"
            raise PermissionDeniedException(
                f"role {role!r} may not do this; allowed: {', '.join(sorted(allowed))}"
            )

    return guard
