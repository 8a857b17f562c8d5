"""Campaigns: a target list, offers and an outbound strategy, rehearsed, approved and launched
into the call queue (nextbest/tasks.py works the queue).

Life cycle: draft -> submitted -> approved | rejected -> live -> paused -> ended (a rejected
campaign may be revised back to draft). Only a supervisor or admin approves, never the person
who submitted; every transition is recorded with who and when.

The rehearsal (营销案预演) and the launch screen every target with the same contact and
eligibility rules as a decision (nextbest.policy.screen) over the active warehouse data and the
outcomes recorded here, read in batches of targets, never one query per target.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from nextbest.catalog import Catalog, Offer
from nextbest.clock import Clock, SystemClock
from nextbest.errors import BadInput, Conflict, NotFound, ServiceError, Unavailable, Unprocessable
from nextbest.keys import Actor
from nextbest.msisdn import InvalidMsisdn, normalize
from nextbest.policy import RULES, screen
from nextbest.records import STAGES, ContactEvent, Profile
from nextbest.settings import Settings
from nextbest.storage.campaign_models import (
    CallTask,
    Campaign,
    CampaignDay,
    CampaignEvent,
    CampaignTarget,
    flag_dnd,
)
from nextbest.storage.db import Database
from nextbest.storage.models import Affinity, ProfileRow
from nextbest.storage.raw import fetch, insert_rows, utc
from nextbest.storage.warehouse import NoDataLoaded, WarehouseReader

__all__ = [
    "ACTIONS",
    "DEFAULT_TIMEZONE",
    "STRATEGIES",
    "Action",
    "CampaignIn",
    "CampaignOut",
    "CampaignPatch",
    "CampaignService",
    "Forbidden",
    "Judgement",
    "QueueOut",
    "Rehearsal",
    "RejectedLine",
    "SelectionIn",
    "TargetReport",
    "TransitionIn",
    "add_cli",
    "closed_reason",
    "demo_campaigns",
    "in_control",
    "judge",
    "local_day",
    "narrowed",
    "parse_target_list",
    "rules_profile",
    "within_calling_hours",
]

DEFAULT_TIMEZONE = "Asia/Shanghai"

# The five outbound strategies the operators run, with what the agent is told the call is for.
STRATEGIES: dict[str, tuple[str, str]] = {
    "trial_user_selection": (
        "Trial-user selection: invite customers the model picked to try the service free",
        "试用用户筛选:邀请模型选出的客户免费试用",
    ),
    "trial_followup": (
        "Trial-period follow-up: the trial ends soon; turn it into a subscription",
        "试用期跟进:试用即将到期,转为正式订购",
    ),
    "direct_recommendation": (
        "Direct recommendation: pitch the offer the model ranks best for this customer",
        "直接推荐:推荐模型为该客户排出的最佳业务",
    ),
    "annual_renewal": (
        "Annual-package renewal: the customer's annual package runs out; renew it",
        "包年续订:客户的包年套餐即将到期,办理续订",
    ),
    "monthly_to_annual": (
        "Monthly-to-annual upgrade: move a loyal monthly subscriber to the annual package",
        "包月转包年:将稳定的包月用户升级为包年",
    ),
}
Strategy = Literal[
    "trial_user_selection",
    "trial_followup",
    "direct_recommendation",
    "annual_renewal",
    "monthly_to_annual",
]
Action = Literal["submit", "approve", "reject", "revise", "launch", "pause", "resume", "end"]
# action -> (statuses it applies to, the status it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "submit": (("draft",), "submitted"),
    "approve": (("submitted",), "approved"),
    "reject": (("submitted",), "rejected"),
    "revise": (("rejected",), "draft"),
    "launch": (("approved",), "live"),
    "pause": (("live",), "paused"),
    "resume": (("paused",), "live"),
    "end": (("live", "paused"), "ended"),
}
APPROVERS = ("supervisor", "admin")
# A removal's rule, for a target none of whose campaign offers survive: the first in policy
# order (customer-wide rules come first), so the count names the most basic reason.
_RULE_ORDER = {code: i for i, code in enumerate(RULES)}
NO_OFFER_RULE = "no_campaign_offer"  # none of the campaign's offers is in the catalog
MAX_REPORTED_LINES = 100
CHUNK = 2000  # targets read per batch of queries

_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]{1,39}$"
CampaignId = Annotated[str, Meta(pattern=_ID_PATTERN, description="lower-case, 2-40 chars")]
OfferId = Annotated[str, Meta(min_length=1, max_length=64)]
HourMinute = Annotated[
    str, Meta(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", description="HH:MM local")
]
Zone = Annotated[str, Meta(min_length=1, max_length=64, description="IANA time zone")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
UserId = Annotated[str, Meta(min_length=1, max_length=64)]
Description = Annotated[str, Meta(max_length=2000)]
Offers = Annotated[list[OfferId], Meta(min_length=1, max_length=10)]
DailyCap = Annotated[int, Meta(ge=1, le=1_000_000)]
Share = Annotated[float, Meta(ge=0.0, le=0.5)]
RetryDelay = Annotated[int, Meta(ge=0, le=7 * 24 * 60)]
Attempts = Annotated[int, Meta(ge=1, le=10)]


class Forbidden(ServiceError):
    """Allowed by role, refused by the rule (an approver approving their own submission)."""

    status = 403


# --- wire types --------------------------------------------------------------------------------


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Out(msgspec.Struct, kw_only=True):
    pass


class CampaignIn(_In, kw_only=True):
    name: Name
    strategy: Strategy
    offers: Offers
    starts_on: date
    ends_on: date
    id: CampaignId | None = None
    owner: UserId | None = None  # default: whoever creates it
    description: Description = ""
    calling_from: HourMinute = "09:00"
    calling_until: HourMinute = "20:00"
    timezone: Zone = DEFAULT_TIMEZONE
    daily_cap: DailyCap = 500
    control_share: Share = 0.05
    retry_delay_minutes: RetryDelay = 60
    max_attempts: Attempts = 3


class CampaignPatch(_In, kw_only=True):
    """A draft's fields to change; what is left out stays as it is."""

    name: Name | UnsetType = UNSET
    strategy: Strategy | UnsetType = UNSET
    offers: Offers | UnsetType = UNSET
    starts_on: date | UnsetType = UNSET
    ends_on: date | UnsetType = UNSET
    owner: UserId | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    calling_from: HourMinute | UnsetType = UNSET
    calling_until: HourMinute | UnsetType = UNSET
    timezone: Zone | UnsetType = UNSET
    daily_cap: DailyCap | UnsetType = UNSET
    control_share: Share | UnsetType = UNSET
    retry_delay_minutes: RetryDelay | UnsetType = UNSET
    max_attempts: Attempts | UnsetType = UNSET


class SelectionIn(_In, kw_only=True):
    """Targets chosen from the active data version's profiles; every criterion given must hold
    (an empty list or map: no criterion)."""

    segments: Annotated[list[str], Meta(max_length=20)] = []
    regions: Annotated[list[str], Meta(max_length=100)] = []
    brands: Annotated[list[str], Meta(max_length=10)] = []
    # service -> lifecycle stages, e.g. {"crbt": ["silent", "churn_risk"]}
    lifecycle: dict[str, list[str]] = {}
    # At least this affinity (warehouse propensity) for one of the campaign's offers.
    min_affinity: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None


class TransitionIn(_In, kw_only=True):
    action: Action
    note: Description = ""


class TransitionOut(_Out, kw_only=True):
    from_status: str
    to_status: str
    by: str
    role: str
    at: datetime
    note: str


class CampaignOut(_Out, kw_only=True):
    id: str
    name: str
    description: str
    owner: str
    strategy: str
    strategy_description: str
    offers: list[str]
    status: str
    starts_on: date
    ends_on: date
    calling_from: str
    calling_until: str
    timezone: str
    daily_cap: int
    control_share: float
    retry_delay_minutes: int
    max_attempts: int
    targets: int
    target_source: str
    selection: SelectionIn | None
    targets_version: int | None
    launched_version: int | None
    submitted_by: str | None
    approved_by: str | None
    created_at: datetime
    updated_at: datetime
    history: list[TransitionOut] = []


class RejectedLine(_Out, kw_only=True):
    line: int
    value: str
    reason: str


class TargetReport(_Out, kw_only=True):
    campaign_id: str
    source: str  # list or selection
    loaded: int
    rejected: int
    # The first rejected lines (at most 100), with their line numbers in the list.
    rejected_lines: list[RejectedLine] = []
    # Loaded numbers the active data version has no profile for (only general offers fit).
    unknown: int = 0
    data_version: int | None = None


class OfferRehearsal(_Out, kw_only=True):
    offer_id: str
    # Targets this offer may be pitched to, and why the others may not.
    eligible: int
    removed_by_rule: dict[str, int]
    # Of the targets to call, those the call would lead with this offer.
    lead: int


class Rehearsal(_Out, kw_only=True):
    campaign_id: str
    data_version: int
    rehearsed_at: datetime
    seconds: float
    targets: int
    unknown: int  # targets the warehouse has no profile for
    removed: int  # by the eligibility and contact rules
    removed_by_rule: dict[str, int]
    eligible: int
    control: int  # eligible, held out to measure lift: never called
    to_call: int
    expected_accepts: float  # sum of the lead offer's acceptance estimate (affinity)
    expected_revenue: float  # sum of estimate x monthly price, yuan per month
    expected_value: float  # sum of estimate x the offer's value to the operator, yuan
    daily_cap: int
    calls_per_day: int  # first attempts only; no-answer retries come on top
    days_needed: int
    campaign_days: int  # days left between today (or the start) and the end
    fits: bool
    offers: list[OfferRehearsal]
    problems: list[str] = []


class QueueOut(_Out, kw_only=True):
    campaign_id: str
    status: str
    open_now: bool
    closed_because: str | None
    calls_today: int
    daily_cap: int
    queued_due: int
    queued_later: int  # retries and callbacks not yet due
    callbacks: int
    leased: int
    # Closed tasks by result (accepted, declined, ..., suppressed, control, ended).
    results: dict[str, int]
    total: int


# --- pure helpers ------------------------------------------------------------------------------


def in_control(campaign_id: str, msisdn: str, share: float) -> bool:
    """Stable per (campaign, number): the same target is always in or out, on every node."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(f"{campaign_id}\0{msisdn}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(campaign: Campaign, now: datetime) -> date:
    return now.astimezone(_zone(campaign.timezone)).date()


def within_calling_hours(campaign: Campaign, at: datetime) -> bool:
    local = at.astimezone(_zone(campaign.timezone))
    minute = local.hour * 60 + local.minute
    return _minutes(campaign.calling_from) <= minute < _minutes(campaign.calling_until)


def closed_reason(campaign: Campaign, now: datetime) -> str | None:
    """Why this live campaign may not call now (dates, calling hours), or None."""
    today = local_day(campaign, now)
    if today < campaign.starts_on:
        return f"campaign {campaign.id} starts on {campaign.starts_on}"
    if today > campaign.ends_on:
        return f"campaign {campaign.id} ended on {campaign.ends_on}"
    if not within_calling_hours(campaign, now):
        return (
            f"campaign {campaign.id} calls {campaign.calling_from}-{campaign.calling_until} "
            f"({campaign.timezone})"
        )
    return None


def parse_target_list(
    text: str,
) -> tuple[list[tuple[int, str]], list[RejectedLine], int]:
    """The numbers of a target list, one per line (or a CSV whose header names an ``msisdn``
    column): (line, number) kept, the first rejected lines with why, and how many were
    rejected. Blank lines are skipped; each number is normalised (+86, spaces, dashes)."""
    kept: list[tuple[int, str]] = []
    rejected: list[RejectedLine] = []
    rejected_count = 0
    seen: dict[str, int] = {}
    column = 0
    delimiter: str | None = None
    header_done = False
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not header_done:
            header_done = True
            delimiter = next((d for d in (",", "\t", ";") if d in line), None)
            fields = [f.strip().strip('"').lower() for f in line.split(delimiter)]
            if "msisdn" in fields:
                column = fields.index("msisdn")
                continue
        fields = [f.strip().strip('"') for f in line.split(delimiter)] if delimiter else [line]
        value = fields[column] if column < len(fields) else ""
        reason: str | None = None
        try:
            msisdn = normalize(value)
        except InvalidMsisdn:
            reason = "not a mobile number (11 digits starting with 13-19, optionally +86)"
        else:
            first = seen.get(msisdn)
            if first is not None:
                reason = f"duplicate of line {first}"
            else:
                seen[msisdn] = number
                kept.append((number, msisdn))
        if reason is not None:
            rejected_count += 1
            if len(rejected) < MAX_REPORTED_LINES:
                rejected.append(RejectedLine(line=number, value=line[:40], reason=reason))
    return kept, rejected, rejected_count


def narrowed(catalog: Catalog, offers: Sequence[Offer]) -> Catalog:
    """The catalog with only ``offers`` to screen, its look-ups (a held offer's group, a
    cancelled offer's service) still seeing every offer. policy.screen then judges the
    campaign's offers exactly as within the whole catalog (tests hold it to that) without
    spending most of a rehearsal on offers the campaign does not sell."""
    view = msgspec.structs.replace(catalog, offers=tuple(offers))
    view.__dict__.update(catalog.__dict__)  # the whole catalog's look-up indexes
    # ...but not the decision core's forms, built for the whole catalog's offers (and not to
    # be filled with the view's: the dict would be shared).
    view.__dict__["_derived"] = {}
    return view


def _first_rule(rules: Sequence[str]) -> str | None:
    return min(rules, key=lambda r: _RULE_ORDER.get(r, len(_RULE_ORDER)), default=None)


class TargetScreen(msgspec.Struct, frozen=True, kw_only=True):
    """One target through the rules: removed (``rule``) or callable, leading with ``lead``."""

    msisdn: str
    known: bool
    rule: str | None
    detail: str
    allowed: tuple[str, ...]  # campaign offers that may be pitched
    offer_rules: dict[str, str]  # campaign offer -> the rule that removed it
    lead: str | None
    probability: float
    priority: float  # probability x the lead offer's value


class Judgement(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules say about a target's campaign offers (nothing here depends on who)."""

    rule: str | None  # the rule that removed the customer; None when callable
    detail: str
    allowed: tuple[str, ...]  # campaign offers that may be pitched, in campaign order
    offer_rules: dict[str, str]  # campaign offer -> the rule that removed it


def judge(
    catalog: Catalog,
    offers: Sequence[Offer],
    profile: Profile | None,
    history: Sequence[ContactEvent],
    now: datetime,
) -> Judgement:
    """Pure: the decision's own rules (policy.screen on the outbound channel) for the
    campaign's ``offers``."""
    screening = screen(catalog, profile, history, "outbound", now)
    wanted = {o.id for o in offers}
    allowed_ids = {o.id for o in screening.allowed if o.id in wanted}
    offer_rules: dict[str, str] = {}
    details: dict[str, str] = {}
    for removed in screening.suppressed:
        if removed.offer_id in wanted:
            offer_rules[removed.offer_id] = removed.rule
            details.setdefault(removed.rule, removed.detail)
    allowed = tuple(o.id for o in offers if o.id in allowed_ids)
    if allowed:
        return Judgement(rule=None, detail="", allowed=allowed, offer_rules=offer_rules)
    rule = screening.customer_rule or _first_rule(list(offer_rules.values())) or NO_OFFER_RULE
    return Judgement(
        rule=rule,
        detail=details.get(rule, RULES.get(rule, "none of the campaign's offers is known")),
        allowed=(),
        offer_rules=offer_rules,
    )


def _lead(
    offers: Sequence[Offer], allowed: tuple[str, ...], affinities: dict[str, float]
) -> tuple[str | None, float, float]:
    """The allowed offer the call would lead with, its acceptance estimate (the warehouse's
    affinity, else the offer's prior) and expected value (estimate x the offer's value)."""
    best: tuple[str | None, float, float] = (None, 0.0, 0.0)
    for offer in offers:  # campaign order breaks ties
        if offer.id in allowed:
            p = affinities.get(offer.id, offer.prior)
            if best[0] is None or p * offer.value > best[2]:
                best = (offer.id, p, p * offer.value)
    return best[0], round(best[1], 6), round(best[2], 6)


def screen_target(
    catalog: Catalog,
    offers: Sequence[Offer],
    msisdn: str,
    profile: Profile | None,
    affinities: dict[str, float],
    history: Sequence[ContactEvent],
    now: datetime,
) -> TargetScreen:
    """Pure: one target through ``judge``, and the offer the call would lead with."""
    judgement = judge(catalog, offers, profile, history, now)
    lead, probability, priority = _lead(offers, judgement.allowed, affinities)
    return TargetScreen(
        msisdn=msisdn,
        known=profile is not None,
        rule=judgement.rule,
        detail=judgement.detail,
        allowed=judgement.allowed,
        offer_rules=judgement.offer_rules,
        lead=lead,
        probability=probability,
        priority=priority,
    )


# --- batched reads -----------------------------------------------------------------------------


# Each batch reads what the rules need for the targets in one range of the campaign's list
# (numbers after ? up to ?), joined on the indexes: a handful of statements per batch, the
# same text every time, whatever the backend.
_BATCH = (
    "FROM campaign_targets t JOIN {} WHERE t.campaign_id = ? AND t.msisdn > ? AND t.msisdn <= ?"
)
# The profile columns the eligibility and contact rules read.
_PROFILES_SQL = (
    "SELECT p.msisdn, p.segment, p.brand, p.handset, p.subscriptions, p.lifecycle, p.flags "
    + _BATCH.format("profiles p ON p.version_id = ? AND p.msisdn = t.msisdn")
)
_CONTACTS_SQL = "SELECT c.msisdn, c.channel, c.kind, c.at, c.offer_id " + _BATCH.format(
    "warehouse_contacts c ON c.version_id = ? AND c.msisdn = t.msisdn"
)
_OUTCOMES_SQL = "SELECT o.msisdn, o.channel, o.outcome, o.created_at, o.offer_id " + _BATCH.format(
    "outcomes o ON o.msisdn = t.msisdn AND o.created_at >= ?"
)
_SUBSCRIPTIONS_SQL = "SELECT s.msisdn, s.channel, s.created_at, s.offer_id " + _BATCH.format(
    "subscriptions s ON s.msisdn = t.msisdn AND s.status IN ('pending', 'active')"
)
_DND_SQL = "SELECT d.msisdn " + _BATCH.format("dnd_numbers d ON d.msisdn = t.msisdn")
_TARGETS_SQL = (
    "SELECT msisdn FROM campaign_targets WHERE campaign_id = ? AND msisdn > ? "
    "ORDER BY msisdn LIMIT ?"
)


def _affinity_sql(offers: int) -> str:
    return "SELECT a.msisdn, a.offer_id, a.score " + _BATCH.format(
        "affinities a ON a.version_id = ? AND a.msisdn = t.msisdn "
        f"AND a.offer_id IN ({', '.join('?' * offers)})"
    )


def _split(value: str) -> tuple[str, ...]:
    return tuple(value.split(";")) if value else ()


def _stage(lifecycle: str, service: str) -> str | None:
    """The stage of ``service`` in a profile's ``service:stage;...`` text, if listed."""
    key = service + ":"
    start = lifecycle.find(key)
    while start > 0 and lifecycle[start - 1] != ";":  # 'crbt:' inside 'xcrbt:'
        start = lifecycle.find(key, start + 1)
    if start < 0:
        return None
    end = lifecycle.find(";", start)
    return lifecycle[start + len(key) : end if end >= 0 else len(lifecycle)]


def _stages(lifecycle: str, services: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(service, stage) of ``services`` in a profile's lifecycle text."""
    if not lifecycle:
        return ()
    return tuple((service, stage) for service in services if (stage := _stage(lifecycle, service)))


def rules_profile(values: tuple[Any, ...], stages: tuple[tuple[str, str], ...]) -> Profile:
    """What the rules read of a profile (a _PROFILES_SQL row), with the lifecycle ``stages``
    of the campaign's services only: the rules judge an offer by the stage of its service."""
    msisdn, segment, brand, handset, subscriptions, _, flags = values
    return Profile(
        msisdn=msisdn,
        segment=segment,
        brand=brand,
        handset=_split(handset),
        subscriptions=_split(subscriptions),
        lifecycle=dict(stages),
        flags=_split(flags),
    )


def _time_param(session: Session, at: datetime) -> object:
    if session.get_bind().dialect.name == "sqlite":  # as SQLite stores UtcDateTime
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return at


def screen_targets(
    session: Session,
    catalog: Catalog,
    version_id: int,
    campaign_id: str,
    offers: Sequence[Offer],
    now: datetime,
) -> Iterator[TargetScreen]:
    """Every target of the campaign through the rules, CHUNK targets per batch of queries
    (profiles, affinities, warehouse contacts, outcomes, live sales, the do-not-call list)."""
    since = _time_param(session, now - catalog.history_window())
    offer_ids = [o.id for o in offers]
    view = narrowed(catalog, offers)
    services = sorted({o.service for o in offers})
    no_affinity: dict[str, float] = {}
    affinity_sql = _affinity_sql(len(offer_ids)) if offer_ids else ""
    judged: dict[tuple[Any, ...], Judgement] = {}
    last = ""
    while True:
        rows = fetch(session, _TARGETS_SQL, (campaign_id, last, CHUNK))
        if not rows:
            return
        msisdns = [r[0] for r in rows]
        first, last = last, msisdns[-1]
        batch = (campaign_id, first, last)
        profiles = {r[0]: r for r in fetch(session, _PROFILES_SQL, (version_id, *batch))}
        affinities: dict[str, dict[str, float]] = {}
        if offer_ids:
            for msisdn, offer_id, score in fetch(
                session, affinity_sql, (version_id, *offer_ids, *batch)
            ):
                affinities.setdefault(msisdn, {})[offer_id] = score
        history: dict[str, list[ContactEvent]] = {}
        for msisdn, channel, kind, at, offer_id in fetch(
            session, _CONTACTS_SQL, (version_id, *batch)
        ):
            history.setdefault(msisdn, []).append(
                ContactEvent(channel=channel, kind=kind, at=utc(at), offer_id=offer_id)
            )
        for msisdn, channel, kind, at, offer_id in fetch(session, _OUTCOMES_SQL, (since, *batch)):
            history.setdefault(msisdn, []).append(
                ContactEvent(
                    channel=channel, kind=kind, at=utc(at), offer_id=offer_id, source="nextbest"
                )
            )
        for msisdn, channel, at, offer_id in fetch(session, _SUBSCRIPTIONS_SQL, batch):
            history.setdefault(msisdn, []).append(
                ContactEvent(
                    channel=channel,
                    kind="accepted",
                    at=utc(at),
                    offer_id=offer_id,
                    source="nextbest",
                )
            )
        dnd = {r[0] for r in fetch(session, _DND_SQL, batch)}
        for msisdn in msisdns:
            row = profiles.get(msisdn)
            stages = _stages(row[5], services) if row else ()
            listed = msisdn in dnd
            events = history.get(msisdn, ())
            judgement: Judgement | None = None
            key: tuple[Any, ...] | None = None
            if not events:
                # The rules are a pure function of what they read: customers alike in all of
                # it (and without contact history) are judged once.
                key = (listed, row[1], row[2], row[3], row[4], row[6], stages) if row else (listed,)
                judgement = judged.get(key)
            if judgement is None:
                profile = rules_profile(row, stages) if row else None
                if listed:
                    profile = flag_dnd(msisdn, profile)
                judgement = judge(view, offers, profile, events, now)
                if key is not None:
                    judged[key] = judgement
            lead, probability, priority = _lead(
                offers, judgement.allowed, affinities.get(msisdn, no_affinity)
            )
            yield TargetScreen(
                msisdn=msisdn,
                known=row is not None,
                rule=judgement.rule,
                detail=judgement.detail,
                allowed=judgement.allowed,
                offer_rules=judgement.offer_rules,
                lead=lead,
                probability=probability,
                priority=priority,
            )


# --- the service -------------------------------------------------------------------------------


def _selection_out(raw: str) -> SelectionIn | None:
    return msgspec.json.decode(raw, type=SelectionIn) if raw else None


def _out(campaign: Campaign, history: Sequence[CampaignEvent] = ()) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        description=campaign.description,
        owner=campaign.owner,
        strategy=campaign.strategy,
        strategy_description=STRATEGIES.get(campaign.strategy, ("", ""))[0],
        offers=campaign.offers.split(";") if campaign.offers else [],
        status=campaign.status,
        starts_on=campaign.starts_on,
        ends_on=campaign.ends_on,
        calling_from=campaign.calling_from,
        calling_until=campaign.calling_until,
        timezone=campaign.timezone,
        daily_cap=campaign.daily_cap,
        control_share=campaign.control_share,
        retry_delay_minutes=campaign.retry_delay_minutes,
        max_attempts=campaign.max_attempts,
        targets=campaign.targets,
        target_source=campaign.target_source,
        selection=_selection_out(campaign.selection),
        targets_version=campaign.targets_version,
        launched_version=campaign.launched_version,
        submitted_by=campaign.submitted_by,
        approved_by=campaign.approved_by,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        history=[
            TransitionOut(
                from_status=e.from_status,
                to_status=e.to_status,
                by=e.user_id,
                role=e.role,
                at=e.at,
                note=e.note,
            )
            for e in history
        ],
    )


def _check_fields(
    starts_on: date,
    ends_on: date,
    calling_from: str,
    calling_until: str,
    timezone: str,
    offers: Sequence[str],
) -> None:
    if ends_on < starts_on:
        raise BadInput(f"ends_on: {ends_on} is before starts_on {starts_on}", field="ends_on")
    if _minutes(calling_until) <= _minutes(calling_from):
        raise BadInput(
            f"calling_until: {calling_until} is not after calling_from {calling_from}",
            field="calling_until",
        )
    try:
        _zone(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            f"timezone: unknown time zone {timezone!r}; e.g. {DEFAULT_TIMEZONE}", field="timezone"
        ) from None
    seen: set[str] = set()
    for i, offer_id in enumerate(offers):
        if offer_id in seen:
            raise BadInput(f"offers[{i}]: {offer_id!r} is listed twice", field=f"offers[{i}]")
        seen.add(offer_id)


def _offer_problems(catalog: Catalog, offer_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(field, message) for each campaign offer the catalog does not have or sell outbound."""
    problems = []
    for i, offer_id in enumerate(offer_ids):
        offer = catalog.offer(offer_id)
        if offer is None:
            known = ", ".join(o.id for o in catalog.offers if "outbound" in o.channels)
            problems.append(
                (
                    f"offers[{i}]",
                    f"offers[{i}]: unknown offer {offer_id!r} (catalog {catalog.version}); "
                    f"offers sold on outbound: {known}",
                )
            )
        elif "outbound" not in offer.channels:
            problems.append(
                (f"offers[{i}]", f"offers[{i}]: {offer_id!r} is not sold on outbound calls")
            )
    return problems


class CampaignService:
    def __init__(self, db: Database, reader: WarehouseReader, clock: Clock) -> None:
        self.db = db
        self.reader = reader
        self.clock = clock

    # -- reading --

    def get(self, campaign_id: str) -> CampaignOut:
        with self.db.read() as session:
            campaign = self._campaign(session, campaign_id)
            history = list(
                session.scalars(
                    select(CampaignEvent)
                    .where(CampaignEvent.campaign_id == campaign_id)
                    .order_by(CampaignEvent.id)
                )
            )
            return _out(campaign, history)

    def campaigns(self, status: str | None = None) -> list[CampaignOut]:
        with self.db.read() as session:
            query = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id)
            if status is not None:
                query = query.where(Campaign.status == status)
            return [_out(c) for c in session.scalars(query)]

    @staticmethod
    def _campaign(session: Session, campaign_id: str, *, lock: bool = False) -> Campaign:
        campaign = session.get(Campaign, campaign_id, with_for_update=lock or None)
        if campaign is None:
            raise NotFound(f"campaign {campaign_id!r} not found", field="campaign_id")
        return campaign

    def _catalog(self) -> tuple[int, Catalog]:
        try:
            active = self.reader.active()
        except NoDataLoaded as exc:
            raise Unavailable(str(exc)) from None
        return active.id, active.catalog

    # -- drafting --

    def create(self, actor: Actor, data: CampaignIn) -> CampaignOut:
        _check_fields(
            data.starts_on,
            data.ends_on,
            data.calling_from,
            data.calling_until,
            data.timezone,
            data.offers,
        )
        now = self.clock.now()
        campaign_id = data.id or f"c-{now:%Y%m%d}-{os.urandom(3).hex()}"
        with self.db.write() as session:
            if session.get(Campaign, campaign_id) is not None:
                raise Conflict(f"id: campaign {campaign_id!r} already exists", field="id")
            campaign = Campaign(
                id=campaign_id,
                name=data.name,
                description=data.description,
                owner=data.owner or actor.user_id,
                strategy=data.strategy,
                offers=";".join(data.offers),
                status="draft",
                starts_on=data.starts_on,
                ends_on=data.ends_on,
                calling_from=data.calling_from,
                calling_until=data.calling_until,
                timezone=data.timezone,
                daily_cap=data.daily_cap,
                control_share=data.control_share,
                retry_delay_minutes=data.retry_delay_minutes,
                max_attempts=data.max_attempts,
                target_source="",
                selection="",
                targets=0,
                created_at=now,
                updated_at=now,
            )
            session.add(campaign)
            event = self._event(session, campaign, "", "draft", actor, now, "created")
            session.flush()
            return _out(campaign, [event])

    def update(self, actor: Actor, campaign_id: str, patch: CampaignPatch) -> CampaignOut:
        now = self.clock.now()
        with self.db.write() as session:
            campaign = self._campaign(session, campaign_id, lock=True)
            self._require_draft(campaign, "changed")
            changes = {
                f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not UNSET
            }
            offers = changes.pop("offers", None)
            merged: dict[str, Any] = {
                "starts_on": campaign.starts_on,
                "ends_on": campaign.ends_on,
                "calling_from": campaign.calling_from,
                "calling_until": campaign.calling_until,
                "timezone": campaign.timezone,
            }
            merged.update({k: v for k, v in changes.items() if k in merged})
            _check_fields(
                offers=offers if offers is not None else campaign.offers.split(";"), **merged
            )
            for name, value in changes.items():
                setattr(campaign, name, value)
            if offers is not None:
                campaign.offers = ";".join(offers)
            campaign.updated_at = now
            session.flush()
        return self.get(campaign_id)

    @staticmethod
    def _require_draft(campaign: Campaign, what: str) -> None:
        if campaign.status != "draft":
            raise Conflict(
                f"campaign {campaign.id} is {campaign.status}: only a draft can be {what}"
                + (" (revise it back to draft first)" if campaign.status == "rejected" else ""),
                field="status",
            )

    # -- targets --

    def load_targets(self, actor: Actor, campaign_id: str, body: bytes) -> TargetReport:
        """Replace the draft's targets with a list (one number per line, or CSV with an
        ``msisdn`` column). Bad and duplicate lines are reported by line number and left out;
        a list with no good number at all changes nothing."""
        try:
            listing = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = body.count(b"\n", 0, exc.start) + 1
            raise BadInput(f"targets: line {line} is not UTF-8 text", field="targets") from None
        kept, rejected, rejected_count = parse_target_list(listing)
        if not kept:
            shown = "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:5])
            raise Unprocessable(
                f"targets: no valid number in the list ({rejected_count} rejected lines"
                + (f": {shown}" if shown else "")
                + ")",
                field="targets",
            )
        version_id = self._version_or_none()
        self._replace_targets(campaign_id, [(m, line) for line, m in kept], "list", "", None)
        return TargetReport(
            campaign_id=campaign_id,
            source="list",
            loaded=len(kept),
            rejected=rejected_count,
            rejected_lines=rejected,
            unknown=self._unknown(campaign_id, version_id),
            data_version=version_id,
        )

    def select_targets(
        self, actor: Actor, campaign_id: str, selection: SelectionIn
    ) -> TargetReport:
        """Replace the draft's targets with the profiles of the active data version that match
        ``selection``."""
        version_id, catalog = self._catalog()
        self._check_selection(catalog, selection)
        with self.db.read() as session:
            campaign = self._campaign(session, campaign_id)
            self._require_draft(campaign, "given targets")
            offer_ids = campaign.offers.split(";")
            selected = self._select(session, version_id, selection, offer_ids)
        self._replace_targets(
            campaign_id,
            [(m, 0) for m in selected],
            "selection",
            msgspec.json.encode(selection).decode(),
            version_id,
        )
        return TargetReport(
            campaign_id=campaign_id,
            source="selection",
            loaded=len(selected),
            rejected=0,
            data_version=version_id,
        )

    def _version_or_none(self) -> int | None:
        try:
            return self.reader.active().id
        except NoDataLoaded:
            return None

    @staticmethod
    def _check_selection(catalog: Catalog, selection: SelectionIn) -> None:
        for i, code in enumerate(selection.segments):
            if catalog.segment(code) is None:
                known = ", ".join(s.code for s in catalog.segments)
                raise BadInput(
                    f"segments[{i}]: unknown segment {code!r}; known: {known}",
                    field=f"segments[{i}]",
                )
        for i, code in enumerate(selection.brands):
            if catalog.brand(code) is None:
                known = ", ".join(b.code for b in catalog.brands)
                raise BadInput(
                    f"brands[{i}]: unknown brand {code!r}; known: {known}", field=f"brands[{i}]"
                )
        for service, stages in selection.lifecycle.items():
            if catalog.service(service) is None:
                known = ", ".join(s.code for s in catalog.services)
                raise BadInput(
                    f"lifecycle.{service}: unknown service; known: {known}",
                    field=f"lifecycle.{service}",
                )
            for i, stage in enumerate(stages):
                if stage not in STAGES:
                    raise BadInput(
                        f"lifecycle.{service}[{i}]: unknown stage {stage!r}; "
                        f"known: {', '.join(STAGES)}",
                        field=f"lifecycle.{service}[{i}]",
                    )

    @staticmethod
    def _select(
        session: Session, version_id: int, selection: SelectionIn, offer_ids: Sequence[str]
    ) -> list[str]:
        query = select(ProfileRow.msisdn, ProfileRow.lifecycle).where(
            ProfileRow.version_id == version_id
        )
        if selection.segments:
            query = query.where(ProfileRow.segment.in_(selection.segments))
        if selection.regions:
            query = query.where(ProfileRow.region.in_(selection.regions))
        if selection.brands:
            query = query.where(ProfileRow.brand.in_(selection.brands))
        if selection.min_affinity is not None:
            query = query.where(
                select(Affinity.msisdn)
                .where(
                    Affinity.version_id == version_id,
                    Affinity.msisdn == ProfileRow.msisdn,
                    Affinity.offer_id.in_(list(offer_ids)),
                    Affinity.score >= selection.min_affinity,
                )
                .exists()
            )
        wanted = {service: set(stages) for service, stages in selection.lifecycle.items()}
        chosen = []
        for msisdn, lifecycle in session.execute(query.order_by(ProfileRow.msisdn)):
            if wanted:
                stages = dict(p.split(":", 1) for p in lifecycle.split(";")) if lifecycle else {}
                if any(stages.get(s, "none") not in allowed for s, allowed in wanted.items()):
                    continue
            chosen.append(msisdn)
        return chosen

    def _replace_targets(
        self,
        campaign_id: str,
        targets: Sequence[tuple[str, int]],
        source: str,
        selection: str,
        version_id: int | None,
    ) -> None:
        now = self.clock.now()
        with self.db.write() as session:
            campaign = self._campaign(session, campaign_id, lock=True)
            self._require_draft(campaign, "given targets")
            session.execute(delete(CampaignTarget).where(CampaignTarget.campaign_id == campaign_id))
            for start in range(0, len(targets), 5000):
                insert_rows(
                    session,
                    CampaignTarget.__table__,  # type: ignore[arg-type]
                    [
                        {"campaign_id": campaign_id, "msisdn": m, "line": line}
                        for m, line in targets[start : start + 5000]
                    ],
                )
            campaign.targets = len(targets)
            campaign.target_source = source
            campaign.selection = selection
            campaign.targets_version = version_id
            campaign.updated_at = now

    def _unknown(self, campaign_id: str, version_id: int | None) -> int:
        if version_id is None:
            return 0
        with self.db.read() as session:
            rows = fetch(
                session,
                "SELECT count(*) FROM campaign_targets t WHERE t.campaign_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM profiles p WHERE p.version_id = ? AND p.msisdn = t.msisdn)",
                (campaign_id, version_id),
            )
        return int(rows[0][0])

    # -- rehearsal --

    def rehearse(self, campaign_id: str) -> Rehearsal:
        started = time.perf_counter()
        version_id, catalog = self._catalog()
        now = self.clock.now()
        with self.db.read() as session:
            campaign = self._campaign(session, campaign_id)
            offer_ids = campaign.offers.split(";")
            offers = [o for i in offer_ids if (o := catalog.offer(i)) is not None]
            problems = [message for _, message in _offer_problems(catalog, offer_ids)]
            targets = unknown = control = 0
            accepts = revenue = value = 0.0
            removed: Counter[str] = Counter()
            eligible_by_offer: Counter[str] = Counter()
            removed_by_offer: dict[str, Counter[str]] = {o.id: Counter() for o in offers}
            lead: Counter[str] = Counter()
            for target in screen_targets(session, catalog, version_id, campaign_id, offers, now):
                targets += 1
                unknown += not target.known
                for offer_id, rule in target.offer_rules.items():
                    removed_by_offer[offer_id][rule] += 1
                for offer_id in target.allowed:
                    eligible_by_offer[offer_id] += 1
                if target.rule is not None:
                    removed[target.rule] += 1
                elif in_control(campaign_id, target.msisdn, campaign.control_share):
                    control += 1
                else:
                    assert target.lead is not None
                    offer = catalog.offer(target.lead)
                    assert offer is not None
                    lead[target.lead] += 1
                    accepts += target.probability
                    revenue += target.probability * offer.price
                    value += target.priority
        if targets == 0:
            problems.append("targets: the campaign has no targets yet")
        eligible = targets - sum(removed.values())
        to_call = eligible - control
        today = local_day(campaign, now)
        campaign_days = max(0, (campaign.ends_on - max(today, campaign.starts_on)).days + 1)
        days_needed = math.ceil(to_call / campaign.daily_cap)
        return Rehearsal(
            campaign_id=campaign_id,
            data_version=version_id,
            rehearsed_at=now,
            seconds=round(time.perf_counter() - started, 3),
            targets=targets,
            unknown=unknown,
            removed=sum(removed.values()),
            removed_by_rule=dict(removed.most_common()),
            eligible=eligible,
            control=control,
            to_call=to_call,
            expected_accepts=round(accepts, 2),
            expected_revenue=round(revenue, 2),
            expected_value=round(value, 2),
            daily_cap=campaign.daily_cap,
            calls_per_day=min(campaign.daily_cap, to_call),
            days_needed=days_needed,
            campaign_days=campaign_days,
            fits=days_needed <= campaign_days,
            offers=[
                OfferRehearsal(
                    offer_id=o.id,
                    eligible=eligible_by_offer[o.id],
                    removed_by_rule=dict(removed_by_offer[o.id].most_common()),
                    lead=lead[o.id],
                )
                for o in offers
            ],
            problems=problems,
        )

    # -- the life cycle --

    def transition(self, actor: Actor, campaign_id: str, request: TransitionIn) -> CampaignOut:
        action = request.action
        sources, target = ACTIONS[action]
        now = self.clock.now()
        catalog: Catalog | None = None
        version_id: int | None = None
        tasks: list[tuple[Any, ...]] = []
        if action in ("submit", "launch"):
            version_id, catalog = self._catalog()
        if action == "launch":
            # Screen the targets before taking the write lock (a read, possibly seconds long);
            # the write below re-checks that the campaign is still approved.
            with self.db.read() as session:
                campaign = self._campaign(session, campaign_id)
                self._check_status(campaign, action, sources)
                assert catalog is not None and version_id is not None
                tasks = self._queue_rows(session, campaign, catalog, version_id, now)
        with self.db.write() as session:
            campaign = self._campaign(session, campaign_id, lock=True)
            self._check_status(campaign, action, sources)
            if action == "submit":
                assert catalog is not None
                self._check_submittable(campaign, catalog, now)
                campaign.submitted_by = actor.user_id
                campaign.approved_by = None
            elif action in ("approve", "reject"):
                if actor.role not in APPROVERS:
                    raise Forbidden(
                        f"role {actor.role!r} may not {action} campaigns; "
                        f"allowed: {', '.join(APPROVERS)}"
                    )
                if actor.user_id == campaign.submitted_by:
                    raise Forbidden(
                        f"{actor.user_id} submitted campaign {campaign_id} and so may not "
                        f"{action} it: another supervisor or admin must"
                    )
                if action == "approve":
                    campaign.approved_by = actor.user_id
            elif action == "launch":
                assert catalog is not None
                self._check_submittable(campaign, catalog, now)
                self._insert_tasks(session, campaign_id, tasks, now)
                campaign.launched_version = version_id
            elif action == "end":
                session.execute(
                    update(CallTask)
                    .where(CallTask.campaign_id == campaign_id, CallTask.status == "queued")
                    .values(status="closed", result="ended", closed_at=now, updated_at=now)
                )
            self._event(session, campaign, campaign.status, target, actor, now, request.note)
            campaign.status = target
            campaign.updated_at = now
        if action == "launch" and not self.db.is_sqlite:
            # PostgreSQL plans the queue's query from table statistics: after a bulk insert
            # they are stale until autovacuum comes by (a lease then sorts the whole queue).
            with self.db.write() as session:
                session.execute(text("ANALYZE call_tasks"))
        return self.get(campaign_id)

    @staticmethod
    def _check_status(campaign: Campaign, action: str, sources: Sequence[str]) -> None:
        if campaign.status not in sources:
            raise Conflict(
                f"campaign {campaign.id} is {campaign.status}; {action} applies to a "
                f"{' or '.join(sources)} campaign",
                field="action",
            )

    @staticmethod
    def _check_submittable(campaign: Campaign, catalog: Catalog, now: datetime) -> None:
        problems = _offer_problems(catalog, campaign.offers.split(";"))
        if problems:
            field, message = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise Unprocessable(message + more, field=field)
        if campaign.targets == 0:
            raise Unprocessable(
                f"targets: campaign {campaign.id} has no targets; load a list "
                f"(PUT /v1/campaigns/{campaign.id}/targets) or select them",
                field="targets",
            )
        today = local_day(campaign, now)
        if campaign.ends_on < today:
            raise Unprocessable(
                f"ends_on: {campaign.ends_on} has passed (today is {today} in {campaign.timezone})",
                field="ends_on",
            )

    def _queue_rows(
        self, session: Session, campaign: Campaign, catalog: Catalog, version_id: int, now: datetime
    ) -> list[tuple[Any, ...]]:
        """(msisdn, status, result, rule, detail, priority) for every target: queued, held out
        as control, or closed by the rule that removed it."""
        offers = [o for i in campaign.offers.split(";") if (o := catalog.offer(i)) is not None]
        rows: list[tuple[Any, ...]] = []
        for target in screen_targets(session, catalog, version_id, campaign.id, offers, now):
            if target.rule is not None:
                rows.append(
                    (target.msisdn, "closed", "suppressed", target.rule, target.detail, 0.0)
                )
            elif in_control(campaign.id, target.msisdn, campaign.control_share):
                rows.append((target.msisdn, "closed", "control", None, None, target.priority))
            else:
                rows.append((target.msisdn, "queued", None, None, None, target.priority))
        return rows

    @staticmethod
    def _insert_tasks(
        session: Session, campaign_id: str, rows: Sequence[tuple[Any, ...]], now: datetime
    ) -> None:
        for start in range(0, len(rows), 5000):
            insert_rows(
                session,
                CallTask.__table__,  # type: ignore[arg-type]
                [
                    {
                        "campaign_id": campaign_id,
                        "msisdn": msisdn,
                        "status": status,
                        "result": result,
                        "rule": rule,
                        "detail": detail,
                        "priority": priority,
                        "due_at": now,
                        "callback": False,
                        "leases": 0,
                        "no_answers": 0,
                        "created_at": now,
                        "updated_at": now,
                        "closed_at": now if status == "closed" else None,
                    }
                    for msisdn, status, result, rule, detail, priority in rows[start : start + 5000]
                ],
            )

    @staticmethod
    def _event(
        session: Session,
        campaign: Campaign,
        from_status: str,
        to_status: str,
        actor: Actor,
        now: datetime,
        note: str,
    ) -> CampaignEvent:
        event = CampaignEvent(
            campaign_id=campaign.id,
            from_status=from_status,
            to_status=to_status,
            user_id=actor.user_id,
            role=actor.role,
            at=now,
            note=note,
        )
        session.add(event)
        return event

    # -- the queue, seen by a supervisor --

    def queue(self, campaign_id: str) -> QueueOut:
        now = self.clock.now()
        with self.db.read() as session:
            campaign = self._campaign(session, campaign_id)
            due_now = (CallTask.due_at <= now).label("due")
            rows = session.execute(
                select(CallTask.status, CallTask.result, CallTask.callback, due_now, func.count())
                .where(CallTask.campaign_id == campaign_id)
                .group_by(CallTask.status, CallTask.result, CallTask.callback, due_now)
            ).all()
            day = local_day(campaign, now).isoformat()
            calls = session.scalar(
                select(CampaignDay.calls).where(
                    CampaignDay.campaign_id == campaign_id, CampaignDay.day == day
                )
            )
        results: Counter[str] = Counter()
        queued_due = queued_later = callbacks = leased = total = 0
        for status, result, callback, due, count in rows:
            total += count
            if status == "closed":
                results[result or "closed"] += count
            elif status == "leased":
                leased += count
            else:
                callbacks += count if callback else 0
                if due:
                    queued_due += count
                else:
                    queued_later += count
        reason = closed_reason(campaign, now) if campaign.status == "live" else None
        if campaign.status != "live":
            reason = f"campaign {campaign_id} is {campaign.status}"
        return QueueOut(
            campaign_id=campaign_id,
            status=campaign.status,
            open_now=reason is None,
            closed_because=reason,
            calls_today=calls or 0,
            daily_cap=campaign.daily_cap,
            queued_due=queued_due,
            queued_later=queued_later,
            callbacks=callbacks,
            leased=leased,
            results=dict(results.most_common()),
            total=total,
        )


# --- the demo and the command line -------------------------------------------------------------

_DEMO_PLANNER = Actor(key_id=0, user_id="admin-dai", role="admin")
_DEMO_APPROVER = Actor(key_id=0, user_id="sup-chen", role="supervisor")
# (id, name, strategy, offers, selection, how far it goes)
_DEMO: tuple[tuple[str, str, str, list[str], SelectionIn, str], ...] = (
    (
        "demo-crbt-silent",
        "Wake up silent ring-back tones with the 1-yuan music box",
        "direct_recommendation",
        ["crbt_music_box"],
        SelectionIn(lifecycle={"crbt": ["silent"]}, min_affinity=0.4),
        "live",
    ),
    (
        "demo-crbt-annual",
        "Keep ring-back tones at risk: the annual package (Nanjing, Suzhou)",
        "monthly_to_annual",
        ["crbt_annual"],
        SelectionIn(lifecycle={"crbt": ["churn_risk"]}, regions=["Nanjing", "Suzhou"]),
        "live",
    ),
    (
        "demo-newspaper-trial",
        "Mobile newspaper: a free month for followers",
        "trial_user_selection",
        ["newspaper"],
        SelectionIn(segments=["emotional_follower", "rational_follower"], min_affinity=0.5),
        "submitted",
    ),
)


def demo_campaigns(db: Database, clock: Clock) -> list[str]:
    """Two live campaigns and one awaiting approval on the demo data (kept if they exist);
    lines for the demo's printout. The demo calls around the clock so that it can be tried at
    any hour; a real campaign keeps the default 09:00-20:00."""
    reader = WarehouseReader(db, cache_size=16, version_check_seconds=0)
    service = CampaignService(db, reader, clock)
    today = clock.now().astimezone(_zone(DEFAULT_TIMEZONE)).date()
    lines = ["", "campaigns (docs/campaigns.md; approve the third with the supervisor key):"]
    for campaign_id, name, strategy, offers, selection, goal in _DEMO:
        try:
            out = service.get(campaign_id)
        except NotFound:
            out = None
        if out is None:
            try:
                out = _demo_campaign(
                    service, today, campaign_id, name, strategy, offers, selection, goal
                )
            except ServiceError as exc:  # a tiny demo may have nobody to select
                lines.append(f"  {campaign_id:<22} not set up: {exc.message}")
                continue
        queue = service.queue(campaign_id) if out.status == "live" else None
        what = (
            f"{queue.queued_due + queue.queued_later} of {out.targets} targets to call"
            if queue
            else f"{out.targets} targets, awaiting approval"
            if out.status == "submitted"
            else f"{out.targets} targets"
        )
        lines.append(f"  {campaign_id:<22} {out.status:<9} {what}: {out.name}")
    return lines


def _demo_campaign(
    service: CampaignService,
    today: date,
    campaign_id: str,
    name: str,
    strategy: str,
    offers: list[str],
    selection: SelectionIn,
    goal: str,
) -> CampaignOut:
    service.create(
        _DEMO_PLANNER,
        CampaignIn(
            id=campaign_id,
            name=name,
            strategy=strategy,  # type: ignore[arg-type]
            offers=offers,
            starts_on=today,
            ends_on=today + timedelta(days=30),
            calling_from="00:00",
            calling_until="24:00",
            daily_cap=2000,
        ),
    )
    service.select_targets(_DEMO_PLANNER, campaign_id, selection)
    steps = ["submit"] + (["approve", "launch"] if goal == "live" else [])
    for action in steps:
        actor = _DEMO_APPROVER if action == "approve" else _DEMO_PLANNER
        step = TransitionIn(action=action)  # type: ignore[arg-type]
        out = service.transition(actor, campaign_id, step)
    return out


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nextbest campaigns ...``: load a target list file, rehearse, list."""
    parser = sub.add_parser("campaigns", help="campaigns: load a target list, rehearse, list")
    actions = parser.add_subparsers(metavar="ACTION")
    targets = actions.add_parser("targets", help="load a draft's target list from a file")
    targets.add_argument("campaign", help="the campaign id")
    targets.add_argument("file", type=Path, help="one number per line, or CSV with msisdn")
    targets.set_defaults(func=_cli_targets)
    rehearse = actions.add_parser("rehearse", help="rehearse a campaign, print the result")
    rehearse.add_argument("campaign")
    rehearse.set_defaults(func=_cli_rehearse)
    listing = actions.add_parser("list", help="list campaigns")
    listing.set_defaults(func=_cli_list)


def _cli_service(settings: Settings) -> tuple[Database, CampaignService]:
    db = Database(settings)
    db.create_schema()
    reader = WarehouseReader(db, cache_size=16, version_check_seconds=0)
    return db, CampaignService(db, reader, SystemClock())


def _cli_targets(settings: Settings, args: argparse.Namespace) -> int:
    db, service = _cli_service(settings)
    try:
        report = service.load_targets(_CLI, args.campaign, args.file.read_bytes())
    except OSError as exc:
        print(f"nextbest campaigns targets: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"nextbest campaigns targets: {exc.message}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(
        f"loaded {report.loaded} numbers into {args.campaign}; {report.rejected} lines "
        f"rejected; {report.unknown} numbers unknown to the warehouse"
    )
    for line in report.rejected_lines:
        print(f"  {args.file}:{line.line}: {line.reason}: {line.value}")
    if report.rejected > len(report.rejected_lines):
        print(f"  ... and {report.rejected - len(report.rejected_lines)} more")
    return 0


def _cli_rehearse(settings: Settings, args: argparse.Namespace) -> int:
    db, service = _cli_service(settings)
    try:
        rehearsal = service.rehearse(args.campaign)
    except ServiceError as exc:
        print(f"nextbest campaigns rehearse: {exc.message}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(msgspec.json.format(msgspec.json.encode(rehearsal), indent=2).decode())
    return 0


def _cli_list(settings: Settings, args: argparse.Namespace) -> int:
    db, service = _cli_service(settings)
    try:
        for c in service.campaigns():
            print(f"{c.id}\t{c.status}\t{c.targets}\t{c.strategy}\t{c.name}")
    finally:
        db.dispose()
    return 0


_CLI = Actor(key_id=0, user_id="cli", role="admin")
