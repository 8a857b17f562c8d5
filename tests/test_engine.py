"""The decision as a pure function (nextbest.engine.propose): screen, rank, cut, script; a notice
when a customer-level rule applies; every catalog offer accounted for; same inputs, same output."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from conftest import NOW, profile

from nextbest.catalog import Catalog
from nextbest.clock import FixedClock
from nextbest.engine import Proposal, propose
from nextbest.policy import RULES
from nextbest.records import ContactEvent

MSISDN = "13912345678"
AFFINITY = {"crbt_open": 0.62, "mms_pkg": 0.30, "club_vip": 0.45, "sms_100": 0.20}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def contact(
    kind: str, days: float, channel: str = "outbound", offer_id: str | None = None
) -> ContactEvent:
    return ContactEvent(channel=channel, kind=kind, at=ago(days), offer_id=offer_id)


def decide(catalog: Catalog, **overrides: Any) -> Proposal:
    kwargs: dict[str, Any] = {
        "msisdn": MSISDN,
        "profile": profile(),
        "affinities": AFFINITY,
        "history": [],
        "channel": "store",
        "events": [],
        "now": NOW,
    }
    kwargs.update(overrides)
    return propose(catalog, **kwargs)


def shown(proposal: Proposal) -> list[str]:
    return [p.ranked.offer.id for p in proposal.offers]


def rule_of(proposal: Proposal) -> dict[str, str]:
    return {s.offer_id: s.rule for s in proposal.suppressed}


# One scenario per rule (and then some): what the engine is handed.
SCENARIOS: dict[str, dict[str, Any]] = {
    "baseline_store": {},
    "baseline_inbound": {"channel": "inbound"},
    "baseline_outbound": {"channel": "outbound"},
    "other_brand": {"profile": profile(brand="mzone")},
    "other_segment": {"profile": profile(segment="careful_calculator")},
    "plain_handset": {"profile": profile(handset=())},
    "arrears": {"profile": profile(flags=("arrears",))},
    "holds_sms_50": {"profile": profile(subscriptions=("sms_50",))},
    "cancelled_sms": {"history": [contact("cancelled", 10, "store", "sms_50")]},
    "declined_weather": {"history": [contact("declined", 3, "store", "weather")]},
    "unknown_store": {"profile": None, "affinities": {}},
    "unknown_outbound": {"profile": None, "affinities": {}, "channel": "outbound"},
    "dnd_outbound": {"profile": profile(flags=("dnd",)), "channel": "outbound"},
    "dnd_store": {"profile": profile(flags=("dnd",))},
    "complaint_inbound": {"profile": profile(flags=("complaint",)), "channel": "inbound"},
    "complaint_event": {"history": [contact("complaint", 10, "inbound")], "channel": "outbound"},
    "recontact": {"history": [contact("contacted", 20)], "channel": "outbound"},
    "tight_fisted_outbound": {"profile": profile(segment="tight_fisted"), "channel": "outbound"},
    "unlikely": {"affinities": {**AFFINITY, "crbt_open": 0.001}},
    "limit_1": {"limit": 1},
    "context_zh": {"events": ["handset_mms"], "lang": "zh"},
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_catalog_offer_is_offered_or_suppressed_exactly_once(
    catalog: Catalog, name: str
) -> None:
    proposal = decide(catalog, **SCENARIOS[name])
    ids = shown(proposal) + [s.offer_id for s in proposal.suppressed]
    assert sorted(ids) == sorted(o.id for o in catalog.offers)
    assert all(s.rule in RULES and s.detail for s in proposal.suppressed)


def test_the_scenarios_exercise_every_rule(catalog: Catalog) -> None:
    seen = {s.rule for name in SCENARIOS for s in decide(catalog, **SCENARIOS[name]).suppressed}
    assert seen == set(RULES)


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_inputs_same_proposal(catalog: Catalog, name: str) -> None:
    first = msgspec.to_builtins(decide(catalog, **SCENARIOS[name]))
    again = msgspec.to_builtins(decide(catalog, **SCENARIOS[name]))
    assert again == first
    # The history's order as handed in does not matter either.
    history = SCENARIOS[name].get("history", [])
    reordered = {**SCENARIOS[name], "history": list(reversed(history))}
    assert msgspec.to_builtins(decide(catalog, **reordered)) == first


def test_history_order_does_not_matter(catalog: Catalog) -> None:
    history = [
        contact("subscribed", 200, "store", "weather"),
        contact("cancelled", 100, "store", "weather"),
        contact("contacted", 70),
        contact("callback", 65, offer_id="sms_50"),
        contact("declined", 5, "store", "mms_pkg"),
    ]
    base = msgspec.to_builtins(decide(catalog, history=history))
    for shuffled in (history[::-1], history[2:] + history[:2]):
        assert msgspec.to_builtins(decide(catalog, history=shuffled)) == base


# --- what the clerk reads ----------------------------------------------------------------------


def test_no_notice_when_offers_fit(catalog: Catalog) -> None:
    proposal = decide(catalog)
    assert proposal.customer_rule is None
    assert proposal.notice is None
    assert shown(proposal) == ["crbt_open", "club_vip", "mms_pkg"]


@pytest.mark.parametrize(
    ("name", "rule", "notice"),
    [
        ("dnd_outbound", "dnd", "Customer is on the do-not-disturb list"),
        ("dnd_store", "dnd", "Customer is on the do-not-disturb list"),
        (
            "complaint_inbound",
            "complaint",
            "Customer is flagged by customer service (complaint or sensitive)",
        ),
        ("complaint_event", "complaint", "Complaint recorded 10 days ago (excluded for 180 days)"),
        (
            "recontact",
            "recontact",
            "Last reached by outbound 20 days ago (no outbound offer within 60 days)",
        ),
        (
            "tight_fisted_outbound",
            "segment_not_for_channel",
            "Tight-fisted: this persona segment is not worth an outbound call",
        ),
    ],
)
def test_notice_when_a_customer_level_rule_applies(
    catalog: Catalog, name: str, rule: str, notice: str
) -> None:
    proposal = decide(catalog, **SCENARIOS[name])
    assert proposal.customer_rule == rule
    assert proposal.notice == notice


def test_flagged_customer_at_the_counter_gets_the_service_critical_offer_and_the_notice(
    catalog: Catalog,
) -> None:
    proposal = decide(catalog, **SCENARIOS["dnd_store"])
    assert shown(proposal) == ["alert"]
    assert proposal.notice == "Customer is on the do-not-disturb list"
    proposal = decide(catalog, **SCENARIOS["dnd_outbound"])
    assert proposal.offers == []


def test_notice_when_nothing_fits_without_a_customer_rule(catalog: Catalog) -> None:
    # Unknown number on outbound: the general offers are counter/inbound only.
    proposal = decide(catalog, **SCENARIOS["unknown_outbound"])
    assert proposal.offers == []
    assert proposal.customer_rule is None
    assert proposal.notice == "No offer fits this customer right now."


def test_unknown_subscriber_at_the_counter(catalog: Catalog) -> None:
    proposal = decide(catalog, **SCENARIOS["unknown_store"])
    # weather 0.08*6 = 0.48 beats alert 0.1*4 = 0.4.
    assert shown(proposal) == ["weather", "alert"]
    assert proposal.notice is None
    assert all(p.ranked.reasons[0].code == "general" for p in proposal.offers)
    assert proposal.offers[0].script.pitch == "Weather every morning for 2 yuan."


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "limit", "count"),
    [
        ("store", None, 3),  # the channel's max_offers
        ("store", 1, 1),  # the request asks for fewer
        ("store", 2, 2),
        ("store", 10, 3),  # the request asks for more: clamped to the channel's max
        ("inbound", None, 2),
        ("inbound", 5, 2),
    ],
)
def test_limit(catalog: Catalog, channel: str, limit: int | None, count: int) -> None:
    max_offers = catalog.policy.for_channel(channel).max_offers
    assert count == min(limit or max_offers, max_offers)
    proposal = decide(catalog, channel=channel, limit=limit)
    assert len(proposal.offers) == count
    # Enough offers fit to fill any limit: the rest were cut by it.
    assert any(s.rule == "limit" for s in proposal.suppressed)


def test_limit_keeps_the_best(catalog: Catalog) -> None:
    everything = decide(catalog)
    top = decide(catalog, limit=1)
    assert shown(top) == shown(everything)[:1] == ["crbt_open"]
    for offer_id in shown(everything)[1:]:
        assert rule_of(top)[offer_id] == "limit"


def test_outbound_offers_exclude_channel_rules_and_stay_within_max(catalog: Catalog) -> None:
    proposal = decide(catalog, channel="outbound")
    assert len(proposal.offers) == 2
    assert shown(proposal) == ["crbt_open", "club_vip"]
    assert {rule_of(proposal)[o] for o in ("mms_pkg", "weather", "alert")} == {"channel"}


# --- scripts and the outcome loop ---------------------------------------------------------------


def test_each_offer_carries_its_script(catalog: Catalog) -> None:
    proposal = decide(catalog)
    by_id = {p.ranked.offer.id: p.script for p in proposal.offers}
    # The fashion leader at the counter hears the segment's own pitch.
    assert by_id["crbt_open"].pitch == "The newest tones first: new, first, exclusive."
    assert by_id["club_vip"].pitch == "Members hear it first."
    assert by_id["mms_pkg"].pitch == "MMS for 5 yuan."


def test_scripts_in_chinese_and_with_context(catalog: Catalog) -> None:
    proposal = decide(catalog, **SCENARIOS["context_zh"])
    by_id = {p.ranked.offer.id: p.script for p in proposal.offers}
    assert by_id["crbt_open"].lang == "zh"
    assert by_id["crbt_open"].pitch == "139****5678:彩铃每月5元,送两首。"
    # No Chinese script for mms_pkg: the English one, with the live event.
    assert by_id["mms_pkg"].lang == "en"
    assert by_id["mms_pkg"].pitch == "Your new phone sends pictures: MMS for 5 yuan."


def test_outbound_script_is_complete(catalog: Catalog) -> None:
    proposal = decide(catalog, channel="outbound")
    script = proposal.offers[0].script
    assert proposal.offers[0].ranked.offer.id == "crbt_open"
    assert script.opening == "Hello, this is your operator calling about your ring-back tone."
    assert script.pitch == "Ring-back tone, two songs free for 5 yuan."
    assert [(o.objection, o.answer) for o in script.objections] == [
        ("Too expensive", "The first month is free.")
    ]
    assert script.closing == "Shall I open it for you now?"


def test_declined_offer_leaves_and_comes_back(catalog: Catalog) -> None:
    clock = FixedClock(NOW)
    first = decide(catalog, now=clock.now())
    assert shown(first)[0] == "crbt_open"

    history = [
        ContactEvent(
            channel="store",
            kind="declined",
            at=clock.now(),
            offer_id="crbt_open",
            source="nextbest",
        )
    ]
    clock.advance(minutes=3)
    second = decide(catalog, history=history, now=clock.now())
    assert "crbt_open" not in shown(second)
    assert rule_of(second)["crbt_open"] == "declined_cooldown"
    # The next best move up: mms_pkg was third, sms_100 now fills the third place.
    assert shown(second) == ["club_vip", "mms_pkg", "sms_100"]

    clock.advance(days=30)
    third = decide(catalog, history=history, now=clock.now())
    assert shown(third) == shown(first)
