"""What happens here: decisions served, outcomes recorded, subscriptions sold."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nextbest.records import ContactEvent
from nextbest.storage.models import Decision, DecisionOffer, Outcome, Subscription

__all__ = ["live_history", "save_decision"]


def live_history(session: Session, msisdn: str, since: datetime) -> list[ContactEvent]:
    """Outcomes recorded here since ``since``, plus every live subscription (held for good)."""
    events = [
        ContactEvent(channel=channel, kind=outcome, at=at, offer_id=offer_id, source="nextbest")
        for channel, outcome, at, offer_id in session.execute(
            select(Outcome.channel, Outcome.outcome, Outcome.created_at, Outcome.offer_id).where(
                Outcome.msisdn == msisdn, Outcome.created_at >= since
            )
        )
    ]
    events += [
        ContactEvent(channel=channel, kind="accepted", at=at, offer_id=offer_id, source="nextbest")
        for channel, at, offer_id in session.execute(
            select(Subscription.channel, Subscription.created_at, Subscription.offer_id).where(
                Subscription.msisdn == msisdn,
                Subscription.status.in_(("pending", "active")),
            )
        )
    ]
    return events


def save_decision(session: Session, decision: Decision, offers: list[dict[str, object]]) -> None:
    session.add(decision)
    session.flush()
    if offers:
        session.execute(insert(DecisionOffer), offers)
