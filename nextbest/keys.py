"""API keys: who is calling, in which role. Keys are random and stored only as a SHA-256 hash.

A key carries 192 bits of randomness, so a plain (unsalted) hash is safe to store and lets the
lookup be a single indexed equality, which is also constant-time with respect to the secret.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import select

from nextbest.storage.db import Database
from nextbest.storage.models import ApiKey
from nextbest.storage.raw import fetch, utc

__all__ = ["ROLES", "Actor", "Role", "authenticate", "create_key", "hash_key", "list_keys"]

Role = Literal["clerk", "agent", "supervisor", "admin"]
ROLES: tuple[str, ...] = ("clerk", "agent", "supervisor", "admin")


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """The clerk, agent, supervisor or admin behind a request: from the key, never the body."""

    key_id: int
    user_id: str
    role: str
    store_id: str | None = None


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
) -> str:
    if role not in ROLES:
        raise ValueError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    if not user_id or len(user_id) > 64:
        raise ValueError("user: expected 1-64 characters")
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
            )
        )
    return key


_AUTH_SQL = (
    "SELECT id, user_id, role, store_id, expires_at, revoked_at FROM api_keys WHERE key_hash = ?"
)


def authenticate(db: Database, key: str, now: datetime) -> Actor | None:
    """Every request asks the database (no cache), so a revoked key fails at once on every
    node; plain SQL keeps that to one indexed lookup."""
    with db.read() as session:
        rows = fetch(session, _AUTH_SQL, (hash_key(key),))
    if not rows:
        return None
    key_id, user_id, role, store_id, expires_at, revoked_at = rows[0]
    if revoked_at is not None:
        return None
    if expires_at is not None and utc(expires_at) <= now:
        return None
    return Actor(key_id=key_id, user_id=user_id, role=role, store_id=store_id)


def list_keys(db: Database) -> list[ApiKey]:
    with db.read() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
