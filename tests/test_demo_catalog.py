"""The packaged demo catalog: it loads, and it carries what the demo and the domain need.

Every offer must be sellable on each of its channels in English and in Chinese, the 14
persona segments of the warehouse's model must all be there, and outbound calls need a full
script (opening, pitch, objections, closing).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date

import pytest

from nextbest.catalog import Catalog, load_catalog
from nextbest.pitch import choose_script
from nextbest.synth import DEMO_CATALOG
from nextbest.talk import SAMPLE_CONTEXT, render

SEGMENT_CODES = {
    "fashionable_high_end",
    "high_potential",
    "emotional_follower",
    "traditional_conservative",
    "shrewd_fashionable",
    "medium_potential",
    "rational_follower",
    "careful_calculator",
    "tight_fisted",
    "blind_follower",
    "shrewd_early_adopter",
    "vanity_follower",
    "over_spender",
    "low_potential",
}
SEGMENT_NAMES_ZH = {
    "fashionable_high_end": "时尚中高端",
    "high_potential": "高潜力型",
    "emotional_follower": "感性跟随型",
    "traditional_conservative": "传统保守型",
    "shrewd_fashionable": "精明时尚型",
    "medium_potential": "中潜力型",
    "rational_follower": "理性跟随型",
    "careful_calculator": "精打细算型",
    "tight_fisted": "吝啬型",
    "blind_follower": "盲从型",
    "shrewd_early_adopter": "精明尝鲜型",
    "vanity_follower": "虚荣跟风型",
    "over_spender": "超前消费型",
    "low_potential": "低潜力型",
}
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_catalog(DEMO_CATALOG)


def test_it_loads_with_its_brands_and_version(demo: Catalog) -> None:
    assert demo.version == "demo-2026.11"
    assert demo.currency == "CNY"
    assert {(b.code, b.name, b.name_zh) for b in demo.brands} == {
        ("gotone", "GoTone", "全球通"),
        ("mzone", "M-Zone", "动感地带"),
        ("easyown", "Easy-Own", "神州行"),
    }
    assert re.fullmatch(r"[0-9a-f]{16}", demo.hash)


def test_all_fourteen_segments_with_chinese_names_and_selling_points(demo: Catalog) -> None:
    assert len(demo.segments) == 14
    assert {s.code for s in demo.segments} == SEGMENT_CODES
    for segment in demo.segments:
        assert segment.name_zh == SEGMENT_NAMES_ZH[segment.code]
        assert segment.name and segment.selling_point, segment.code
        assert CJK.search(segment.selling_point_zh), segment.code
    assert {s.code for s in demo.segments if not s.outbound} == {"tight_fisted", "low_potential"}
    by_code = {s.code: s for s in demo.segments}
    assert "discount" in by_code["careful_calculator"].selling_point
    assert "first" in by_code["fashionable_high_end"].selling_point
    assert "everyone" in by_code["emotional_follower"].selling_point
    assert "clerk sets it up" in by_code["traditional_conservative"].selling_point


def test_events_policy_and_ranking(demo: Catalog) -> None:
    assert {e.code for e in demo.events} == {
        "handset_mms",
        "night_group_sms",
        "airport",
        "commuting",
        "heavy_ringtone_download",
        "new_3g_handset",
    }
    assert all(e.description and CJK.search(e.description_zh) for e in demo.events)
    # every event raises at least one offer
    used = {code for o in demo.offers for code in o.context_events}
    assert used == {e.code for e in demo.events}
    policy = demo.policy
    assert (policy.decline_cooldown_days, policy.cancel_block_days) == (30, 90)
    assert policy.complaint_block_days == 180
    assert policy.for_channel("store").max_offers == 3
    assert policy.for_channel("inbound").max_offers == 2
    outbound = policy.for_channel("outbound")
    assert (outbound.max_offers, outbound.recontact_days) == (2, 60)
    assert outbound.counts_channels == ("outbound",)
    ranking = demo.ranking
    assert ranking.channel_fit == (1.0, 0.85, 0.7)
    assert ranking.channel_fit_unlisted == 0.6
    assert ranking.context_boost == 1.6
    assert ranking.stage_boost == {"churn_risk": 1.25, "silent": 1.1}
    assert (ranking.value_exponent, ranking.min_probability) == (0.5, 0.02)


def test_every_offer_has_english_and_chinese_scripts_for_each_channel(demo: Catalog) -> None:
    for offer in demo.offers:
        for channel in offer.channels:
            # A script for any segment, per language: the fallback every customer can get.
            langs = {s.lang for s in offer.scripts if channel in s.channels and not s.segments}
            assert langs == {"en", "zh"}, (offer.id, channel)
        for script in offer.scripts:
            assert script.lang in ("en", "zh"), offer.id
            assert set(script.channels) <= set(offer.channels), offer.id
            texts = [script.pitch, script.opening, script.closing]
            texts += [t for o in script.objections for t in (o.objection, o.answer)]
            for text in filter(None, texts):
                has_cjk = CJK.search(render(text, SAMPLE_CONTEXT)) is not None
                assert has_cjk == (script.lang == "zh"), (offer.id, script.lang, text)


def test_outbound_scripts_are_complete(demo: Catalog) -> None:
    outbound = [(o, s) for o in demo.offers for s in o.scripts if "outbound" in s.channels]
    assert len(outbound) >= 30
    for offer, script in outbound:
        assert script.opening and script.pitch and script.closing, offer.id
        assert 1 <= len(script.objections) <= 3, offer.id
        assert all(o.objection and o.answer for o in script.objections), offer.id
        assert "{{ customer.masked }}" in script.opening, offer.id


def test_counter_pitches_are_short(demo: Catalog) -> None:
    for offer in demo.offers:
        for script in offer.scripts:
            if "outbound" in script.channels:
                continue
            text = render(script.pitch, {**SAMPLE_CONTEXT, "events": []})
            sentences = [s for s in re.split(r"(?<=[.?!])\s+|(?<=[。?!])", text) if s.strip()]
            assert 2 <= len(sentences) <= 3, (offer.id, text)
            assert len(text) <= 240, (offer.id, text)


def test_segment_variants_reach_their_personas(demo: Catalog) -> None:
    with_variants = [o.id for o in demo.offers if any(s.segments for s in o.scripts)]
    assert len(with_variants) >= 5
    sms = demo.offer("sms_100")
    club = demo.offer("music_club")
    assert sms is not None and club is not None
    for lang in ("en", "zh"):
        chosen = choose_script(sms, "store", "careful_calculator", lang)
        assert chosen is not None and "careful_calculator" in chosen.segments
        assert chosen.lang == lang
        generic = choose_script(sms, "store", "fashionable_high_end", lang)
        assert generic is not None and not generic.segments
        privileges = choose_script(club, "outbound", "fashionable_high_end", lang)
        assert privileges is not None and "fashionable_high_end" in privileges.segments
    # every variant has its counterpart in the other language
    variants = Counter(
        (o.id, s.channels, s.segments, s.lang) for o in demo.offers for s in o.scripts if s.segments
    )
    for offer_id, channels, segments, lang in variants:
        other = "zh" if lang == "en" else "en"
        assert (offer_id, channels, segments, other) in variants, (offer_id, segments)


def test_offers_look_like_an_operators(demo: Catalog) -> None:
    offers = demo.offers
    assert 24 <= len(offers) <= 32
    assert {o.category for o in offers} == {"revenue", "growth", "strategic"}
    for offer in offers:
        assert 1 <= offer.price <= 30, offer.id
        assert offer.value >= offer.price, offer.id
        assert 0.02 <= offer.prior <= 0.15, offer.id
        assert offer.name_zh and CJK.search(offer.name_zh), offer.id
    services = {o.service for o in offers}
    assert {
        "crbt", "sms", "data", "newspaper", "fetion", "music_club", "mms", "missed_call",
        "weather", "mobile_tv", "location", "payment",
    } <= services  # fmt: skip
    general = [o.id for o in offers if o.general]
    assert 3 <= len(general) <= 4
    assert all((o := demo.offer(i)) is not None and o.price <= 5 for i in general)
    assert 1 <= sum(o.service_critical for o in offers) <= 2


def test_ring_back_tone_follows_the_lifecycle(demo: Catalog) -> None:
    crbt = {stage: o.id for o in demo.offers if o.service == "crbt" for stage in o.lifecycle}
    assert {"potential", "silent", "churn_risk", "churned"} <= set(crbt)
    box = demo.offer(crbt["silent"])
    assert box is not None and box.price == 1
    assert "15" in (demo.offer(crbt["churn_risk"]) or box).name


def test_exclusive_groups_brands_and_handsets(demo: Catalog) -> None:
    groups = Counter(o.group for o in demo.offers if o.group)
    assert groups["sms_bundle"] >= 3 and groups["data_pkg"] >= 3
    assert all("data" in o.requires for o in demo.offers if o.group == "data_pkg")
    assert {b for o in demo.offers for b in o.brands} == {"gotone", "mzone"}
    assert any(o.brands == ("gotone",) for o in demo.offers)
    assert any(o.brands == ("mzone",) for o in demo.offers)
    mms = [o for o in demo.offers if o.service == "mms"]
    assert mms and all("mms" in o.requires for o in mms)
    tv = demo.offer("mobile_tv")
    assert tv is not None and "3g" in tv.requires


def test_validity_one_expired_offer_none_in_the_future(demo: Catalog) -> None:
    today = date.today()
    expired = [o.id for o in demo.offers if o.valid_to is not None and o.valid_to < today]
    assert len(expired) == 1
    assert not [o.id for o in demo.offers if o.valid_from is not None and o.valid_from > today]
