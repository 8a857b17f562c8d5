"""The look-up trail: every number looked up, by whom, when, from which channel.

The trail is the decision row itself (``decisions.key_id``: the key that looked the number
up), so there is no look-up without its trail and no second row to write. Supervisors (within
their scope) and admins read it; numbers leave it masked. Past the retention a row's key is
cleared and it leaves the trail (nextbest/retention.py); the decision stays.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec
from sqlalchemy import select, update

from nextbest.msisdn import mask
from nextbest.storage.db import Database
from nextbest.storage.models import Decision

__all__ = [
    "MAX_ROWS",
    "LookupOut",
    "LookupQuery",
    "LookupService",
    "purge_lookups",
]

MAX_ROWS = 1000


class LookupOut(msgspec.Struct, kw_only=True):
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
        trail = Decision
        statement = (
            select(trail)
            .where(trail.key_id.is_not(None))  # cleared past the trail's retention
            .order_by(trail.created_at.desc(), trail.id.desc())
        )
        if query.msisdn:
            statement = statement.where(trail.msisdn == query.msisdn)
        if query.user:
            statement = statement.where(trail.user_id == query.user)
        if query.since:
            statement = statement.where(trail.created_at >= query.since)
        if query.until:
            statement = statement.where(trail.created_at < query.until)
        if query.store:
            statement = statement.where(trail.store_id == query.store)
        if query.team:
            statement = statement.where(trail.team_id == query.team)
        statement = statement.limit(max(1, min(query.limit, MAX_ROWS)))
        with self.db.read() as session:
            return [
                LookupOut(
                    at=row.created_at,
                    msisdn=mask(row.msisdn),
                    channel=row.channel,
                    decision_id=row.id,
                    known=row.known,
                    user=row.user_id,
                    role=row.role,
                    key_id=row.key_id,
                    store=row.store_id,
                    team=row.team_id,
                    campaign_id=row.campaign_id,
                )
                for row in session.scalars(statement)
                if row.key_id is not None
            ]


def purge_lookups(db: Database, before: datetime) -> int:
    """End the trail of the look-ups older than ``before`` (their key and team are cleared, so
    no supervisor can list them again); returns how many. The decisions stay: they are the
    sales ledger that outcomes, sales and the reports' rebuild refer to."""
    with db.write() as session:
        result = session.execute(
            update(Decision)
            .where(Decision.created_at < before, Decision.key_id.is_not(None))
            .values(key_id=None, team_id=None)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
