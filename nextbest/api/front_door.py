"""The front door: the one middleware every routed request passes, before its handler runs.

In order: a request id (the caller's, if sane) for the response and every log line; NUL
characters refused in the path and query; the caller authenticated (a bearer key, or a widget
page's session cookie with its CSRF token for anything that changes something); look-ups
counted against the key's rate limit; a body that must say it is JSON; the route's roles. On
the way out: ``X-Request-ID``, ``Server-Timing: app;dur=<ms>``, the rate limit's headers,
Prometheus' request metrics and one access line.

One layer instead of seven (request context, timing, Litestar's Prometheus, authentication,
rate limit and input-rules middleware, the guards, and an exception layer between them): each
was an ASGI wrapper re-parsing the headers or building a Request, together ~300 us of a
decision measured in-process (docs/performance.md). What it refuses it answers itself, in the
API's error shape, so the refusal is timed, counted and logged like any other response.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from nextbest.api.auth import PUBLIC_PATHS, Authenticator, Refused
from nextbest.api.errors import error_content
from nextbest.api.limits import Limiter
from nextbest.api.observability import (
    FRONT_DOOR,
    REQUEST_ID,
    STARTED,
    STATUS,
    HttpMetrics,
    access_line,
    sane_request_id,
)
from nextbest.keys import Actor
from nextbest.logs import request_id_var
from nextbest.sessions import CSRF_HEADER

__all__ = ["FrontDoor"]

log = logging.getLogger("nextbest.api")
access_log = logging.getLogger("nextbest.access")

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# NUL, the one character JSON can carry (as \u0000) that PostgreSQL text cannot store: an odd
# number of backslashes before u0000 is an escape, an even number is literal backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_REFUSED = "NUL characters (\\u0000) are not allowed in any value"
_ENCODE = msgspec.json.Encoder()
_CSRF_HEADER = CSRF_HEADER.lower().encode()


class _Rules(msgspec.Struct, frozen=True):
    public: bool
    roles: frozenset[str] | None
    lookup: bool
    metered: bool  # counted in the request metrics (not /metrics itself)


class FrontDoor:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        limiter: Limiter | None = None,
        metrics: HttpMetrics | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter
        self.metrics = metrics
        self._rules: dict[int, _Rules] = {}

    def _rules_of(self, scope: Scope) -> _Rules:
        handler = scope.get("route_handler")
        rules = self._rules.get(id(handler))
        if rules is None:
            opt = handler.opt if handler is not None else {}
            path = scope.get("path_template") or scope["path"]
            rules = _Rules(
                public=bool(opt.get("exclude_from_auth")) or bool(PUBLIC_PATHS.search(path)),
                roles=opt.get("roles"),
                lookup=bool(opt.get("lookup")),
                metered=path != "/metrics",
            )
            if handler is not None:  # without a handler the path decides: not cached
                self._rules[id(handler)] = rules
        return rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope  # type: ignore[assignment]
        state[STARTED] = started
        state[FRONT_DOOR] = True
        headers = _Headers(scope["headers"])
        request_id = sane_request_id(headers.request_id) or os.urandom(16).hex()
        state[REQUEST_ID] = request_id
        request_id_var.set(request_id)
        rules = self._rules_of(scope)
        method = scope["method"]
        path = scope.get("path_template") or scope["path"]
        metrics = self.metrics if rules.metered else None
        if metrics is not None:
            metrics.started(method, path)
        extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state[STATUS] = message["status"]
                elapsed = (time.perf_counter() - started) * 1000
                message["headers"] = [
                    *message.get("headers", ()),
                    *extra,
                    (b"server-timing", f"app;dur={elapsed:.3f}".encode()),
                ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                self._finished(scope, state, metrics, method, path, started)
            await send(message)

        try:
            try:
                await self._admit(scope, method, headers, rules, extra)
            except Refused as refused:
                await _answer(send_wrapper, refused.status, refused.detail, refused.headers)
                return
            except HTTPException as exc:  # raised by what the checks call (sessions)
                await _answer(send_wrapper, exc.status_code, str(exc.detail), exc.headers)
                return
            except Exception as exc:  # the database is away, or a bug: a 500, logged
                log.error("%s %s: checking the caller failed", method, path, exc_info=exc)
                await _answer(
                    send_wrapper,
                    500,
                    "internal error; the request was not completed and nothing was recorded",
                )
                return
            checked = _refusing_nul(receive) if _has_body(method, headers) else receive
            await self.app(scope, checked, send_wrapper)
        finally:
            if metrics is not None:
                metrics.ended(method, path, state.get(STATUS))

    async def _admit(
        self,
        scope: Scope,
        method: str,
        headers: _Headers,
        rules: _Rules,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        """Raise ``Refused`` unless the request may reach its handler."""
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            raise Refused(400, _NUL_REFUSED)
        actor: Actor | None = None
        if not rules.public:
            actor = await self.authenticator.actor(
                scope, method, headers.authorization, headers.cookie, headers.csrf
            )
            if rules.lookup and self.limiter is not None:
                verdict = await self.limiter.hit(f"key:{actor.key_id}")
                if not verdict.allowed:
                    raise Refused(
                        429,
                        f"rate limit: at most {verdict.limit} look-ups per minute for this key; "
                        f"try again in {verdict.retry_after} s",
                        {**verdict.headers(), "Retry-After": str(verdict.retry_after)},
                    )
                extra.extend((k.lower().encode(), v.encode()) for k, v in verdict.headers().items())
        if method in _UNSAFE_METHODS and _has_body(method, headers):
            content_type = headers.content_type
            media = content_type.split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                got = repr(content_type[:100]) if content_type else "none"
                raise Refused(415, f"Content-Type: expected application/json, got {got}")
        if rules.roles is not None and not rules.public:
            assert actor is not None
            if actor.role not in rules.roles:
                raise Refused(
                    403,
                    f"role {actor.role!r} may not do this; "
                    f"allowed: {', '.join(sorted(rules.roles))}",
                )

    def _finished(
        self,
        scope: Scope,
        state: dict[str, Any],
        metrics: HttpMetrics | None,
        method: str,
        path: str,
        started: float,
    ) -> None:
        status = state.get(STATUS, 0)
        if metrics is not None:
            metrics.observe(method, path, status, time.perf_counter() - started)
        if access_log.isEnabledFor(logging.INFO):
            access_line(scope, state)


class _Headers:
    """The few request headers the front door reads, found in one pass over the list."""

    __slots__ = (
        "authorization",
        "content_length",
        "content_type",
        "cookie",
        "csrf",
        "request_id",
        "transfer_encoding",
    )

    def __init__(self, raw: Any) -> None:
        self.authorization = ""
        self.content_length: str | None = None
        self.content_type = ""
        self.cookie = ""
        self.csrf: str | None = None
        self.request_id: str | None = None
        self.transfer_encoding = ""
        for name, value in raw:
            if name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name == b"content-length":
                self.content_length = value.decode("latin-1")
            elif name == b"x-request-id":
                self.request_id = value.decode("latin-1")
            elif name == b"cookie":
                self.cookie = value.decode("latin-1")
            elif name == _CSRF_HEADER:
                self.csrf = value.decode("latin-1")
            elif name == b"transfer-encoding":
                self.transfer_encoding = value.decode("latin-1")


def _has_body(method: str, headers: _Headers) -> bool:
    if method not in _UNSAFE_METHODS:
        return False
    if "chunked" in headers.transfer_encoding.lower():
        return True
    length = headers.content_length
    return length is not None and length.strip() not in ("", "0")


def _refusing_nul(receive: Receive) -> Receive:
    """``receive`` that raises 400 on a JSON-escaped NUL, also one split across chunks."""
    tail = b""

    async def checked() -> ReceiveMessage:
        nonlocal tail
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            seen = tail + chunk
            if _JSON_NUL.search(seen):
                raise HTTPException(status_code=400, detail=_NUL_REFUSED)
            tail = seen[-16:]
        return message

    return checked


async def _answer(
    send: Callable[[Message], Awaitable[None]],
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    body = _ENCODE.encode(error_content(status, detail))
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
