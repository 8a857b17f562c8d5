"""Records loaded from the warehouse extract and recorded here, as the core sees them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "CHANNELS",
    "CONTACT_KINDS",
    "FLAGS",
    "OUTCOMES",
    "STAGES",
    "Channel",
    "ContactEvent",
    "Profile",
]

Channel = Literal["store", "inbound", "outbound"]
CHANNELS: tuple[str, ...] = ("store", "inbound", "outbound")
# Lifecycle stage of one service for one subscriber; "none" where the warehouse says nothing.
Stage = Literal["potential", "active", "silent", "churn_risk", "churned", "none"]
STAGES: tuple[str, ...] = ("potential", "active", "silent", "churn_risk", "churned", "none")
FLAGS: tuple[str, ...] = ("dnd", "complaint", "arrears")
# Kinds of contact the warehouse reports (contacts.csv).
CONTACT_KINDS: tuple[str, ...] = ("contacted", "subscribed", "cancelled", "complaint")
# Outcomes recorded here, against an offer shown in a decision.
OUTCOMES: tuple[str, ...] = (
    "presented",
    "accepted",
    "declined",
    "considering",
    "callback",
    "no_answer",
)


class Profile(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One subscriber as the warehouse sees them (profiles.csv). Not tracked by the garbage
    collector (``gc=False``: it holds no cycles): the warehouse cache keeps up to
    ``NEXTBEST_CACHE_SIZE`` of them, and full collections would walk them all (runtime.py)."""

    msisdn: str
    segment: str
    brand: str
    region: str = ""
    store_id: str = ""
    arpu: float = 0.0
    handset: tuple[str, ...] = ()  # capabilities: mms, data, 3g
    subscriptions: tuple[str, ...] = ()  # offer ids the subscriber holds
    lifecycle: dict[str, str] = {}  # service -> stage
    channel_pref: tuple[str, ...] = ()  # best-working contact channels first
    flags: tuple[str, ...] = ()

    def stage(self, service: str) -> str:
        return self.lifecycle.get(service, "none")


class ContactEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A past contact: from the warehouse (``kind`` in CONTACT_KINDS) or an outcome recorded here
    (``kind`` in OUTCOMES). The contact rules read both the same way."""

    channel: str
    kind: str
    at: datetime
    offer_id: str | None = None
    source: Literal["warehouse", "nextbest"] = "warehouse"
