"""Eligibility and contact rules: which offers may be pitched to this customer, now, here.

Pure: takes the catalog, the warehouse profile (or None), the contact history (warehouse and
outcomes recorded here) and the clock, and returns the allowed offers plus, for each offer
removed, the rule that removed it. The windows all come from the catalog's policy.

On every decision's path: what depends on the catalog alone (each offer's rules as sets, the
removals whose wording never changes) is worked out once per catalog (``_Form``), so a
decision only compares the customer with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta

import msgspec

from nextbest.catalog import Catalog, ChannelPolicy, Offer
from nextbest.records import STAGES, ContactEvent, Profile

__all__ = ["REACHED", "RULES", "Screening", "Suppressed", "contact_state", "screen"]

# Contact kinds that mean the customer was actually reached (for the re-contact window).
# A callback request is not counted: the customer asked for the next call.
REACHED = frozenset({"contacted", "subscribed", "presented", "accepted", "declined", "considering"})

# Every rule's code with the sentence a person reads.
RULES: dict[str, str] = {
    "unknown_subscriber": "not known to the warehouse: only general offers apply",
    "dnd": "customer is on the do-not-disturb list",
    "complaint": "customer is flagged by customer service (complaint or sensitive)",
    "recontact": "reached on this channel too recently",
    "segment_not_for_channel": "this persona segment is not worth an outbound call",
    "channel": "offer is not sold on this channel",
    "validity": "offer is outside its validity dates",
    "brand": "offer is not for this brand",
    "segment": "offer is not for this persona segment",
    "handset": "handset lacks a capability the offer needs",
    "lifecycle": "offer does not fit the customer's lifecycle stage for this service",
    "arrears": "customer is in arrears",
    "held": "customer already holds this offer",
    "exclusive": "customer holds a mutually exclusive offer",
    "cancelled_recently": "customer cancelled this service recently",
    "declined_cooldown": "customer declined this offer recently",
    "low_probability": "too unlikely to be accepted to be worth the customer's time",
    "one_per_service": "a better offer for the same service is shown",
    "limit": "beyond the number of offers shown per contact",
}


class Suppressed(msgspec.Struct, frozen=True, kw_only=True):
    offer_id: str
    rule: str
    detail: str


class ContactState(msgspec.Struct, frozen=True, kw_only=True):
    """What the contact history says, folded once per decision."""

    held: frozenset[str]
    declined_at: dict[str, datetime]  # offer id -> last decline
    cancelled_at: dict[str, datetime]  # service -> last cancellation
    last_reached: dict[str, datetime]  # channel -> last contact that reached the customer
    callback_pending: dict[str, bool]  # channel -> the latest word there was "call me back"
    last_complaint: datetime | None


class Screening(msgspec.Struct, frozen=True, kw_only=True):
    allowed: list[Offer]
    suppressed: list[Suppressed]
    # A rule that removed every offer for this customer on this channel, if any.
    customer_rule: str | None = None


def contact_state(
    catalog: Catalog, profile: Profile | None, history: Iterable[ContactEvent]
) -> ContactState:
    held = set(profile.subscriptions) if profile else set()
    declined: dict[str, datetime] = {}
    cancelled: dict[str, datetime] = {}
    reached: dict[str, datetime] = {}
    last_word: dict[str, tuple[datetime, bool]] = {}
    complaint: datetime | None = None
    for event in sorted(history, key=lambda e: e.at):
        kind = event.kind
        if kind in ("accepted", "subscribed") and event.offer_id:
            held.add(event.offer_id)
        elif kind == "cancelled" and event.offer_id:
            held.discard(event.offer_id)
            offer = catalog.offer(event.offer_id)
            service = offer.service if offer else event.offer_id
            cancelled[service] = event.at
        elif kind == "declined" and event.offer_id:
            declined[event.offer_id] = event.at
        elif kind == "complaint":
            complaint = event.at
        if kind in REACHED:
            reached[event.channel] = max(event.at, reached.get(event.channel, event.at))
        if kind in REACHED or kind == "callback":
            last_word[event.channel] = (event.at, kind == "callback")
    return ContactState(
        held=frozenset(held),
        declined_at=declined,
        cancelled_at=cancelled,
        last_reached=reached,
        callback_pending={channel: word[1] for channel, word in last_word.items()},
        last_complaint=complaint,
    )


def screen(
    catalog: Catalog,
    profile: Profile | None,
    history: Sequence[ContactEvent],
    channel: str,
    now: datetime,
) -> Screening:
    form = catalog.derived("policy", _Form)
    if history:
        state = contact_state(catalog, profile, history)
    else:  # most customers: nothing to fold but what they hold
        state = ContactState(
            held=frozenset(profile.subscriptions) if profile else _NOTHING,
            declined_at={},
            cancelled_at={},
            last_reached={},
            callback_pending={},
            last_complaint=None,
        )

    customer_rule = _customer_rule(catalog, form, profile, state, channel, now)
    if customer_rule is not None:
        rule, detail = customer_rule
        # DND / complaint customers may still hear service-critical offers off outbound.
        if rule in ("dnd", "complaint") and channel != "outbound":
            allowed, suppressed = _screen_offers(
                form, profile, state, channel, now, critical_only=True
            )
            suppressed = form.blanket(rule, detail, critical_too=False) + suppressed
            return Screening(allowed=allowed, suppressed=suppressed, customer_rule=rule)
        return Screening(
            allowed=[],
            suppressed=form.blanket(rule, detail, critical_too=True),
            customer_rule=rule,
        )
    allowed, suppressed = _screen_offers(form, profile, state, channel, now)
    return Screening(allowed=allowed, suppressed=suppressed)


_NOTHING: frozenset[str] = frozenset()
# Stands for "a stage the offer's table does not list" (Suppressed is always true).
_UNLISTED = Suppressed(offer_id="", rule="", detail="")
# Bounds of the per-catalog memos whose keys come from requests or warehouse rows.
_MEMO_LIMIT = 512
_PLAN_LIMIT = 4096  # (channel, day, brand, segment, handset, arrears) seen


class _OfferRules:
    """One offer's rules as the screening loop reads them, with the removals whose detail never
    changes prebuilt (Suppressed is frozen: one instance serves every decision)."""

    __slots__ = (
        "allow_arrears",
        "brands",
        "brands_text",
        "by_brand",
        "by_missing",
        "by_stage",
        "cancel_block",
        "cancel_block_days",
        "cooldown",
        "cooldown_days",
        "general",
        "group",
        "held",
        "id",
        "in_arrears",
        "invalid",
        "lifecycle",
        "lifecycle_text",
        "offer",
        "other_group",
        "requires",
        "segment",
        "segments",
        "service",
        "unknown",
        "valid_from",
        "valid_to",
    )

    def __init__(self, offer: Offer, catalog: Catalog) -> None:
        policy = catalog.policy
        oid = offer.id
        self.offer = offer
        self.id = oid
        self.service = offer.service
        self.group = offer.group
        self.general = offer.general
        self.allow_arrears = offer.allow_arrears
        self.valid_from: date | None = offer.valid_from
        self.valid_to: date | None = offer.valid_to
        # Membership as it always was (these tuples hold one to three codes).
        self.brands = offer.brands
        self.brands_text = ", ".join(offer.brands)
        self.segments = offer.segments
        self.requires = frozenset(offer.requires)
        self.lifecycle = offer.lifecycle
        self.lifecycle_text = ", ".join(offer.lifecycle)
        # Per stage, the lifecycle removal or None (fits); None for an offer for any stage.
        # A stage not listed (never from the warehouse) is not among the offer's.
        self.by_stage: dict[str, Suppressed | None] | None = None
        if offer.lifecycle:
            self.by_stage = {
                stage: None if stage in offer.lifecycle else _lifecycle_refusal(self, stage)
                for stage in (*STAGES, *offer.lifecycle)
            }
        block = offer.cancel_block_days
        self.cancel_block_days = policy.cancel_block_days if block is None else block
        self.cancel_block = _days(self.cancel_block_days)
        cooldown = offer.cooldown_days
        self.cooldown_days = policy.decline_cooldown_days if cooldown is None else cooldown
        self.cooldown = _days(self.cooldown_days)
        self.invalid = Suppressed(
            offer_id=oid,
            rule="validity",
            detail=f"valid {offer.valid_from or '...'} to {offer.valid_to or '...'}",
        )
        self.held = Suppressed(offer_id=oid, rule="held", detail=RULES["held"])
        self.other_group = Suppressed(
            offer_id=oid, rule="exclusive", detail=f"holds another offer of group {offer.group!r}"
        )
        self.unknown = Suppressed(
            offer_id=oid, rule="unknown_subscriber", detail=RULES["unknown_subscriber"]
        )
        self.segment = Suppressed(offer_id=oid, rule="segment", detail=RULES["segment"])
        self.in_arrears = Suppressed(offer_id=oid, rule="arrears", detail=RULES["arrears"])
        # Removals whose detail names the customer's brand, missing capabilities or stage:
        # few distinct values, so each is built once (keys are plain strings, see _screen_offers).
        self.by_brand: dict[str, Suppressed] = {}
        self.by_missing: dict[frozenset[str], Suppressed] = {}


# One offer's screening plan: (removal by channel or dates, offer id, group, removal by
# unknown subscriber / brand / segment / handset, removal or None per lifecycle stage (None: any
# stage, or no profile), its service, removal by arrears, its rules).
_Step = tuple[
    Suppressed | None,
    str,
    str,
    Suppressed | None,
    dict[str, Suppressed | None] | None,
    str,
    Suppressed | None,
    _OfferRules,
]


def _days(days: int) -> timedelta | None:
    """The window as a timedelta, or None where it cannot be one (the check then builds it
    and fails just as it always did)."""
    try:
        return timedelta(days=days)
    except OverflowError:
        return None


class _Form:
    """The policy of one catalog, precomputed (Catalog.derived): the offers' rules in catalog
    order, per channel the offers sold there, and blanket removals by customer-level rules."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.rules = tuple(_OfferRules(offer, catalog) for offer in catalog.offers)
        self.not_sold = tuple(
            Suppressed(offer_id=offer.id, rule="channel", detail=RULES["channel"])
            for offer in catalog.offers
        )
        self.critical = tuple(offer.service_critical for offer in catalog.offers)
        self._plans: dict[tuple[object, ...], tuple[_Step, ...]] = {}
        self._blankets: dict[tuple[str, str, bool], tuple[Suppressed, ...]] = {}
        self._channels: dict[str, ChannelPolicy] = {}

    def plan(
        self, profile: Profile | None, channel: str, today: date, critical_only: bool
    ) -> tuple[_Step, ...]:
        """Per offer to screen (catalog order), what the rules that read only the channel, the
        day and the customer's brand, segment, handset and flags decide: few distinct
        customers as far as these go, so each plan is worked out once."""
        key = (
            (channel, today, critical_only)
            if profile is None
            else (
                channel,
                today,
                critical_only,
                profile.brand,
                profile.segment,
                profile.handset,
                "arrears" in profile.flags,
            )
        )
        try:
            found = self._plans.get(key)
        except TypeError:  # an unhashable code (never from the warehouse)
            return self._plan(profile, channel, today, critical_only)
        if found is None:
            found = self._plan(profile, channel, today, critical_only)
            # A brand that is not a plain string is worded afresh ("customer is 1" or "1.0").
            if profile is None or type(profile.brand) is str:
                if len(self._plans) >= _PLAN_LIMIT:
                    self._plans.clear()
                self._plans[key] = found
        return found

    def _plan(
        self, profile: Profile | None, channel: str, today: date, critical_only: bool
    ) -> tuple[_Step, ...]:
        steps: list[_Step] = []
        handset = frozenset(profile.handset) if profile is not None else _NOTHING
        arrears = profile is not None and "arrears" in profile.flags
        for rules, not_sold, critical in zip(self.rules, self.not_sold, self.critical, strict=True):
            if critical_only and not critical:
                continue
            fixed: Suppressed | None = None
            if channel not in rules.offer.channels:
                fixed = not_sold
            elif (rules.valid_from is not None and today < rules.valid_from) or (
                rules.valid_to is not None and today > rules.valid_to
            ):
                fixed = rules.invalid
            refusal: Suppressed | None = None
            if profile is None:
                if not rules.general:
                    refusal = rules.unknown
            elif rules.brands and profile.brand not in rules.brands:
                refusal = _brand_refusal(rules, profile.brand)
            elif rules.segments and profile.segment not in rules.segments:
                refusal = rules.segment
            elif rules.requires and not rules.requires <= handset:
                refusal = _handset_refusal(rules, rules.requires - handset)
            by_stage = rules.by_stage if profile is not None else None
            in_arrears = rules.in_arrears if arrears and not rules.allow_arrears else None
            steps.append(
                (fixed, rules.id, rules.group, refusal, by_stage, rules.service, in_arrears, rules)
            )
        return tuple(steps)

    def blanket(self, rule: str, detail: str, *, critical_too: bool) -> list[Suppressed]:
        """Every offer (or every offer but the service-critical ones) removed by a
        customer-level rule, in catalog order; a new list each time (the caller's to keep)."""
        key = (rule, detail, critical_too)
        found = self._blankets.get(key)
        if found is None:
            found = tuple(
                Suppressed(offer_id=rules.id, rule=rule, detail=detail)
                for rules, critical in zip(self.rules, self.critical, strict=True)
                if critical_too or not critical
            )
            if len(self._blankets) >= _MEMO_LIMIT:
                self._blankets.clear()
            self._blankets[key] = found
        return list(found)

    def channel_policy(self, channel: str) -> ChannelPolicy:
        found = self._channels.get(channel)
        if found is None:
            found = self.catalog.policy.for_channel(channel)
            if len(self._channels) < _MEMO_LIMIT:
                self._channels[channel] = found
        return found


def _customer_rule(
    catalog: Catalog,
    form: _Form,
    profile: Profile | None,
    state: ContactState,
    channel: str,
    now: datetime,
) -> tuple[str, str] | None:
    policy = catalog.policy
    if profile is not None and "dnd" in profile.flags:
        return "dnd", RULES["dnd"]
    if profile is not None and "complaint" in profile.flags:
        return "complaint", RULES["complaint"]
    if state.last_complaint is not None:
        since = now - state.last_complaint
        if since < timedelta(days=policy.complaint_block_days):
            return "complaint", (
                f"complaint recorded {since.days} days ago "
                f"(excluded for {policy.complaint_block_days} days)"
            )
    rules = form.channel_policy(channel)
    if (
        rules.recontact_days > 0
        and state.last_reached
        and not state.callback_pending.get(channel, False)
    ):
        counted = {channel, *rules.counts_channels}
        last = max(
            (state.last_reached[c] for c in counted if c in state.last_reached), default=None
        )
        if last is not None and now - last < timedelta(days=rules.recontact_days):
            days = (now - last).days
            return "recontact", (
                f"last reached by {channel} {days} days ago "
                f"(no {channel} offer within {rules.recontact_days} days)"
            )
    if profile is not None and channel == "outbound":
        segment = catalog.segment(profile.segment)
        if segment is not None and not segment.outbound:
            return "segment_not_for_channel", f"{segment.name}: {RULES['segment_not_for_channel']}"
    return None


def _screen_offers(
    form: _Form,
    profile: Profile | None,
    state: ContactState,
    channel: str,
    now: datetime,
    *,
    critical_only: bool = False,
) -> tuple[list[Offer], list[Suppressed]]:
    """The offer-level rules, in the order they always applied: channel, validity, held,
    exclusive, unknown subscriber, brand, segment, handset, lifecycle, arrears, cancelled,
    declined. The first that applies removes the offer; what the customer's brand, segment,
    handset and flags decide comes precomputed (_Form.plan)."""
    held = state.held
    # Groups of the offers held, looked up in the whole catalog (a campaign's narrowed view,
    # nextbest/campaigns.py, screens some offers but knows them all).
    held_groups = (
        {o.group for i in held if (o := form.catalog.offer(i)) is not None and o.group}
        if held
        else _NOTHING
    )
    cancelled_at = state.cancelled_at
    declined_at = state.declined_at
    recent = bool(cancelled_at or declined_at)
    stages: Mapping[str, str] = profile.lifecycle if profile is not None else {}
    allowed: list[Offer] = []
    suppressed: list[Suppressed] = []
    append = suppressed.append
    for fixed, oid, group, refusal, by_stage, service, arrears, rules in form.plan(
        profile, channel, now.date(), critical_only
    ):
        if fixed is not None:  # not sold on this channel, or outside its dates
            append(fixed)
        elif held and oid in held:
            append(rules.held)
        elif group and group in held_groups:
            append(rules.other_group)
        elif refusal is not None:  # unknown subscriber, brand, segment or handset
            append(refusal)
        elif by_stage is not None and (
            lifecycle := by_stage.get(stage := stages.get(service, "none"), _UNLISTED)
        ):
            append(_lifecycle_refusal(rules, stage) if lifecycle is _UNLISTED else lifecycle)
        elif arrears is not None:
            append(arrears)
        elif recent and (late := _recent_refusal(rules, now, cancelled_at, declined_at)):
            append(late)
        else:
            allowed.append(rules.offer)
    return allowed, suppressed


def _brand_refusal(rules: _OfferRules, brand: str) -> Suppressed:
    found = rules.by_brand.get(brand) if type(brand) is str else None
    if found is None:
        found = Suppressed(
            offer_id=rules.id, rule="brand", detail=f"for {rules.brands_text}; customer is {brand}"
        )
        if type(brand) is str and len(rules.by_brand) < _MEMO_LIMIT:
            rules.by_brand[brand] = found
    return found


def _handset_refusal(rules: _OfferRules, missing: frozenset[str]) -> Suppressed:
    found = rules.by_missing.get(missing)
    if found is None:
        found = Suppressed(
            offer_id=rules.id, rule="handset", detail=f"handset lacks {', '.join(sorted(missing))}"
        )
        if len(rules.by_missing) < _MEMO_LIMIT:
            rules.by_missing[missing] = found
    return found


def _lifecycle_refusal(rules: _OfferRules, stage: str) -> Suppressed:
    return Suppressed(
        offer_id=rules.id,
        rule="lifecycle",
        detail=f"{rules.service} stage is {stage}; offer is for {rules.lifecycle_text}",
    )


def _recent_refusal(
    rules: _OfferRules,
    now: datetime,
    cancelled_at: dict[str, datetime],
    declined_at: dict[str, datetime],
) -> Suppressed | None:
    """A recent cancellation of the offer's service or decline of the offer (the wording
    names the days, so these are built per decision)."""
    cancelled = cancelled_at.get(rules.service)
    block = rules.cancel_block_days
    if cancelled is not None and now - cancelled < (
        timedelta(days=block) if rules.cancel_block is None else rules.cancel_block
    ):
        return Suppressed(
            offer_id=rules.id,
            rule="cancelled_recently",
            detail=(
                f"cancelled {rules.service} {(now - cancelled).days} days ago "
                f"(not offered again within {block} days)"
            ),
        )
    declined = declined_at.get(rules.id)
    cooldown = rules.cooldown_days
    if declined is not None and now - declined < (
        timedelta(days=cooldown) if rules.cooldown is None else rules.cooldown
    ):
        until = declined + timedelta(days=cooldown)
        return Suppressed(
            offer_id=rules.id,
            rule="declined_cooldown",
            detail=(
                f"declined {(now - declined).days} days ago; "
                f"may be offered again from {until:%Y-%m-%d}"
            ),
        )
    return None
