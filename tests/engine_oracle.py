"""THE REFERENCE IMPLEMENTATION, kept only for tests/test_engine_equivalence.py.

A verbatim copy of nextbest/policy.py, ranking.py, pitch.py, talk.py (render) and engine.py as
they were before the decision core was optimised (precomputed per-catalog forms, reasons built
only for shown offers, cached script renders). The equivalence test asserts the optimised
``propose`` gives exactly this code's output. Do not optimise or "fix" this file: its whole
value is being the old, obviously-correct code; change it only together with a deliberate
change of behaviour in the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import jinja2
import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nextbest.catalog import Catalog, Offer, Script
from nextbest.experiments import Assignment, baseline_offers
from nextbest.learning import LearnedTable, reason_text
from nextbest.msisdn import mask
from nextbest.records import ContactEvent, Profile
from nextbest.wire import ObjectionOut, ScriptOut

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


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    text: str
    text_zh: str


class Ranked(msgspec.Struct, frozen=True, kw_only=True):
    offer: Offer
    probability: float
    score: float
    affinity: float | None
    reasons: tuple[Reason, ...]
    # The estimate before learning from outcomes adjusted it (None: no learned table given).
    base_probability: float | None = None


_CHANNEL_NAMES = {
    "store": ("the store counter", "营业厅"),
    "inbound": ("calling in", "来电"),
    "outbound": ("phone calls", "外呼"),
    "sms": ("SMS", "短信"),
}
_STAGE_REASONS = {
    "potential": ("Predicted to want {service}", "模型预测有{service}需求"),
    "silent": ("{service} unused for 3 months: a reason to come back", "{service}已沉默3个月"),
    "churn_risk": ("At risk of dropping {service}: keep them", "{service}有流失风险"),
    "churned": ("Dropped {service}: win them back", "已流失{service}用户,可挽回"),
}


def rank(
    catalog: Catalog,
    offers: Sequence[Offer],
    profile: Profile | None,
    affinities: Mapping[str, float],
    channel: str,
    events: Sequence[str],
    limit: int,
    *,
    learned: LearnedTable | None = None,
    min_probability: float | None = None,
) -> tuple[list[Ranked], list[Suppressed]]:
    """``learned``: what outcomes recorded here taught (nextbest/learning.py), applied to each
    estimate; ``min_probability`` overrides the catalog's floor (the control group's random
    baseline shows any eligible offer)."""
    weights = catalog.ranking
    floor = weights.min_probability if min_probability is None else min_probability
    scored: list[Ranked] = []
    suppressed: list[Suppressed] = []
    live = set(events)
    for offer in offers:
        reasons: list[Reason] = []
        affinity = affinities.get(offer.id)
        p = affinity if affinity is not None else offer.prior
        if affinity is not None:
            pct = round(affinity * 100)
            strength = "Strong" if affinity >= 0.5 else "Good" if affinity >= 0.25 else "Some"
            reasons.append(
                Reason(
                    code="affinity",
                    text=f"{strength} fit from the warehouse model ({pct}% propensity)",
                    text_zh=f"经营分析模型匹配度 {pct}%",
                )
            )
        elif profile is None:
            reasons.append(
                Reason(
                    code="general",
                    text="Suits most customers",
                    text_zh="适合大多数客户",
                )
            )
        else:
            reasons.append(
                Reason(
                    code="prior",
                    text="Popular with customers like this one",
                    text_zh="同类客户常选",
                )
            )
        if profile is not None:
            stage = profile.stage(offer.service)
            p *= weights.stage_boost.get(stage, 1.0)
            if offer.lifecycle and stage in _STAGE_REASONS:
                service = catalog.service(offer.service)
                name = service.name if service else offer.service
                name_zh = (service.name_zh or service.name) if service else offer.service
                en, zh = _STAGE_REASONS[stage]
                reasons.append(
                    Reason(
                        code=f"stage_{stage}",
                        text=en.format(service=name),
                        text_zh=zh.format(service=name_zh),
                    )
                )
            if channel in profile.channel_pref:
                position = profile.channel_pref.index(channel)
                fit = weights.channel_fit
                p *= fit[position] if position < len(fit) else weights.channel_fit_unlisted
                if position == 0:
                    en_name, zh_name = _CHANNEL_NAMES.get(channel, (channel, channel))
                    reasons.append(
                        Reason(
                            code="channel",
                            text=f"Responds best to {en_name}",
                            text_zh=f"偏好{zh_name}渠道",
                        )
                    )
            elif profile.channel_pref:
                p *= weights.channel_fit_unlisted
            if offer.segments:
                segment = catalog.segment(profile.segment)
                if segment is not None:
                    reasons.append(
                        Reason(
                            code="segment",
                            text=f"Made for {segment.name}: {segment.selling_point}".rstrip(": "),
                            text_zh=f"专为{segment.name_zh or segment.name}设计",
                        )
                    )
        matched = [e for e in offer.context_events if e in live]
        if matched:
            p *= weights.context_boost
            for code in matched:
                event = catalog.event(code)
                if event is not None:
                    reasons.append(
                        Reason(
                            code=f"context_{code}",
                            text=f"Just now: {event.description}",
                            text_zh=f"实时:{event.description_zh or event.description}",
                        )
                    )
        p = min(p, 0.99)
        base = p
        if learned is not None:
            segment_code = profile.segment if profile is not None else ""
            adjusted = learned.adjust(channel, offer.id, segment_code, p)
            if adjusted is not None:
                p = adjusted.probability
                said = reason_text(adjusted.estimate, channel, learned.window_days)
                if said is not None and adjusted.estimate.presented >= learned.min_presented:
                    reasons.append(Reason(code="learned", text=said[0], text_zh=said[1]))
        if p < floor:
            suppressed.append(
                Suppressed(
                    offer_id=offer.id,
                    rule="low_probability",
                    detail=f"estimated {p:.1%} < {floor:.0%}",
                )
            )
            continue
        score = p * offer.value**weights.value_exponent
        scored.append(
            Ranked(
                offer=offer,
                probability=round(p, 6),
                score=round(score, 6),
                affinity=affinity,
                reasons=tuple(reasons),
                base_probability=round(base, 6) if learned is not None else None,
            )
        )
    scored.sort(key=lambda r: (-r.score, r.offer.id))
    shown: list[Ranked] = []
    services: dict[str, str] = {}
    for ranked in scored:
        offer = ranked.offer
        if offer.service in services:
            suppressed.append(
                Suppressed(
                    offer_id=offer.id,
                    rule="one_per_service",
                    detail=f"{services[offer.service]} ranks higher for {offer.service}",
                )
            )
        elif len(shown) >= limit:
            suppressed.append(Suppressed(offer_id=offer.id, rule="limit", detail=RULES["limit"]))
        else:
            services[offer.service] = offer.id
            shown.append(ranked)
    return shown, suppressed


_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.clear()


@lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    return _compile(source).render(context).strip()


def choose_script(offer: Offer, channel: str, segment: str | None, lang: str) -> Script | None:
    """The most specific script: segment and language match, then language, then segment."""
    best: Script | None = None
    best_rank = -1
    for script in offer.scripts:
        if channel not in script.channels:
            continue
        if script.segments and (segment is None or segment not in script.segments):
            continue
        rank = (2 if script.lang == lang else 0) + (1 if script.segments else 0)
        if rank > best_rank:
            best, best_rank = script, rank
    return best


def render_script(
    catalog: Catalog,
    offer: Offer,
    profile: Profile | None,
    msisdn: str,
    channel: str,
    events: Sequence[str],
    lang: str,
) -> ScriptOut:
    script = choose_script(offer, channel, profile.segment if profile else None, lang)
    if script is None:  # the catalog check guarantees one per channel; stay safe anyway
        return ScriptOut(lang=lang, pitch=offer.name)
    context = _context(catalog, offer, profile, msisdn, channel, events, script.lang)
    return ScriptOut(
        lang=script.lang,
        pitch=render(script.pitch, context),
        opening=render(script.opening, context) if script.opening else "",
        objections=[
            ObjectionOut(objection=render(o.objection, context), answer=render(o.answer, context))
            for o in script.objections
        ],
        closing=render(script.closing, context) if script.closing else "",
    )


def _context(
    catalog: Catalog,
    offer: Offer,
    profile: Profile | None,
    msisdn: str,
    channel: str,
    events: Sequence[str],
    lang: str,
) -> dict[str, Any]:
    zh = lang == "zh"
    brand = catalog.brand(profile.brand) if profile else None
    segment = catalog.segment(profile.segment) if profile else None
    return {
        "customer": {
            "masked": mask(msisdn),
            "brand": ((brand.name_zh or brand.name) if zh else brand.name) if brand else "",
            "region": profile.region if profile else "",
            "known": profile is not None,
            "arpu": profile.arpu if profile else 0.0,
        },
        "segment": {
            "code": segment.code if segment else "",
            "name": ((segment.name_zh or segment.name) if zh else segment.name) if segment else "",
            "selling_point": (
                (segment.selling_point_zh or segment.selling_point) if zh else segment.selling_point
            )
            if segment
            else "",
        },
        "offer": {
            "id": offer.id,
            "name": (offer.name_zh or offer.name) if zh else offer.name,
            # 5 reads better than 5.0 in a sentence a clerk says aloud.
            "price": int(offer.price) if offer.price.is_integer() else offer.price,
            "service": offer.service,
        },
        "stage": profile.stage(offer.service) if profile else "none",
        "events": list(events),
        "channel": channel,
    }


class Proposed(msgspec.Struct, frozen=True, kw_only=True):
    ranked: Ranked
    script: ScriptOut


class Proposal(msgspec.Struct, frozen=True, kw_only=True):
    offers: list[Proposed]
    suppressed: list[Suppressed]
    customer_rule: str | None
    notice: str | None


def propose(
    catalog: Catalog,
    *,
    msisdn: str,
    profile: Profile | None,
    affinities: Mapping[str, float],
    history: Sequence[ContactEvent],
    channel: str,
    events: Sequence[str],
    now: datetime,
    limit: int | None = None,
    lang: str = "en",
    learned: LearnedTable | None = None,
    assignment: Assignment | None = None,
) -> Proposal:
    """``learned``: what outcomes taught (None: the warehouse's estimates alone);
    ``assignment``: the customer's control-group arm (None: no experiment runs)."""
    screening = screen(catalog, profile, history, channel, now)
    max_offers = catalog.policy.for_channel(channel).max_offers
    cap = max_offers if limit is None else min(limit, max_offers)
    if assignment is not None and assignment.arm == "control":
        # The control group: the baseline's offers instead of the ranked ones (experiments.py),
        # still estimated, so the report can compare what the model expected.
        chosen, held_back = baseline_offers(screening.allowed, assignment, cap)
        ranked, cut = rank(
            catalog,
            chosen,
            profile,
            affinities,
            channel,
            events,
            cap,
            learned=learned,
            min_probability=0.0,
        )
        cut = held_back + cut
    else:
        ranked, cut = rank(
            catalog, screening.allowed, profile, affinities, channel, events, cap, learned=learned
        )
    suppressed = screening.suppressed + cut
    offers = [
        Proposed(
            ranked=r,
            script=render_script(catalog, r.offer, profile, msisdn, channel, events, lang),
        )
        for r in ranked
    ]
    notice: str | None = None
    if screening.customer_rule is not None:
        detail = next(
            (s.detail for s in screening.suppressed if s.rule == screening.customer_rule),
            RULES[screening.customer_rule],
        )
        notice = detail[:1].upper() + detail[1:]
    elif not offers:
        notice = "No offer fits this customer right now."
    return Proposal(
        offers=offers,
        suppressed=suppressed,
        customer_rule=screening.customer_rule,
        notice=notice,
    )
