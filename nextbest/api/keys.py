"""Key management for admins: create (the secret is shown once), list (never the secrets),
revoke (takes effect on the next request, on every node)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from nextbest.api.auth import requires
from nextbest.api.services import ActorDep, ServicesDep
from nextbest.errors import BadInput, Conflict, NotFound
from nextbest.keys import create_key, key_of, key_state, list_keys, revoke_key
from nextbest.storage.models import ApiKey

__all__ = ["ROUTES", "KeyController", "KeyCreate", "KeyCreated", "KeyOut"]

RoleName = Literal["clerk", "agent", "supervisor", "admin"]
Scope = Annotated[str, Meta(min_length=1, max_length=40)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: RoleName
    user: Annotated[str, Meta(min_length=1, max_length=64)]
    store: Scope | None = None  # clerks (and supervisors' report scope)
    team: Scope | None = None  # agents (and supervisors' report scope)
    expires_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
    expires_at: datetime | None = None


class KeyOut(msgspec.Struct, kw_only=True):
    id: int
    prefix: str  # the first characters, to tell keys apart; never the secret
    role: str
    user: str
    store: str | None
    team: str | None
    state: str  # active, revoked, expired
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut, kw_only=True):
    key: str  # the secret: shown this once, stored only as a hash


def _out(row: ApiKey, now: datetime) -> KeyOut:
    return KeyOut(
        id=row.id,
        prefix=row.prefix,
        role=row.role,
        user=row.user_id,
        store=row.store_id,
        team=row.team_id,
        state=key_state(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class KeyController(Controller):
    """A controller, not three functions: Litestar 2.25 wraps a sync_to_thread handler twice when
    another handler for the same path is registered after it separately (see api/session.py)."""

    path = "/v1/keys"

    @post(
        summary="Create a key; the secret is in this answer only",
        tags=["keys"],
        opt=requires("admin"),
        sync_to_thread=True,
        status_code=201,
    )
    def create(self, data: JSONBody[KeyCreate], services: ServicesDep) -> KeyCreated:
        now = services.clock.now()
        if data.expires_days is not None and data.expires_at is not None:
            raise BadInput("expires_at: give expires_days or expires_at, not both", "expires_at")
        expires_at = data.expires_at
        if data.expires_days is not None:
            expires_at = now + timedelta(days=data.expires_days)
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise BadInput(
                    "expires_at: needs a UTC offset, e.g. 2027-01-01T00:00:00+08:00", "expires_at"
                )
            if expires_at <= now:
                raise BadInput("expires_at: must be in the future", "expires_at")
        try:
            secret = create_key(
                services.db,
                role=data.role,
                user_id=data.user,
                store_id=data.store,
                team_id=data.team,
                now=now,
                expires_at=expires_at,
            )
        except ValueError as exc:
            field = str(exc).split(":", 1)[0]
            raise BadInput(
                str(exc), field if field in ("user", "store", "team") else None
            ) from None
        row = key_of(services.db, secret)
        assert row is not None
        return KeyCreated(**msgspec.structs.asdict(_out(row, now)), key=secret)

    @get(
        summary="Every key, oldest first (never the secrets)",
        tags=["keys"],
        opt=requires("admin"),
        sync_to_thread=True,
    )
    def list_all(self, services: ServicesDep) -> list[KeyOut]:
        now = services.clock.now()
        return [_out(row, now) for row in list_keys(services.db)]

    @post(
        "/{key_id:int}/revoke",
        summary="Revoke a key and every session opened with it, at once on every node",
        tags=["keys"],
        opt=requires("admin"),
        sync_to_thread=True,
        status_code=200,
    )
    def revoke(self, key_id: FromPath[int], services: ServicesDep, actor: ActorDep) -> KeyOut:
        if key_id == actor.key_id:
            raise Conflict(
                "key_id: that is the key making this request; revoke it with another admin key "
                "or `nextbest keys revoke ID`",
                "key_id",
            )
        row = revoke_key(services.db, key_id, services.clock.now())
        if row is None:
            raise NotFound(f"key {key_id} not found", "key_id")
        return _out(row, services.clock.now())


ROUTES = [KeyController]
