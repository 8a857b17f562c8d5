"""The look-up trail: every number looked up, by whom, when, from which channel.

A row is written with the decision it produced, in the same transaction (DecisionService), so
every look-up is attributable. Supervisors (within their scope) and admins read the trail;
numbers leave it masked. Rows older than the retention are purged (nextbest/retention.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select

from nextbest.keys import Actor
from nextbest.msisdn import mask
from nextbest.storage.db import Database
from nextbest.storage.security_models import Lookup

__all__ = [
    "MAX_ROWS",
    "LookupOut",
    "LookupQuery",
    "LookupService",
    "lookup_row",
    "purge_lookups",
]

MAX_ROWS = 1000


def lookup_row(
    actor: Actor,
    *,
    msisdn: str,
    channel: str,
    decision_id: str,
    known: bool,
    at: datetime,
    campaign_id: str | None = None,
) -> dict[str, Any]:
    """The trail row of one look-up (who, when, which number, from which channel)."""
    return {
        "at": at,
        "msisdn": msisdn,
        "channel": channel,
        "decision_id": decision_id,
        "known": known,
        "key_id": actor.key_id,
        "user_id": actor.user_id,
        "role": actor.role,
        "store_id": actor.store_id,
        "team_id": actor.team_id,
        "campaign_id": campaign_id,
    }


class LookupOut(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    msisdn: str  # masked
    channel: str
    decision_id: str
    known: bool
    user: str
    role: str
    key_id: int
    store: str | None
    team: str | None
    campaign_id: str | None


class LookupQuery(msgspec.Struct, frozen=True, kw_only=True):
    """What to look for; ``store``/``team`` narrow it to a supervisor's scope."""

    msisdn: str | None = None
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    store: str | None = None
    team: str | None = None
    limit: int = MAX_ROWS


class LookupService:
    def __init__(self, db: Database, settle: Callable[[], object] | None = None) -> None:
        """``settle``: waits for this process's batched impressions (nextbest/impressions.py)."""
        self.db = db
        self.settle = settle

    def find(self, query: LookupQuery) -> list[LookupOut]:
        """Newest first, at most ``MAX_ROWS``."""
        if self.settle is not None:
            self.settle()
        statement = select(Lookup).order_by(Lookup.at.desc(), Lookup.id.desc())
        if query.msisdn:
            statement = statement.where(Lookup.msisdn == query.msisdn)
        if query.user:
            statement = statement.where(Lookup.user_id == query.user)
        if query.since:
            statement = statement.where(Lookup.at >= query.since)
        if query.until:
            statement = statement.where(Lookup.at < query.until)
        if query.store:
            statement = statement.where(Lookup.store_id == query.store)
        if query.team:
            statement = statement.where(Lookup.team_id == query.team)
        statement = statement.limit(max(1, min(query.limit, MAX_ROWS)))
        with self.db.read() as session:
            return [
                LookupOut(
                    id=row.id,
                    at=row.at,
                    msisdn=mask(row.msisdn),
                    channel=row.channel,
                    decision_id=row.decision_id,
                    known=row.known,
                    user=row.user_id,
                    role=row.role,
                    key_id=row.key_id,
                    store=row.store_id,
                    team=row.team_id,
                    campaign_id=row.campaign_id,
                )
                for row in session.scalars(statement)
            ]


def purge_lookups(db: Database, before: datetime) -> int:
    """Delete the trail rows older than ``before``; returns how many."""
    with db.write() as session:
        result = session.execute(delete(Lookup).where(Lookup.at < before))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
