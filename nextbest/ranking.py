"""Ranking: expected value of pitching each allowed offer, with the reasons a clerk can repeat.

score = p(accept) * value ** value_exponent, where p(accept) starts from the warehouse's
affinity (or the offer's prior) and is scaled by channel fit, lifecycle stage and live context,
then corrected by what recorded outcomes taught (nextbest/learning.py), when given.
Deterministic: equal scores fall back to the offer id.

On every decision's path, so the work is split: each offer's probability and score are plain
float arithmetic; the reasons (and their sentences) are put together only for the offers shown,
mostly from prebuilt pieces (per catalog, ``_Form``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import msgspec

from nextbest.catalog import Catalog, Offer
from nextbest.learning import Adjustment, LearnedTable, reason_text
from nextbest.policy import RULES, Suppressed
from nextbest.records import Profile

__all__ = ["Ranked", "Reason", "rank"]


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
    form = catalog.derived("ranking", _Form)
    floor = form.floor if min_probability is None else min_probability
    live = set(events) if events else None
    # What depends on the customer and channel alone, once for all offers.
    lifecycle: Mapping[str, str] = {}
    stage_boost = form.stage_boost
    channel_factor: float | None = None
    first_choice = False
    segment_code = ""
    if profile is not None:
        lifecycle = profile.lifecycle
        segment_code = profile.segment
        if channel in profile.channel_pref:
            position = profile.channel_pref.index(channel)
            fit = form.channel_fit
            channel_factor = fit[position] if position < len(fit) else form.unlisted
            first_choice = position == 0
        elif profile.channel_pref:
            channel_factor = form.unlisted
    # Each service's stage boost, read once per customer: ``boosts`` holds the services whose
    # stage has one (the others get 1.0), unless the catalog boosts "none" (a service the
    # warehouse says nothing of), when every offer looks its stage up.
    boosts: dict[str, float] | None = None
    if profile is not None and "none" not in stage_boost:
        try:
            boosts = {svc: stage_boost[st] for svc, st in lifecycle.items() if st in stage_boost}
        except TypeError:  # an unhashable stage (never from the warehouse)
            boosts = None
    suppressed: list[Suppressed] = []
    if (
        live is None
        and learned is None
        and boosts is not None
        and form.plain
        and _finite(affinities)
    ):
        scored = _estimate_plainly(
            form, catalog, offers, affinities, boosts, channel_factor, floor, suppressed
        )
    else:
        scored = _estimate(
            form,
            catalog,
            offers,
            profile,
            affinities,
            channel,
            boosts,
            channel_factor,
            live,
            learned,
            segment_code,
            floor,
            suppressed,
        )

    shown: list[Ranked] = []
    services: dict[str, str] = {}
    # What every shown offer's reasons start from, and the channel's, once per customer.
    opener = _GENERAL if profile is None else _PRIOR
    channel_reason = form.channel_reason(channel) if first_choice else None
    beaten = form.beaten
    count = 0
    for entry in _ordered(scored):
        rules = entry[3]
        service = rules.service
        if service in services:
            suppressed.append(beaten(services[service], rules))
        elif count >= limit:
            suppressed.append(rules.limited)
        else:
            services[service] = rules.id
            count += 1
            negated, _, _, _, p, affinity, base, adjusted = entry
            reasons = [opener if affinity is None else form.affinity_reason(affinity)]
            if profile is not None:
                if rules.stage_reasons:
                    stage = profile.lifecycle.get(service, "none")
                    if stage in _STAGE_REASONS:
                        reasons.append(rules.stage_reasons[stage])
                if channel_reason is not None:
                    reasons.append(channel_reason)
                if rules.segments and (segment := form.segment_reason(segment_code)):
                    reasons.append(segment)
            if live is not None or adjusted is not None:
                _more_reasons(reasons, form, rules, channel, live, learned, adjusted)
            shown.append(
                Ranked(
                    offer=rules.offer,
                    probability=_round6(p),
                    score=_round6(-negated),
                    affinity=affinity,
                    reasons=tuple(reasons),
                    base_probability=_round6(base) if learned is not None else None,
                )
            )
    return shown, suppressed


_INF = float("inf")
# Bounds of the per-catalog memos whose keys come from requests or warehouse rows.
_MEMO_LIMIT = 512
_AFFINITY_LIMIT = 16384
# Two scores this close may round (to 6 places, what Ranked shows and the order uses) to the
# same value; further apart they never do, so the unrounded order is the rounded one.
_TIE = 4e-6
_GENERAL = Reason(code="general", text="Suits most customers", text_zh="适合大多数客户")
_PRIOR = Reason(code="prior", text="Popular with customers like this one", text_zh="同类客户常选")

# (offer id, service, prior, value ** value_exponent or None, context events, the rest)
_Row = tuple[str, str, float, float | None, tuple[str, ...], "_OfferRank"]
# (-score, offer id, input position, rules, p, affinity, p before learning, learned adjustment)
_Scored = tuple[float, str, int, "_OfferRank", float, float | None, float, Adjustment | None]


def _estimate(
    form: _Form,
    catalog: Catalog,
    offers: Sequence[Offer],
    profile: Profile | None,
    affinities: Mapping[str, float],
    channel: str,
    boosts: dict[str, float] | None,
    channel_factor: float | None,
    live: set[str] | None,
    learned: LearnedTable | None,
    segment_code: str,
    floor: float,
    suppressed: list[Suppressed],
) -> list[_Scored]:
    """Each offer's acceptance estimate and score, in the input order; the offers under the
    floor go to ``suppressed``."""
    stage_boost = form.stage_boost
    boost = form.context_boost
    cap = 0.99
    inf = _INF
    rows = form.rows.get
    get_affinity = affinities.get
    lifecycle: Mapping[str, str] = profile.lifecycle if profile is not None else {}
    get_stage = lifecycle.get
    get_boost = stage_boost.get
    scored: list[_Scored] = []
    for index, offer in enumerate(offers):
        # By identity: a live object that has a catalog offer's id is that offer.
        row = rows(id(offer))
        if row is None:  # not this catalog's own offer object: work it out here
            row = _OfferRank(offer, catalog).row
        oid, service, prior, worth, context_events, rules = row
        affinity = get_affinity(oid)
        if affinity is None:
            p = prior
        else:
            p = affinity
            if not -inf < affinity < inf:
                form.affinity_reason(affinity)  # fails here, as it always did (round of NaN)
        # The same multiplications in the same order as ever: the floats come out bit for bit.
        if profile is not None:
            if boosts is None:
                p *= get_boost(get_stage(service, "none"), 1.0)
            elif boosts:
                p *= boosts.get(service, 1.0)
            else:
                p *= 1.0  # as it always was (an int estimate becomes a float)
            if channel_factor is not None:
                p *= channel_factor
        if live is not None and context_events:
            for code in context_events:
                if code in live:
                    p *= boost
                    break
        if p > cap:  # min(p, 0.99), without the call
            p = cap
        base = p
        adjusted: Adjustment | None = None
        if learned is not None:
            adjusted = learned.adjust(channel, oid, segment_code, p)
            if adjusted is not None:
                p = adjusted.probability
                rate = adjusted.estimate.rate
                if rate is not None and not -inf < rate < inf:
                    reason_text(adjusted.estimate, channel, learned.window_days)  # fails as ever
        if p < floor:
            suppressed.append(_unlikely(oid, p, floor))
            continue
        if worth is None:  # not a plain float (or no value at all): as it always was
            worth = offer.value**form.value_exponent
        scored.append((-(p * worth), oid, index, rules, p, affinity, base, adjusted))
    return scored


def _estimate_plainly(
    form: _Form,
    catalog: Catalog,
    offers: Sequence[Offer],
    affinities: Mapping[str, float],
    boosts: dict[str, float],
    channel_factor: float | None,
    floor: float,
    suppressed: list[Suppressed],
) -> list[_Scored]:
    """_estimate for the usual decision (a known customer, no live event, nothing learned,
    plain float weights, finite affinities), without the branches it cannot take."""
    # p is a float once the stage boost (a float, or 1.0) is applied: times 1.0 is exact.
    factor = 1.0 if channel_factor is None else channel_factor
    rows = form.rows.get
    get_affinity = affinities.get
    get_boost = boosts.get
    scored: list[_Scored] = []
    for index, offer in enumerate(offers):
        row = rows(id(offer))
        if row is None:  # not this catalog's own offer object: work it out here
            row = _OfferRank(offer, catalog).row
        oid, service, prior, worth, _, rules = row
        affinity = get_affinity(oid)
        p = prior if affinity is None else affinity
        p *= get_boost(service, 1.0)
        p *= factor
        if p > 0.99:  # min(p, 0.99), without the call
            p = 0.99
        if p < floor:
            suppressed.append(_unlikely(oid, p, floor))
            continue
        if worth is None:  # not a plain float (or no value at all): as it always was
            worth = offer.value**form.value_exponent
        scored.append((-(p * worth), oid, index, rules, p, affinity, p, None))
    return scored


def _finite(affinities: Mapping[str, float]) -> bool:
    """Every affinity a finite number (else _estimate fails on it where it always did)."""
    try:
        return -_INF < sum(affinities.values()) < _INF
    except TypeError:
        return False


def _unlikely(offer_id: str, p: float, floor: float) -> Suppressed:
    return Suppressed(
        offer_id=offer_id, rule="low_probability", detail=f"estimated {p:.1%} < {floor:.0%}"
    )


def _ordered(scored: list[_Scored]) -> list[_Scored]:
    """``scored`` in the order of (-round(score, 6), offer id), input order among equals (the
    order shown and cut by), without rounding every score: rounding keeps the order of scores
    more than _TIE apart, and equal scores round alike."""
    if len(scored) < 2:
        return scored
    scored.sort()  # by (-score, offer id, input position): the first three items decide
    previous = scored[0][0]
    for entry in scored:
        negated = entry[0]
        if not negated - previous > _TIE and negated != previous:  # close but unequal, or NaN
            scored.sort(key=_position)
            return sorted(scored, key=_old_key)  # exactly the old order, every score rounded
        previous = negated
    return scored


_position = itemgetter(2)


def _round6(x: float) -> float:
    """``round(x, 6)``, the same float, several times faster where that is certain.

    round() finds the integer N nearest x * 10**6 and returns the float nearest N / 10**6.
    Below 10**6, y = x * 1e6 is off x * 10**6 by under 1e-4; adding and taking away 1.5 * 2**52
    rounds y to its nearest integer n in float arithmetic. When y is not within 1e-4 of a
    half, n is N, and n / 1e6 (one correctly rounded division) is the float round() returns.
    """
    if type(x) is float and 0.0 < x < 1e6:
        y = x * 1e6
        n = (y + _MAGIC) - _MAGIC
        if -0.4999 < y - n < 0.4999:
            return n / 1e6
    return round(x, 6)


_MAGIC = 6755399441055744.0  # 1.5 * 2**52: floats near it are whole numbers, 1 apart


def _old_key(entry: _Scored) -> tuple[float, str]:
    """The order as it always was: by the rounded score, then the offer id (a stable sort)."""
    return -round(-entry[0], 6), entry[1]


def _more_reasons(
    reasons: list[Reason],
    form: _Form,
    rules: _OfferRank,
    channel: str,
    live: set[str] | None,
    learned: LearnedTable | None,
    adjusted: Adjustment | None,
) -> None:
    """After the estimate's source, stage, channel and segment (rank): the live events, then
    what outcomes taught, as the clerk has always read them."""
    if live is not None:
        for code in rules.context_events:
            if code in live:
                event = form.event_reason(code)
                if event is not None:
                    reasons.append(event)
    if learned is not None and adjusted is not None:
        said = reason_text(adjusted.estimate, channel, learned.window_days)
        if said is not None and adjusted.estimate.presented >= learned.min_presented:
            reasons.append(Reason(code="learned", text=said[0], text_zh=said[1]))


class _OfferRank:
    """One offer as the ranking reads it: its score's constant factor, its stage reasons, and
    its 'limit' removal, prebuilt."""

    __slots__ = (
        "context_events",
        "id",
        "limited",
        "offer",
        "prior",
        "row",
        "segments",
        "service",
        "stage_reasons",
        "worth",
    )

    def __init__(self, offer: Offer, catalog: Catalog) -> None:
        self.offer = offer
        self.id = offer.id
        self.service = offer.service
        self.prior = offer.prior
        self.segments = bool(offer.segments)
        self.context_events = offer.context_events
        # value ** value_exponent, the same float every time; None where it is not a float
        # (or fails), so that the ranking computes it, and fails, exactly where it used to.
        self.worth: float | None = None
        try:
            worth = offer.value**catalog.ranking.value_exponent
        except (ArithmeticError, TypeError, ValueError):
            pass
        else:
            if type(worth) is float:
                self.worth = worth
        self.stage_reasons: dict[str, Reason] = {}
        if offer.lifecycle:
            service = catalog.service(offer.service)
            name = service.name if service else offer.service
            name_zh = (service.name_zh or service.name) if service else offer.service
            for stage, (en, zh) in _STAGE_REASONS.items():
                self.stage_reasons[stage] = Reason(
                    code=f"stage_{stage}",
                    text=en.format(service=name),
                    text_zh=zh.format(service=name_zh),
                )
        self.limited = Suppressed(offer_id=offer.id, rule="limit", detail=RULES["limit"])
        # What the ranking loop reads, unpacked in one step.
        self.row: _Row = (
            self.id,
            self.service,
            self.prior,
            self.worth,
            self.context_events,
            self,
        )


class _Form:
    """The ranking of one catalog, precomputed (Catalog.derived): its weights, each offer's
    constant part, and the reasons that read the same for everyone they apply to."""

    def __init__(self, catalog: Catalog) -> None:
        weights = catalog.ranking
        self.catalog = catalog
        self.floor = weights.min_probability
        self.stage_boost = weights.stage_boost
        self.channel_fit = weights.channel_fit
        self.unlisted = weights.channel_fit_unlisted
        self.context_boost = weights.context_boost
        self.value_exponent = weights.value_exponent
        # Float weights throughout (as decoded from TOML): _estimate_plainly may be used.
        self.plain = all(
            type(weight) is float
            for weight in (
                *weights.stage_boost.values(),
                *weights.channel_fit,
                weights.channel_fit_unlisted,
            )
        )
        # Keyed by identity: the offers screen() hands over are the catalog's own objects.
        self.rows = {id(offer): _OfferRank(offer, catalog).row for offer in catalog.offers}
        # The warehouse's affinities have four decimals: a few thousand values at most.
        self._affinity: dict[float, Reason] = {}
        self._channels: dict[str, Reason] = {}
        self._segments: dict[str, Reason | None] = {}
        self._events: dict[str, Reason | None] = {}
        self._beaten: dict[tuple[str, str, str], Suppressed] = {}

    def affinity_reason(self, affinity: float) -> Reason:
        # By value: equal numbers make the same sentence (NaN, never equal, fails below).
        found = self._affinity.get(affinity)
        if found is None:
            pct = round(affinity * 100)
            strength = "Strong" if affinity >= 0.5 else "Good" if affinity >= 0.25 else "Some"
            found = Reason(
                code="affinity",
                text=f"{strength} fit from the warehouse model ({pct}% propensity)",
                text_zh=f"经营分析模型匹配度 {pct}%",
            )
            _remember(self._affinity, affinity, found, limit=_AFFINITY_LIMIT)
        return found

    def channel_reason(self, channel: str) -> Reason:
        found = self._channels.get(channel)
        if found is None:
            en_name, zh_name = _CHANNEL_NAMES.get(channel, (channel, channel))
            found = Reason(
                code="channel", text=f"Responds best to {en_name}", text_zh=f"偏好{zh_name}渠道"
            )
            if type(channel) is str:
                _remember(self._channels, channel, found)
        return found

    def segment_reason(self, code: str) -> Reason | None:
        if code in self._segments:
            return self._segments[code]
        segment = self.catalog.segment(code)
        found = (
            None
            if segment is None
            else Reason(
                code="segment",
                text=f"Made for {segment.name}: {segment.selling_point}".rstrip(": "),
                text_zh=f"专为{segment.name_zh or segment.name}设计",
            )
        )
        _remember(self._segments, code, found)
        return found

    def event_reason(self, code: str) -> Reason | None:
        if code in self._events:
            return self._events[code]
        event = self.catalog.event(code)
        found = (
            None
            if event is None
            else Reason(
                code=f"context_{code}",
                text=f"Just now: {event.description}",
                text_zh=f"实时:{event.description_zh or event.description}",
            )
        )
        if type(code) is str:
            _remember(self._events, code, found)
        return found

    def beaten(self, winner: str, rules: _OfferRank) -> Suppressed:
        """The 'one_per_service' removal of ``rules``' offer by the shown offer ``winner``."""
        key = (winner, rules.id, rules.service)
        found = self._beaten.get(key)
        if found is None:
            found = Suppressed(
                offer_id=rules.id,
                rule="one_per_service",
                detail=f"{winner} ranks higher for {rules.service}",
            )
            _remember(self._beaten, key, found)
        return found


def _remember(memo: dict[Any, Any], key: Any, value: Any, limit: int = _MEMO_LIMIT) -> None:
    """Keep ``value`` under ``key``, forgetting everything first when the memo is full."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
