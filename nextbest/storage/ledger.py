"""What happens here: decisions served, outcomes recorded, subscriptions sold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nextbest.records import ContactEvent
from nextbest.storage.raw import Reads, fetch, is_sqlite, utc

__all__ = ["live_history"]


_HISTORY_SQL = (
    "SELECT channel, outcome, created_at, offer_id FROM outcomes "
    "WHERE msisdn = ? AND created_at >= ? "
    "UNION ALL "
    "SELECT channel, 'accepted', created_at, offer_id FROM subscriptions "
    "WHERE msisdn = ? AND status IN ('pending', 'active')"
)


def live_history(session: Reads, msisdn: str, since: datetime) -> list[ContactEvent]:
    """Outcomes recorded here since ``since``, plus every live subscription (held for good)."""
    return _events(fetch(session, _HISTORY_SQL, (msisdn, _bound(session, since), msisdn)))


def _bound(session: Reads, since: datetime) -> object:
    if is_sqlite(session):
        # Compare as SQLite stores UtcDateTime: naive UTC text.
        return since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return since


def _events(rows: list[tuple[Any, ...]]) -> list[ContactEvent]:
    return [
        ContactEvent(channel=channel, kind=kind, at=utc(at), offer_id=offer_id, source="nextbest")
        for channel, kind, at, offer_id in rows
    ]
