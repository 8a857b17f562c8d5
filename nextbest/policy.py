"""Eligibility and contact rules: which offers may be pitched to this customer, now, here.

Pure: takes the catalog, the warehouse profile (or None), the contact history (warehouse and
outcomes recorded here) and the clock, and returns the allowed offers plus, for each offer
removed, the rule that removed it. The windows all come from the catalog's policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import msgspec

from nextbest.catalog import Catalog, Offer
from nextbest.records import ContactEvent, Profile

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
        offer = catalog.offer(event.offer_id) if event.offer_id else None
        if event.kind in ("accepted", "subscribed") and event.offer_id:
            held.add(event.offer_id)
        elif event.kind == "cancelled" and event.offer_id:
            held.discard(event.offer_id)
            service = offer.service if offer else event.offer_id
            cancelled[service] = event.at
        elif event.kind == "declined" and event.offer_id:
            declined[event.offer_id] = event.at
        elif event.kind == "complaint":
            complaint = event.at
        if event.kind in REACHED:
            reached[event.channel] = max(event.at, reached.get(event.channel, event.at))
        if event.kind in REACHED or event.kind == "callback":
            last_word[event.channel] = (event.at, event.kind == "callback")
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
    state = contact_state(catalog, profile, history)
    offers = list(catalog.offers)

    customer_rule = _customer_rule(catalog, profile, state, channel, now)
    if customer_rule is not None:
        rule, detail = customer_rule
        # DND / complaint customers may still hear service-critical offers off outbound.
        if rule in ("dnd", "complaint") and channel != "outbound":
            critical = [o for o in offers if o.service_critical]
            blocked = [o for o in offers if not o.service_critical]
            allowed, suppressed = _screen_offers(catalog, profile, state, channel, now, critical)
            suppressed = [Suppressed(offer_id=o.id, rule=rule, detail=detail) for o in blocked] + (
                suppressed
            )
            return Screening(allowed=allowed, suppressed=suppressed, customer_rule=rule)
        return Screening(
            allowed=[],
            suppressed=[Suppressed(offer_id=o.id, rule=rule, detail=detail) for o in offers],
            customer_rule=rule,
        )
    allowed, suppressed = _screen_offers(catalog, profile, state, channel, now, offers)
    return Screening(allowed=allowed, suppressed=suppressed)


def _customer_rule(
    catalog: Catalog,
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
    rules = policy.for_channel(channel)
    if rules.recontact_days > 0 and not state.callback_pending.get(channel, False):
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
    catalog: Catalog,
    profile: Profile | None,
    state: ContactState,
    channel: str,
    now: datetime,
    offers: Sequence[Offer],
) -> tuple[list[Offer], list[Suppressed]]:
    policy = catalog.policy
    today = now.date()
    held_groups = {
        offer.group
        for offer_id in state.held
        if (offer := catalog.offer(offer_id)) is not None and offer.group
    }
    allowed: list[Offer] = []
    suppressed: list[Suppressed] = []
    for offer in offers:
        rule: str | None = None
        detail = ""
        if channel not in offer.channels:
            rule = "channel"
        elif (offer.valid_from and today < offer.valid_from) or (
            offer.valid_to and today > offer.valid_to
        ):
            rule = "validity"
            detail = f"valid {offer.valid_from or '...'} to {offer.valid_to or '...'}"
        elif offer.id in state.held:
            rule = "held"
        elif offer.group and offer.group in held_groups:
            rule = "exclusive"
            detail = f"holds another offer of group {offer.group!r}"
        elif profile is None and not offer.general:
            rule = "unknown_subscriber"
        elif profile is not None and offer.brands and profile.brand not in offer.brands:
            rule = "brand"
            detail = f"for {', '.join(offer.brands)}; customer is {profile.brand}"
        elif profile is not None and offer.segments and profile.segment not in offer.segments:
            rule = "segment"
        elif profile is not None and (missing := set(offer.requires) - set(profile.handset)):
            rule = "handset"
            detail = f"handset lacks {', '.join(sorted(missing))}"
        elif (
            profile is not None
            and offer.lifecycle
            and (profile.stage(offer.service) not in offer.lifecycle)
        ):
            rule = "lifecycle"
            detail = (
                f"{offer.service} stage is {profile.stage(offer.service)}; "
                f"offer is for {', '.join(offer.lifecycle)}"
            )
        elif profile is not None and "arrears" in profile.flags and not offer.allow_arrears:
            rule = "arrears"
        else:
            cancelled = state.cancelled_at.get(offer.service)
            block = offer.cancel_block_days
            block = policy.cancel_block_days if block is None else block
            declined = state.declined_at.get(offer.id)
            cooldown = offer.cooldown_days
            cooldown = policy.decline_cooldown_days if cooldown is None else cooldown
            if cancelled is not None and now - cancelled < timedelta(days=block):
                rule = "cancelled_recently"
                detail = (
                    f"cancelled {offer.service} {(now - cancelled).days} days ago "
                    f"(not offered again within {block} days)"
                )
            elif declined is not None and now - declined < timedelta(days=cooldown):
                rule = "declined_cooldown"
                until = declined + timedelta(days=cooldown)
                detail = (
                    f"declined {(now - declined).days} days ago; "
                    f"may be offered again from {until:%Y-%m-%d}"
                )
        if rule is None:
            allowed.append(offer)
        else:
            suppressed.append(
                Suppressed(offer_id=offer.id, rule=rule, detail=detail or RULES[rule])
            )
    return allowed, suppressed
