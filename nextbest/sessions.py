"""Widget pages' sessions: a key typed once, then a signed, HttpOnly cookie instead of the key.

The cookie holds a random session id and its HMAC under ``NEXTBEST_SESSION_SECRET``; the
database holds only the id's hash, the key it was opened with, when it ends, and the hash of
the CSRF token handed out with it. Every request re-reads the row joined to its key, so
signing out, a revoked key or an expired key ends the session at once on every node.

Why both a signature and a table: the signature turns away forged cookies without touching the
database; the table makes signing out (and revoking) real rather than a cookie deleted in one
browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import delete, or_, update

from nextbest.clock import Clock
from nextbest.keys import Actor, authenticate
from nextbest.storage.db import Database
from nextbest.storage.raw import fetch, utc
from nextbest.storage.security_models import WebSession

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Opened",
    "SessionBook",
    "SignedIn",
    "purge_sessions",
]

# `__Host-`: the browser accepts the cookie only with Secure, Path=/ and no Domain, so no
# sibling host or plain-HTTP page can plant or overwrite it.
SESSION_COOKIE = "__Host-nextbest_session"
# Readable by the page (not HttpOnly), so a reloaded page can send it back as the header.
CSRF_COOKIE = "__Host-nextbest_csrf"
CSRF_HEADER = "X-CSRF-Token"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    cookie: str
    csrf_token: str
    expires_at: datetime
    actor: Actor


class SignedIn(msgspec.Struct, frozen=True, kw_only=True):
    """A request's valid session: who, and what its CSRF token must hash to."""

    actor: Actor
    id_hash: str
    csrf_hash: str
    expires_at: datetime


_SESSION_SQL = (
    "SELECT s.expires_at, s.ended_at, s.csrf_hash, "
    "k.id, k.user_id, k.role, k.store_id, k.team_id, k.expires_at, k.revoked_at "
    "FROM web_sessions s JOIN api_keys k ON k.id = s.key_id WHERE s.id_hash = ?"
)


class SessionBook:
    def __init__(self, db: Database, clock: Clock, secret: str, ttl: timedelta) -> None:
        self.db = db
        self.clock = clock
        self._secret = secret.encode("utf-8")
        self.ttl = ttl

    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._secret, session_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def _session_id(self, cookie: str) -> str | None:
        """The session id of a cookie whose signature holds, else None."""
        session_id, dot, signature = cookie.partition(".")
        if not dot or not session_id.isascii() or not signature.isascii():
            return None
        if not hmac.compare_digest(self._sign(session_id), signature):
            return None
        return session_id

    def open(self, key: str) -> Opened | None:
        """Sign in with a key; None if the key is unknown, revoked or expired."""
        now = self.clock.now()
        actor = authenticate(self.db, key, now)
        if actor is None:
            return None
        expires_at = now + self.ttl
        with self.db.read() as session:
            key_expiry = fetch(
                session, "SELECT expires_at FROM api_keys WHERE id = ?", (actor.key_id,)
            )
        if key_expiry and key_expiry[0][0] is not None:
            expires_at = min(expires_at, utc(key_expiry[0][0]))
        session_id = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        with self.db.write() as session:
            session.add(
                WebSession(
                    id_hash=_digest(session_id),
                    key_id=actor.key_id,
                    csrf_hash=_digest(csrf_token),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return Opened(
            cookie=f"{session_id}.{self._sign(session_id)}",
            csrf_token=csrf_token,
            expires_at=expires_at,
            actor=actor,
        )

    def authenticate(self, cookie: str) -> SignedIn | None:
        """The session behind a cookie, if it is signed, live, and its key still valid."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        id_hash = _digest(session_id)
        with self.db.raw_read() as reads:
            rows = fetch(reads, _SESSION_SQL, (id_hash,))
        if not rows:
            return None
        (
            expires_at,
            ended_at,
            csrf_hash,
            key_id,
            user_id,
            role,
            store_id,
            team_id,
            key_expires_at,
            revoked_at,
        ) = rows[0]
        now = self.clock.now()
        if ended_at is not None or utc(expires_at) <= now:
            return None
        if revoked_at is not None or (key_expires_at is not None and utc(key_expires_at) <= now):
            return None
        actor = Actor(key_id=key_id, user_id=user_id, role=role, store_id=store_id, team_id=team_id)
        return SignedIn(
            actor=actor, id_hash=id_hash, csrf_hash=csrf_hash, expires_at=utc(expires_at)
        )

    @staticmethod
    def csrf_ok(signed_in: SignedIn, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(_digest(token), signed_in.csrf_hash)

    def end(self, id_hash: str) -> None:
        """Sign out: the session fails from the next request on, on every node."""
        now = self.clock.now()
        with self.db.write() as session:
            session.execute(
                update(WebSession)
                .where(WebSession.id_hash == id_hash, WebSession.ended_at.is_(None))
                .values(ended_at=now)
            )


def purge_sessions(db: Database, now: datetime) -> int:
    """Delete sessions that have ended or expired; returns how many."""
    with db.write() as session:
        result = session.execute(
            delete(WebSession).where(
                or_(WebSession.ended_at.is_not(None), WebSession.expires_at <= now)
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
