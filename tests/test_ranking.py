"""Ranking (nextbest.ranking.rank): expected value with the catalog's weights, the reasons a
clerk can repeat, and the cut (low probability, one per service, limit)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pytest
from conftest import profile

from nextbest.catalog import Catalog, Offer
from nextbest.policy import Suppressed
from nextbest.ranking import Ranked, rank
from nextbest.records import Profile

CJK = re.compile(r"[\u4e00-\u9fff]")
# The warehouse's affinities for the standard customer 13900000001 (conftest).
AFFINITY = {"crbt_open": 0.62, "mms_pkg": 0.30, "club_vip": 0.45, "sms_100": 0.20}
# What the default profile may be offered at the counter (see test_policy's baseline).
ALLOWED = ("crbt_open", "sms_50", "sms_100", "mms_pkg", "club_vip", "weather", "alert")


def offers(catalog: Catalog, *ids: str) -> list[Offer]:
    found = [catalog.offer(i) for i in ids]
    assert all(found), ids
    return [o for o in found if o is not None]


def run(
    catalog: Catalog,
    ids: Sequence[str],
    who: Profile | None,
    affinities: Mapping[str, float] | None = None,
    *,
    channel: str = "store",
    events: Sequence[str] = (),
    limit: int = 10,
) -> tuple[list[Ranked], list[Suppressed]]:
    return rank(catalog, offers(catalog, *ids), who, affinities or {}, channel, list(events), limit)


def one(catalog: Catalog, offer_id: str, who: Profile | None, **kwargs: Any) -> Ranked:
    shown, cut = run(catalog, [offer_id], who, **kwargs)
    assert cut == [], cut
    (ranked,) = shown
    return ranked


def codes(ranked: Ranked) -> list[str]:
    return [r.code for r in ranked.reasons]


def reason(ranked: Ranked, code: str) -> tuple[str, str]:
    found = [r for r in ranked.reasons if r.code == code]
    assert len(found) == 1, (code, codes(ranked))
    return found[0].text, found[0].text_zh


def expected_value(catalog: Catalog, p: float, offer_id: str) -> float:
    offer = catalog.offer(offer_id)
    assert offer is not None
    return p * offer.value**catalog.ranking.value_exponent


def with_ranking(catalog: Catalog, **changes: Any) -> Catalog:
    return msgspec.structs.replace(
        catalog, ranking=msgspec.structs.replace(catalog.ranking, **changes)
    )


def with_offer(catalog: Catalog, offer_id: str, **changes: Any) -> Catalog:
    replaced = tuple(
        msgspec.structs.replace(o, **changes) if o.id == offer_id else o for o in catalog.offers
    )
    return msgspec.structs.replace(catalog, offers=replaced)


def test_test_catalog_weights(catalog: Catalog) -> None:
    # The expectations below are computed from these; check them once.
    weights = catalog.ranking
    assert weights.channel_fit == (1.0, 0.8, 0.6)
    assert weights.channel_fit_unlisted == 0.5
    assert weights.context_boost == 2.0
    assert weights.stage_boost == {"churn_risk": 1.5}
    assert weights.value_exponent == 1.0
    assert weights.min_probability == 0.02


# --- expected value ----------------------------------------------------------------------------


def test_order_by_expected_value(catalog: Catalog) -> None:
    shown, cut = run(catalog, ALLOWED, profile(), AFFINITY)
    # Without affinity the offer's prior is the estimate.
    probability = {**{o.id: o.prior for o in offers(catalog, *ALLOWED)}, **AFFINITY}
    by_id = {r.offer.id: r for r in shown}
    for offer_id, ranked in by_id.items():
        assert ranked.probability == pytest.approx(probability[offer_id])
        assert ranked.score == pytest.approx(
            expected_value(catalog, probability[offer_id], offer_id)
        )
    # 0.62*30=18.6 > 0.45*40=18 > 0.30*25=7.5 > 0.20*20=4 > 0.08*6=0.48 > 0.1*4=0.4; sms_50
    # (0.05*12=0.6) loses its service to sms_100. Neither p alone (alert 0.1 > weather 0.08)
    # nor value alone (club_vip 40 > crbt_open 30) gives this order.
    assert [r.offer.id for r in shown] == [
        "crbt_open",
        "club_vip",
        "mms_pkg",
        "sms_100",
        "weather",
        "alert",
    ]
    assert [r.score for r in shown] == sorted((r.score for r in shown), reverse=True)
    assert [(s.offer_id, s.rule) for s in cut] == [("sms_50", "one_per_service")]
    assert by_id["crbt_open"].affinity == 0.62
    assert by_id["weather"].affinity is None


def test_value_exponent_weighs_value(catalog: Catalog) -> None:
    affinities = {"club_vip": 0.30, "mms_pkg": 0.45}
    # Exponent 1.0: 0.30*40 = 12 beats 0.45*25 = 11.25.
    shown, _ = run(catalog, ["mms_pkg", "club_vip"], profile(), affinities)
    assert [r.offer.id for r in shown] == ["club_vip", "mms_pkg"]

    # Exponent 0.5: 0.30*sqrt(40) = 1.90 loses to 0.45*sqrt(25) = 2.25.
    rooted = with_ranking(catalog, value_exponent=0.5)
    shown, _ = run(rooted, ["mms_pkg", "club_vip"], profile(), affinities)
    assert [r.offer.id for r in shown] == ["mms_pkg", "club_vip"]
    assert shown[0].score == pytest.approx(0.45 * 25**0.5)
    assert shown[1].score == pytest.approx(0.30 * 40**0.5)


@pytest.mark.parametrize(
    ("channel_pref", "multiplier"),
    [
        (("store",), 1.0),
        (("store", "outbound"), 1.0),
        (("outbound", "store"), 0.8),
        (("outbound", "inbound", "store"), 0.6),
        (("outbound", "inbound", "sms", "store"), 0.5),  # beyond the listed fits
        (("outbound",), 0.5),  # not listed at all
        ((), 1.0),  # the warehouse does not know: no penalty
    ],
)
def test_channel_fit_by_position_in_channel_pref(
    catalog: Catalog, channel_pref: tuple[str, ...], multiplier: float
) -> None:
    ranked = one(
        catalog, "weather", profile(channel_pref=channel_pref), affinities={"weather": 0.4}
    )
    assert ranked.probability == pytest.approx(0.4 * multiplier)
    assert ranked.score == pytest.approx(expected_value(catalog, 0.4 * multiplier, "weather"))
    # The channel reason is given only where this channel is the customer's favourite.
    assert ("channel" in codes(ranked)) is (channel_pref[:1] == ("store",))


@pytest.mark.parametrize(
    ("channel", "text", "text_zh"),
    [
        ("store", "Responds best to the store counter", "偏好营业厅渠道"),
        ("inbound", "Responds best to calling in", "偏好来电渠道"),
        ("outbound", "Responds best to phone calls", "偏好外呼渠道"),
    ],
)
def test_channel_reason(catalog: Catalog, channel: str, text: str, text_zh: str) -> None:
    ranked = one(catalog, "sms_50", profile(channel_pref=(channel,)), channel=channel)
    assert reason(ranked, "channel") == (text, text_zh)


def test_stage_boost(catalog: Catalog) -> None:
    churning = profile(lifecycle={"crbt": "churn_risk"})
    annual = one(catalog, "crbt_annual", churning)
    assert annual.probability == pytest.approx(0.05 * 1.5)
    assert annual.score == pytest.approx(0.05 * 1.5 * 60)
    assert reason(annual, "stage_churn_risk") == (
        "At risk of dropping Ring-back tone: keep them",
        "彩铃有流失风险",
    )
    # No boost configured for "silent".
    box = one(catalog, "crbt_box", profile(lifecycle={"crbt": "silent"}))
    assert box.probability == pytest.approx(0.05)
    boosted = with_ranking(catalog, stage_boost={"silent": 2.0})
    box = one(boosted, "crbt_box", profile(lifecycle={"crbt": "silent"}))
    assert box.probability == pytest.approx(0.10)


def test_stage_boost_follows_the_offers_service(catalog: Catalog) -> None:
    # The customer churns on crbt, not on sms: sms offers are not boosted.
    churning = profile(lifecycle={"crbt": "churn_risk"})
    assert one(catalog, "sms_50", churning).probability == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("offer_id", "stage", "text", "text_zh"),
    [
        ("crbt_open", "potential", "Predicted to want Ring-back tone", "模型预测有彩铃需求"),
        (
            "crbt_box",
            "silent",
            "Ring-back tone unused for 3 months: a reason to come back",
            "彩铃已沉默3个月",
        ),
    ],
)
def test_stage_reasons(
    catalog: Catalog, offer_id: str, stage: str, text: str, text_zh: str
) -> None:
    ranked = one(catalog, offer_id, profile(lifecycle={"crbt": stage}))
    assert reason(ranked, f"stage_{stage}") == (text, text_zh)


def test_stage_reason_only_for_lifecycle_offers_and_meaningful_stages(catalog: Catalog) -> None:
    # crbt_open also fits stage "none": nothing to say about it.
    assert not any(
        c.startswith("stage_") for c in codes(one(catalog, "crbt_open", profile(lifecycle={})))
    )
    # sms_50 has no lifecycle list: the customer's sms stage is no reason to pitch it.
    silent_sms = profile(lifecycle={"sms": "silent"})
    assert not any(c.startswith("stage_") for c in codes(one(catalog, "sms_50", silent_sms)))
    # With a lifecycle list, a service without a Chinese name falls back to its name.
    variant = with_offer(catalog, "sms_50", lifecycle=("silent",))
    ranked = one(variant, "sms_50", silent_sms)
    assert reason(ranked, "stage_silent")[1] == "SMS bundle已沉默3个月"


def test_context_boost_when_request_event_matches(catalog: Catalog) -> None:
    plain = one(catalog, "mms_pkg", profile(), affinities={"mms_pkg": 0.3})
    hot = one(catalog, "mms_pkg", profile(), affinities={"mms_pkg": 0.3}, events=["handset_mms"])
    assert plain.probability == pytest.approx(0.3)
    assert hot.probability == pytest.approx(0.3 * 2.0)
    assert hot.score == pytest.approx(2 * plain.score)
    assert not any(c.startswith("context_") for c in codes(plain))
    assert reason(hot, "context_handset_mms") == (
        "Just now: switched to an MMS-capable handset",
        "实时:刚换了彩信手机",
    )


def test_context_boost_lifts_an_offer_past_another(catalog: Catalog) -> None:
    affinities = {"mms_pkg": 0.4, "club_vip": 0.45}
    ids = ["mms_pkg", "club_vip"]
    # 0.4*25 = 10 < 0.45*40 = 18; with the event 0.8*25 = 20 > 18.
    assert [r.offer.id for r in run(catalog, ids, profile(), affinities)[0]] == ids[::-1]
    shown, _ = run(catalog, ids, profile(), affinities, events=["handset_mms"])
    assert [r.offer.id for r in shown] == ids


def test_context_events_the_offer_does_not_list_change_nothing(catalog: Catalog) -> None:
    base = one(catalog, "mms_pkg", profile(), affinities={"mms_pkg": 0.3})
    other = one(
        catalog, "mms_pkg", profile(), affinities={"mms_pkg": 0.3}, events=["night_group_sms"]
    )
    assert other == base
    club = one(catalog, "club_vip", profile(), events=["handset_mms"])
    assert club.probability == pytest.approx(0.05)


def test_probability_is_capped(catalog: Catalog) -> None:
    hot = one(catalog, "mms_pkg", profile(), affinities={"mms_pkg": 0.9}, events=["handset_mms"])
    assert hot.probability == pytest.approx(0.99)


def test_ties_break_by_offer_id(catalog: Catalog) -> None:
    # Same value and probability: the same score; the id decides, whatever the input order.
    variant = with_offer(catalog, "weather", value=4.0)
    affinities = {"weather": 0.3, "alert": 0.3}
    for ids in (["weather", "alert"], ["alert", "weather"]):
        shown, _ = run(variant, ids, profile(), affinities)
        assert shown[0].score == shown[1].score
        assert [r.offer.id for r in shown] == ["alert", "weather"]


# --- reasons -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("affinity", "text", "text_zh"),
    [
        (0.62, "Strong fit from the warehouse model (62% propensity)", "经营分析模型匹配度 62%"),
        (0.5, "Strong fit from the warehouse model (50% propensity)", "经营分析模型匹配度 50%"),
        (0.3, "Good fit from the warehouse model (30% propensity)", "经营分析模型匹配度 30%"),
        (0.25, "Good fit from the warehouse model (25% propensity)", "经营分析模型匹配度 25%"),
        (0.2, "Some fit from the warehouse model (20% propensity)", "经营分析模型匹配度 20%"),
    ],
)
def test_affinity_reason(catalog: Catalog, affinity: float, text: str, text_zh: str) -> None:
    ranked = one(catalog, "sms_50", profile(), affinities={"sms_50": affinity})
    assert codes(ranked)[0] == "affinity"
    assert reason(ranked, "affinity") == (text, text_zh)


def test_prior_reason_for_known_customer_without_affinity(catalog: Catalog) -> None:
    ranked = one(catalog, "sms_50", profile())
    assert codes(ranked)[0] == "prior"
    assert ranked.affinity is None
    assert ranked.probability == pytest.approx(0.05)


def test_general_reason_for_unknown_customer(catalog: Catalog) -> None:
    ranked = one(catalog, "weather", None)
    # Nothing is known: no channel, stage or segment reasons, and no channel fit.
    assert codes(ranked) == ["general"]
    assert reason(ranked, "general") == ("Suits most customers", "适合大多数客户")
    assert ranked.probability == pytest.approx(0.08)
    # Live context still counts for an unknown customer.
    hot = one(catalog, "mms_pkg", None, events=["handset_mms"])
    assert codes(hot) == ["general", "context_handset_mms"]
    assert hot.probability == pytest.approx(0.05 * 2.0)


def test_segment_reason(catalog: Catalog) -> None:
    club = one(catalog, "club_vip", profile())
    assert reason(club, "segment") == (
        "Made for Fashionable high-end: new, first, exclusive",
        "专为时尚中高端设计",
    )
    # Offers for every segment say nothing about the segment.
    assert "segment" not in codes(one(catalog, "sms_50", profile()))


def test_segment_reason_without_a_selling_point(catalog: Catalog) -> None:
    segments = tuple(
        msgspec.structs.replace(s, selling_point="") if s.code == "fashionable_high_end" else s
        for s in catalog.segments
    )
    variant = msgspec.structs.replace(catalog, segments=segments)
    assert reason(one(variant, "club_vip", profile()), "segment")[0] == (
        "Made for Fashionable high-end"
    )


def test_all_reasons_have_codes_and_chinese_texts(catalog: Catalog) -> None:
    who = profile(lifecycle={"crbt": "potential"})
    shown, _ = run(catalog, ALLOWED, who, AFFINITY, events=["handset_mms"])
    seen: set[str] = set()
    for ranked in shown:
        assert ranked.reasons
        assert ranked.reasons[0].code in {"affinity", "prior", "general"}
        for r in ranked.reasons:
            assert r.code and r.text
            assert CJK.search(r.text_zh), r
            seen.add(r.code)
    assert seen == {
        "affinity",
        "prior",
        "stage_potential",
        "channel",
        "segment",
        "context_handset_mms",
    }


# --- the cut -----------------------------------------------------------------------------------


def test_low_probability_is_suppressed(catalog: Catalog) -> None:
    shown, cut = run(catalog, ["sms_50", "weather"], profile(), {"sms_50": 0.01})
    assert [r.offer.id for r in shown] == ["weather"]
    assert [(s.offer_id, s.rule, s.detail) for s in cut] == [
        ("sms_50", "low_probability", "estimated 1.0% < 2%")
    ]


def test_low_probability_boundary_and_prior(catalog: Catalog) -> None:
    assert run(catalog, ["sms_50"], profile(), {"sms_50": 0.02})[0]  # at the minimum: kept
    low_prior = with_offer(catalog, "weather", prior=0.01)
    shown, cut = run(low_prior, ["weather"], profile())
    assert shown == []
    assert [s.rule for s in cut] == ["low_probability"]


def test_low_probability_is_judged_after_the_multipliers(catalog: Catalog) -> None:
    # 0.03 at an unlisted channel: 0.03 * 0.5 = 0.015 < 0.02.
    elsewhere = profile(channel_pref=("outbound",))
    _, cut = run(catalog, ["sms_50"], elsewhere, {"sms_50": 0.03})
    assert [s.rule for s in cut] == ["low_probability"]
    # 0.015 prior, boosted by churn risk: 0.0225 >= 0.02.
    variant = with_offer(catalog, "crbt_annual", prior=0.015)
    churning = profile(lifecycle={"crbt": "churn_risk"})
    assert one(variant, "crbt_annual", churning).probability == pytest.approx(0.0225)


def test_one_per_service_keeps_the_best(catalog: Catalog) -> None:
    shown, cut = run(catalog, ["sms_50", "sms_100"], profile(), {"sms_100": 0.2})
    assert [r.offer.id for r in shown] == ["sms_100"]
    assert [(s.offer_id, s.rule, s.detail) for s in cut] == [
        ("sms_50", "one_per_service", "sms_100 ranks higher for sms")
    ]
    shown, cut = run(catalog, ["sms_50", "sms_100"], profile(), {"sms_50": 0.9, "sms_100": 0.2})
    assert [r.offer.id for r in shown] == ["sms_50"]
    assert [(s.offer_id, s.rule) for s in cut] == [("sms_100", "one_per_service")]


def test_one_per_service_does_not_use_up_the_limit(catalog: Catalog) -> None:
    shown, cut = run(
        catalog, ["sms_50", "sms_100", "weather"], profile(), {"sms_100": 0.2}, limit=2
    )
    assert [r.offer.id for r in shown] == ["sms_100", "weather"]
    assert [(s.offer_id, s.rule) for s in cut] == [("sms_50", "one_per_service")]


def test_limit_cuts_the_lowest(catalog: Catalog) -> None:
    shown, cut = run(catalog, ALLOWED, profile(), AFFINITY, limit=2)
    assert [r.offer.id for r in shown] == ["crbt_open", "club_vip"]
    assert {s.offer_id: s.rule for s in cut} == {
        "mms_pkg": "limit",
        "sms_100": "limit",
        # sms_100 is not shown either, so sms_50 is cut by the limit, not by its sibling.
        "sms_50": "limit",
        "weather": "limit",
        "alert": "limit",
    }
    # Every offer handed in comes back exactly once: shown or cut.
    assert sorted([*(r.offer.id for r in shown), *(s.offer_id for s in cut)]) == sorted(ALLOWED)
