"""Widget pages sign in once with a key and then use a cookie (nextbest/sessions.py).

``POST /v1/session`` takes the key in the body (never in a URL), sets a Secure, HttpOnly,
SameSite=Strict session cookie and returns the CSRF token that every unsafe request made with
the cookie must echo in ``X-CSRF-Token``. ``DELETE /v1/session`` signs out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.params import JSONBody
from msgspec import Meta

from nextbest.api.auth import requires
from nextbest.api.services import EVERYONE, ServicesDep
from nextbest.keys import Actor
from nextbest.sessions import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, SignedIn

__all__ = ["ROUTES", "SessionController", "SessionOut", "SessionRequest"]


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: Annotated[str, Meta(min_length=1, max_length=200, description="An API key")]


class SessionOut(msgspec.Struct, kw_only=True):
    csrf_token: str  # send it back as X-CSRF-Token on POST/PUT/PATCH/DELETE
    csrf_header: str
    expires_at: datetime
    user: str
    role: str
    store: str | None
    team: str | None


def _cookies(session_value: str, csrf_token: str, max_age: int) -> list[Cookie]:
    common: dict[str, Any] = {"path": "/", "secure": True, "samesite": "strict"}
    return [
        Cookie(key=SESSION_COOKIE, value=session_value, httponly=True, max_age=max_age, **common),
        # Not HttpOnly: the page reads it after a reload to fill the header.
        Cookie(key=CSRF_COOKIE, value=csrf_token, httponly=False, max_age=max_age, **common),
    ]


class SessionController(Controller):
    """One controller for both methods: Litestar 2.25 wraps a sync_to_thread handler twice
    when another handler for the same path is registered after it as a separate function
    (the second registration re-registers the first), and it then returns a coroutine."""

    path = "/v1/session"

    @post(
        summary="Sign a widget page in with a key: sets the session cookie, returns the CSRF token",
        tags=["session"],
        opt={"exclude_from_auth": True},
        sync_to_thread=True,
        status_code=201,
    )
    def sign_in(
        self, data: JSONBody[SessionRequest], services: ServicesDep
    ) -> Response[SessionOut]:
        opened = services.sessions.open(data.key)
        if opened is None:
            raise NotAuthorizedException("unknown, revoked or expired key")
        actor = opened.actor
        max_age = max(1, int((opened.expires_at - services.clock.now()).total_seconds()))
        return Response(
            SessionOut(
                csrf_token=opened.csrf_token,
                csrf_header=CSRF_HEADER,
                expires_at=opened.expires_at,
                user=actor.user_id,
                role=actor.role,
                store=actor.store_id,
                team=actor.team_id,
            ),
            status_code=201,
            cookies=_cookies(opened.cookie, opened.csrf_token, max_age),
            headers={"Cache-Control": "no-store"},
        )

    @delete(
        summary="Sign out: the session stops working at once, on every node",
        tags=["session"],
        opt=requires(*EVERYONE),
        sync_to_thread=True,
        status_code=204,
    )
    def sign_out(self, request: Request[Actor, Any, Any], services: ServicesDep) -> Response[None]:
        signed_in = request.auth
        if isinstance(signed_in, SignedIn):
            services.sessions.end(signed_in.id_hash)
        return Response(None, status_code=204, cookies=_cookies("", "", 0))


ROUTES = [SessionController]
