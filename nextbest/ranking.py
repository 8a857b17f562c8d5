"""Ranking: expected value of pitching each allowed offer, with the reasons a clerk can repeat.

score = p(accept) * value ** value_exponent, where p(accept) starts from the warehouse's
affinity (or the offer's prior) and is scaled by channel fit, lifecycle stage and live context,
then corrected by what recorded outcomes taught (nextbest/learning.py), when given.
Deterministic: equal scores fall back to the offer id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from nextbest.catalog import Catalog, Offer
from nextbest.learning import LearnedTable, reason_text
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
