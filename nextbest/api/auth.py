"""Who is calling: a bearer key, or a widget page's session cookie, and what a route allows.

A request with ``Authorization: Bearer <key>`` is authenticated by the key and needs no CSRF
token: a browser never adds that header on its own. A request with only the session cookie
must, if it changes anything (POST, PUT, PATCH, DELETE), also carry the session's CSRF token in
``X-CSRF-Token``. Keys and sessions are read from the database on every request, never cached,
so a revoked key or an ended session fails at once on every node. The front door
(front_door.py) calls ``Authenticator`` for every route not marked public and checks the
route's ``requires(...)`` roles.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

from litestar.concurrency import sync_to_thread
from litestar.types import Scope

from nextbest.clock import Clock
from nextbest.keys import Actor, authenticate
from nextbest.sessions import CSRF_HEADER, SESSION_COOKIE, SessionBook
from nextbest.storage.db import Database

__all__ = ["PUBLIC_PATHS", "Authenticator", "Refused", "requires"]

# Paths that answer without a key (regexes matched against the path); handlers opt out with
# ``opt={"exclude_from_auth": True}``.
PUBLIC_PATHS = re.compile(r"^/healthz$|^/schema")
# Methods that change nothing: a session cookie alone is enough for them.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def requires(*roles: str) -> dict[str, Any]:
    """A route's ``opt``: only these roles may call it (the front door answers 403 to others)."""
    return {"roles": frozenset(roles)}


class Refused(Exception):
    """What the front door answers instead of the handler."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class Authenticator:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        sessions: SessionBook | None = None,
        on_loop: bool | None = None,
    ) -> None:
        """``on_loop``: read the key on the event loop rather than in a worker thread
        (``Settings.decision_reads_on_loop``; default: on the loop for SQLite only)."""
        self.db = db
        self.clock = clock
        self.sessions = sessions
        self.on_loop = db.is_sqlite if on_loop is None else on_loop

    async def actor(
        self, scope: Scope, method: str, authorization: str, cookie_header: str, csrf: str | None
    ) -> Actor:
        """The caller, also set as the scope's ``user`` and ``auth``; ``Refused`` (401/403)."""
        if not authorization:
            cookie = _cookie(cookie_header, SESSION_COOKIE) if self.sessions else None
            if cookie:
                return self._by_session(scope, method, cookie, csrf)
            raise Refused(
                401,
                "missing Authorization header: send 'Bearer <key>' "
                "(widget pages: sign in with POST /v1/session)",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Refused(401, "Authorization header must be 'Bearer <key>'")
        if self.on_loop:  # a read from the page cache or a fast round trip: no thread hop
            actor = authenticate(self.db, key, self.clock.now())
        else:  # a network round trip: let the event loop serve others meanwhile
            actor = await sync_to_thread(authenticate, self.db, key, self.clock.now())
        if actor is None:
            raise Refused(401, "unknown, revoked or expired key", {"WWW-Authenticate": "Bearer"})
        scope["user"] = actor
        scope["auth"] = actor.key_id
        return actor

    def _by_session(self, scope: Scope, method: str, cookie: str, csrf: str | None) -> Actor:
        assert self.sessions is not None
        signed_in = self.sessions.authenticate(cookie)
        if signed_in is None:
            raise Refused(
                401, "session ended, expired or not valid: sign in again (POST /v1/session)"
            )
        if method not in _SAFE_METHODS and not self.sessions.csrf_ok(signed_in, csrf):
            raise Refused(
                403,
                f"CSRF check failed: a request signed in by cookie that changes something must "
                f"send the {CSRF_HEADER} header with the token POST /v1/session returned",
            )
        scope["user"] = signed_in.actor
        scope["auth"] = signed_in
        return signed_in.actor


def _cookie(header: str, name: str) -> str | None:
    if not header or name not in header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header carries no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None
