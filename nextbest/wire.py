"""Request and response types of the HTTP API (msgspec Structs; the OpenAPI schema is built
from them). New fields always get defaults, so older clients keep working."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "DecisionContext",
    "DecisionRequest",
    "DecisionResponse",
    "Health",
    "ObjectionOut",
    "OfferOut",
    "OutcomeRequest",
    "OutcomeResponse",
    "ScriptOut",
    "SegmentOut",
    "SubscriptionOut",
    "SuppressedOut",
]

ChannelName = Literal["store", "inbound", "outbound"]
Lang = Literal["en", "zh"]
OutcomeName = Literal["presented", "accepted", "declined", "considering", "callback", "no_answer"]


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Out(msgspec.Struct, kw_only=True):
    pass


class DecisionContext(_In, kw_only=True):
    # Live events seen by the front-line system, e.g. handset_mms, night_group_sms.
    events: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=20)] = []


class DecisionRequest(_In, kw_only=True):
    msisdn: Annotated[str, Meta(max_length=32, description="The customer's mobile number")]
    channel: ChannelName
    limit: Annotated[int, Meta(ge=1, le=10)] | None = None
    context: DecisionContext | None = None
    lang: Lang = "en"


class ObjectionOut(_Out, kw_only=True):
    objection: str
    answer: str


class ScriptOut(_Out, kw_only=True):
    lang: str
    pitch: str
    opening: str = ""
    objections: list[ObjectionOut] = []
    closing: str = ""


class OfferOut(_Out, kw_only=True):
    rank: int
    offer_id: str
    name: str
    service: str
    price: float
    score: float
    probability: float
    reasons: list[str]
    reason_codes: list[str]
    script: ScriptOut


class SuppressedOut(_Out, kw_only=True):
    offer_id: str
    rule: str
    detail: str


class SegmentOut(_Out, kw_only=True):
    code: str
    name: str
    selling_point: str = ""


class DecisionResponse(_Out, kw_only=True):
    decision_id: str
    msisdn: str  # masked: 138****5678
    known: bool
    channel: str
    segment: SegmentOut | None
    brand: str | None
    data_version: int | None
    catalog_version: str
    created_at: datetime
    offers: list[OfferOut]
    # Why nothing (or less) is offered: a whole-customer rule, and each offer removed.
    notice: str | None = None
    suppressed: list[SuppressedOut] = []


class OutcomeRequest(_In, kw_only=True):
    offer_id: Annotated[str, Meta(min_length=1, max_length=64)]
    outcome: OutcomeName
    reason: Annotated[str, Meta(max_length=500)] | None = None
    callback_at: datetime | None = None


class SubscriptionOut(_Out, kw_only=True):
    id: int
    offer_id: str
    status: str
    status_reason: str | None = None
    created_at: datetime


class OutcomeResponse(_Out, kw_only=True):
    outcome_id: int
    decision_id: str
    offer_id: str
    outcome: str
    recorded_at: datetime
    recorded_by: str
    subscription: SubscriptionOut | None = None


class Health(_Out, kw_only=True):
    status: str
