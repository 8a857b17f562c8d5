"""What happens here: decisions served, outcomes recorded, subscriptions sold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nextbest.records import ContactEvent
from nextbest.storage.models import Decision
from nextbest.storage.raw import Reads, fetch, is_sqlite, utc

__all__ = ["decision_row", "live_history", "live_history_and_dnd"]


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


# The do-not-call list in the same statement: one round trip for both on PostgreSQL.
_ON_DND_LIST = "#dnd-list"  # not a channel: channels are lower-case words
_HISTORY_AND_DND_SQL = (
    f"{_HISTORY_SQL} UNION ALL "
    f"SELECT '{_ON_DND_LIST}', '{_ON_DND_LIST}', NULL, NULL FROM dnd_numbers WHERE msisdn = ?"
)


def live_history_and_dnd(
    session: Reads, msisdn: str, since: datetime
) -> tuple[list[ContactEvent], bool]:
    """``live_history``, and whether the number is on the do-not-call list."""
    rows = fetch(session, _HISTORY_AND_DND_SQL, (msisdn, _bound(session, since), msisdn, msisdn))
    events = [row for row in rows if row[0] != _ON_DND_LIST]
    return _events(events), len(events) != len(rows)


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


# (column, scalar default applied where the Decision was built without it, as a flush would)
_DECISION_COLUMNS = tuple(
    (c.key, c.default.arg if c.default is not None and c.default.is_scalar else None)
    for c in Decision.__table__.columns
)


def decision_row(decision: Decision) -> dict[str, Any]:
    """The decision as the row to insert (column defaults applied, as a flush would)."""
    row = {}
    for column, default in _DECISION_COLUMNS:
        value = getattr(decision, column)
        row[column] = default if value is None else value
    return row
