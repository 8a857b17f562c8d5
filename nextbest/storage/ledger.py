"""What happens here: decisions served, outcomes recorded, subscriptions sold."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from nextbest.records import ContactEvent
from nextbest.storage.models import Decision, DecisionOffer
from nextbest.storage.raw import fetch, utc

__all__ = ["live_history", "save_decision"]


_HISTORY_SQL = (
    "SELECT channel, outcome, created_at, offer_id FROM outcomes "
    "WHERE msisdn = ? AND created_at >= ? "
    "UNION ALL "
    "SELECT channel, 'accepted', created_at, offer_id FROM subscriptions "
    "WHERE msisdn = ? AND status IN ('pending', 'active')"
)


def live_history(session: Session, msisdn: str, since: datetime) -> list[ContactEvent]:
    """Outcomes recorded here since ``since``, plus every live subscription (held for good)."""
    bound: object = since
    if session.get_bind().dialect.name == "sqlite":
        # Compare as SQLite stores UtcDateTime: naive UTC text.
        bound = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return [
        ContactEvent(channel=channel, kind=kind, at=utc(at), offer_id=offer_id, source="nextbest")
        for channel, kind, at, offer_id in fetch(session, _HISTORY_SQL, (msisdn, bound, msisdn))
    ]


def save_decision(session: Session, decision: Decision, offers: list[dict[str, object]]) -> None:
    session.add(decision)
    session.flush()
    if offers:
        session.execute(insert(DecisionOffer), offers)
