"""API keys: who is calling, in which role. Keys are random and stored only as a SHA-256 hash.

A key carries 192 bits of randomness, so a plain (unsalted) hash is safe to store and lets the
lookup be a single indexed equality. That lookup is constant-time with respect to the secret
in the way that matters: the database compares hashes, never the key, and how long an index
search for SHA-256(guess) takes tells an attacker nothing about which characters of a real key
the guess got right (changing one character of the guess changes the whole hash). So there is
no byte-by-byte comparison of secrets to time; the session cookie's signature and the CSRF
token, which are compared in Python, use ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import Select, select

from nextbest.storage.db import Database
from nextbest.storage.models import ApiKey
from nextbest.storage.raw import fetch, utc

__all__ = [
    "ROLES",
    "Actor",
    "ReportScope",
    "Role",
    "authenticate",
    "create_key",
    "get_key",
    "hash_key",
    "key_of",
    "key_state",
    "list_keys",
    "report_scope",
    "revoke_key",
    "team_members",
]

Role = Literal["clerk", "agent", "supervisor", "admin"]
ROLES: tuple[str, ...] = ("clerk", "agent", "supervisor", "admin")


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """The clerk, agent, supervisor or admin behind a request: from the key, never the body."""

    key_id: int
    user_id: str
    role: str
    store_id: str | None = None
    team_id: str | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(
    db: Database,
    *,
    role: str,
    user_id: str,
    now: datetime,
    store_id: str | None = None,
    expires_at: datetime | None = None,
    team_id: str | None = None,
) -> str:
    if role not in ROLES:
        raise ValueError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    if not user_id or len(user_id) > 64 or not user_id.isprintable():
        raise ValueError("user: expected 1-64 printable characters")
    _check_scope(role, store_id, team_id)
    key = f"nb_{role}_{secrets.token_urlsafe(24)}"
    with db.write() as session:
        session.add(
            ApiKey(
                key_hash=hash_key(key),
                prefix=key[: len(role) + 8],
                role=role,
                user_id=user_id,
                store_id=store_id,
                created_at=now,
                expires_at=expires_at,
                team_id=team_id,
            )
        )
    return key


# Which binding each role may carry: a clerk works in a store, an agent in a team; a
# supervisor's reports may be scoped to either; an admin is never bound.
_SCOPES: dict[str, tuple[str, ...]] = {
    "clerk": ("store",),
    "agent": ("team",),
    "supervisor": ("store", "team"),
    "admin": (),
}


def _check_scope(role: str, store_id: str | None, team_id: str | None) -> None:
    for name, value in (("store", store_id), ("team", team_id)):
        if value is None:
            continue
        if name not in _SCOPES[role]:
            allowed = " or ".join(_SCOPES[role]) or "nothing"
            raise ValueError(f"{name}: a {role} key can be bound to {allowed}, not a {name}")
        if not value or len(value) > 40 or not value.isprintable():
            raise ValueError(f"{name}: expected 1-40 printable characters")


_AUTH_SQL = (
    "SELECT id, user_id, role, store_id, expires_at, revoked_at, team_id "
    "FROM api_keys WHERE key_hash = ?"
)


def authenticate(db: Database, key: str, now: datetime) -> Actor | None:
    """Every request asks the database (no cache), so a revoked key fails at once on every
    node; plain SQL keeps that to one indexed lookup."""
    with db.raw_read() as session:
        rows = fetch(session, _AUTH_SQL, (hash_key(key),))
    if not rows:
        return None
    key_id, user_id, role, store_id, expires_at, revoked_at, team_id = rows[0]
    if revoked_at is not None:
        return None
    if expires_at is not None and utc(expires_at) <= now:
        return None
    return Actor(key_id=key_id, user_id=user_id, role=role, store_id=store_id, team_id=team_id)


def list_keys(db: Database) -> list[ApiKey]:
    with db.read() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def get_key(db: Database, key_id: int) -> ApiKey | None:
    with db.read() as session:
        return session.get(ApiKey, key_id)


def key_state(key: ApiKey, now: datetime) -> str:
    """active, revoked or expired."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def revoke_key(db: Database, key_id: int, now: datetime) -> ApiKey | None:
    """Revoke a key (and with it every session opened with it); None if there is no such key.

    Takes effect on the next request on every node: keys are read from the database on every
    request, never cached. Revoking twice keeps the first time."""
    with db.write() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key.revoked_at = now
            session.flush()
        return key


class ReportScope(msgspec.Struct, frozen=True, kw_only=True):
    """The slice of the back-office reports an actor may see (None: no limit on that axis)."""

    store_id: str | None = None
    team_id: str | None = None


def report_scope(actor: Actor) -> ReportScope:
    """A supervisor bound to a store (or team) sees that store's (or team's) rows only; an
    admin, or a supervisor bound to neither, sees everything.

    The HTTP layer passes it to every service a supervisor reads from: the look-up trail
    (nextbest/lookups.py), the reports (nextbest/reports.py), the sales lists
    (nextbest/sales.py) and the dashboard; each applies it to its own rows.
    """
    if actor.role != "supervisor":
        return ReportScope()
    return ReportScope(store_id=actor.store_id, team_id=actor.team_id)


def team_members(team_id: str) -> Select[str]:
    """The user ids of a team, as a subquery: everyone who has held a key bound to it.

    Decisions and sales record the user, not the team, so this is what puts them in a team.
    Revoked and expired keys count: a team's past figures do not change when someone leaves.
    Someone who moved from one team to another counts in both, for every day.
    """
    return select(ApiKey.user_id).where(ApiKey.team_id == team_id)


def key_of(db: Database, key: str) -> ApiKey | None:
    """The stored row of a key (found by its hash)."""
    with db.read() as session:
        return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
