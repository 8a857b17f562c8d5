"""What a request may be: how many look-ups a key makes per minute, what a body must say it
is, and which characters no value may hold.

The rate limit is Litestar's RateLimitMiddleware keyed by the API key (not the address: a
store's clerks share one NAT), applied to look-ups only (``POST /v1/decisions`` and any handler
marked ``opt={"lookup": True}``), so a leaked or misused clerk key cannot walk the subscriber
base. Counts live in the ``rate_limit`` store: per process by default, Redis when
``NEXTBEST_REDIS_URL`` is set, so every node counts against the same bound.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from time import time
from typing import Any

from litestar import Request
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.stores.base import Store
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from nextbest.keys import Actor
from nextbest.settings import Settings

__all__ = [
    "LOOKUP_ROUTES",
    "InputRulesMiddleware",
    "LookupRateLimitMiddleware",
    "close_stores",
    "is_lookup",
    "rate_limit_config",
    "rate_limit_stores",
]

# (method, path template) of the built-in look-ups; other handlers opt in with opt={"lookup": True}.
LOOKUP_ROUTES = frozenset({("POST", "/v1/decisions")})
STORE_NAME = "rate_limit"


def is_lookup(request: Request[Any, Any, Any]) -> bool:
    handler = request.scope.get("route_handler")
    if handler is not None and handler.opt.get("lookup"):
        return True
    return (request.method, request.scope.get("path_template", "")) in LOOKUP_ROUTES


def key_identifier(request: Request[Any, Any, Any]) -> str:
    user = request.scope.get("user")
    if isinstance(user, Actor):
        return f"key:{user.key_id}"
    client = request.client
    return f"addr:{client.host if client else 'unknown'}"


class LookupRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's fixed-window limiter, answering 429 with ``Retry-After`` (the stock one sends
    only the RateLimit-* draft headers) and a sentence saying what the limit is."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope)
        if not await self.should_check_request(request=request):
            await self.app(scope, receive, send)
            return
        store = self.config.get_store_from_app(app)
        key = self.cache_key_from_request(request)
        async with self._lock:
            window = await self.retrieve_cached_history(key, store)
            if len(window.history) >= self.max_requests:
                wait = max(1, window.reset - int(time()))
                headers = self.create_response_headers(cache_object=window)
                headers["Retry-After"] = str(wait)
                raise TooManyRequestsException(
                    detail=(
                        f"rate limit: at most {self.max_requests} look-ups per {self.unit} "
                        f"for this key; try again in {wait} s"
                    ),
                    headers=headers,
                )
            await self.set_cached_history(key=key, cache_object=window, store=store)
        await self.app(scope, receive, self.create_send_wrapper(send=send, cache_object=window))


def rate_limit_config(settings: Settings) -> RateLimitConfig | None:
    """None when NEXTBEST_RATE_LIMIT_PER_MINUTE is 0 (load tests)."""
    if settings.rate_limit_per_minute == 0:
        return None
    return RateLimitConfig(
        rate_limit=("minute", settings.rate_limit_per_minute),
        identifier_for_request=key_identifier,
        check_throttle_handler=is_lookup,
        middleware_class=LookupRateLimitMiddleware,
        store=STORE_NAME,
    )


def rate_limit_stores(settings: Settings) -> dict[str, Store]:
    """Redis when configured; otherwise Litestar makes a memory store per process."""
    if not settings.redis_url:
        return {}
    from litestar.stores.redis import RedisStore

    return {
        STORE_NAME: RedisStore.with_client(
            url=settings.redis_url, namespace=f"{settings.redis_namespace}:{STORE_NAME}"
        )
    }


def close_stores(stores: dict[str, Store]) -> Callable[[], Awaitable[None]]:
    """An on_shutdown hook closing the stores' connections (Litestar leaves that to us)."""

    async def close() -> None:
        for store in stores.values():
            await store.__aexit__(None, None, None)

    return close


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# NUL, the one character JSON can carry (as \u0000) that PostgreSQL text cannot store: an odd
# number of backslashes before u0000 is an escape, an even number is literal backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_REFUSED = "NUL characters (\\u0000) are not allowed in any value"


class InputRulesMiddleware:
    """What every request must be, checked before anything reads it:

    - a body must be labelled JSON (415 otherwise). Litestar would parse a text/plain body as
      JSON; refusing it also keeps cross-site "simple" form posts away from every endpoint;
    - no NUL character in the path, the query or a JSON string (400). No field may hold one,
      and PostgreSQL would refuse to store it mid-transaction (a 500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            raise HTTPException(status_code=400, detail=_NUL_REFUSED)
        if scope["method"] not in _UNSAFE or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        content_type = Headers.from_scope(scope).get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            got = repr(content_type[:100]) if content_type else "none"
            raise HTTPException(
                status_code=415, detail=f"Content-Type: expected application/json, got {got}"
            )
        await self.app(scope, _refusing_nul(receive), send)


def _has_body(scope: Scope) -> bool:
    headers = Headers.from_scope(scope)
    length = headers.get("content-length")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    return chunked or (length is not None and length.strip() not in ("", "0"))


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
