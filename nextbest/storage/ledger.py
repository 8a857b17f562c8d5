"""What happens here: decisions served, outcomes recorded, subscriptions sold."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from nextbest.records import ContactEvent
from nextbest.storage.models import Decision, DecisionOffer
from nextbest.storage.raw import fetch, insert_rows, utc

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


# (column, scalar default applied where the Decision was built without it, as a flush would)
_DECISION_COLUMNS = tuple(
    (c.key, c.default.arg if c.default is not None and c.default.is_scalar else None)
    for c in Decision.__table__.columns
)


def save_decision(session: Session, decision: Decision, offers: list[dict[str, object]]) -> None:
    """Store the impression: the decision row and the offers shown, with plain SQL (this runs
    on every decision; the ORM's unit of work costs more than the insert)."""
    row = {}
    for column, default in _DECISION_COLUMNS:
        value = getattr(decision, column)
        row[column] = default if value is None else value
    insert_rows(session, Decision.__table__, [row])  # type: ignore[arg-type]
    insert_rows(session, DecisionOffer.__table__, offers)  # type: ignore[arg-type]
