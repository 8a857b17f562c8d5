"""Authentication (a bearer key, or a widget page's session cookie) and role guards.

A request with ``Authorization: Bearer <key>`` is authenticated by the key and needs no CSRF
token: a browser never adds that header on its own. A request with only the session cookie
must, if it changes anything (POST, PUT, PATCH, DELETE), also carry the session's CSRF token in
``X-CSRF-Token``. Keys and sessions are read from the database on every request, never cached,
so a revoked key or an ended session fails at once on every node.
"""

from __future__ import annotations

from typing import Any

from litestar.concurrency import sync_to_thread
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from nextbest.clock import Clock
from nextbest.keys import Actor, authenticate
from nextbest.sessions import CSRF_HEADER, SESSION_COOKIE, SessionBook
from nextbest.storage.db import Database

__all__ = ["PUBLIC_PATHS", "KeyAuthMiddleware", "requires"]

# Paths that answer without a key (regexes matched against the path).
PUBLIC_PATHS = ["^/healthz$", "^/schema"]


# Methods that change nothing: a session cookie alone is enough for them.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class KeyAuthMiddleware(AbstractAuthenticationMiddleware):
    """Handlers with ``opt={"exclude_from_auth": True}`` (and PUBLIC_PATHS) need no key."""

    def __init__(
        self,
        app: ASGIApp,
        db: Database,
        clock: Clock,
        sessions: SessionBook | None = None,
        on_loop: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """``on_loop``: read the key on the event loop rather than in a worker thread
        (``Settings.decision_reads_on_loop``; default: on the loop for SQLite only)."""
        super().__init__(app, exclude=PUBLIC_PATHS, **kwargs)
        self.db = db
        self.clock = clock
        self.sessions = sessions
        self.on_loop = db.is_sqlite if on_loop is None else on_loop

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            cookie = connection.cookies.get(SESSION_COOKIE) if self.sessions else None
            if cookie:
                return self._by_session(connection, cookie)
            raise NotAuthorizedException(
                "missing Authorization header: send 'Bearer <key>' "
                "(widget pages: sign in with POST /v1/session)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("Authorization header must be 'Bearer <key>'")
        if self.on_loop:  # a read from the page cache or a fast round trip: no thread hop
            actor = authenticate(self.db, key.strip(), self.clock.now())
        else:  # a network round trip: let the event loop serve others meanwhile
            actor = await sync_to_thread(authenticate, self.db, key.strip(), self.clock.now())
        if actor is None:
            raise NotAuthorizedException(
                "unknown, revoked or expired key", headers={"WWW-Authenticate": "Bearer"}
            )
        return AuthenticationResult(user=actor, auth=actor.key_id)

    def _by_session(
        self, connection: ASGIConnection[Any, Any, Any, Any], cookie: str
    ) -> AuthenticationResult:
        assert self.sessions is not None
        signed_in = self.sessions.authenticate(cookie)
        if signed_in is None:
            raise NotAuthorizedException(
                "session ended, expired or not valid: sign in again (POST /v1/session)"
            )
        method = connection.scope.get("method", "GET")
        if method not in _SAFE_METHODS and not self.sessions.csrf_ok(
            signed_in, connection.headers.get(CSRF_HEADER)
        ):
            raise PermissionDeniedException(
                f"CSRF check failed: a request signed in by cookie that changes something must "
                f"send the {CSRF_HEADER} header with the token POST /v1/session returned"
            )
        return AuthenticationResult(user=signed_in.actor, auth=signed_in)


def requires(*roles: str) -> Any:
    allowed = frozenset(roles)

    # A coroutine: Litestar runs a plain function guard in a worker thread, a thread hop per
    # request for a set lookup (measured: a third of a decision's time under load).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        actor = connection.user
        if not isinstance(actor, Actor) or actor.role not in allowed:
            role = actor.role if isinstance(actor, Actor) else "anonymous"
            raise PermissionDeniedException(
                f"role {role!r} may not do this; allowed: {', '.join(sorted(allowed))}"
            )

    return guard
