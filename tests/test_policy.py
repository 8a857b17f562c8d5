"""Eligibility and contact rules (nextbest.policy.screen): each rule removes what it should, with
its own code, and the windows come from the catalog's policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import pytest
from conftest import NOW, profile

from nextbest.catalog import Catalog, ChannelPolicy
from nextbest.clock import FixedClock
from nextbest.policy import REACHED, RULES, Screening, contact_state, screen
from nextbest.records import ContactEvent, Profile

ALL = (
    "crbt_open",
    "crbt_box",
    "crbt_annual",
    "sms_50",
    "sms_100",
    "mms_pkg",
    "club_vip",
    "weather",
    "alert",
    "old_promo",
)


def ago(days: float, at: datetime = NOW) -> datetime:
    return at - timedelta(days=days)


def event(
    kind: str,
    at: datetime,
    *,
    channel: str = "outbound",
    offer_id: str | None = None,
    source: Literal["warehouse", "nextbest"] = "warehouse",
) -> ContactEvent:
    return ContactEvent(channel=channel, kind=kind, at=at, offer_id=offer_id, source=source)


def run(
    catalog: Catalog,
    who: Profile | None,
    channel: str = "store",
    history: list[ContactEvent] | None = None,
    now: datetime = NOW,
) -> Screening:
    return screen(catalog, who, history or [], channel, now)


def allowed(result: Screening) -> set[str]:
    return {o.id for o in result.allowed}


def rules(result: Screening) -> dict[str, str]:
    """offer id -> the rule that removed it."""
    out = {s.offer_id: s.rule for s in result.suppressed}
    assert len(out) == len(result.suppressed), "an offer was suppressed twice"
    return out


def detail(result: Screening, offer_id: str) -> str:
    return next(s.detail for s in result.suppressed if s.offer_id == offer_id)


def with_policy(catalog: Catalog, **changes: Any) -> Catalog:
    return msgspec.structs.replace(
        catalog, policy=msgspec.structs.replace(catalog.policy, **changes)
    )


def with_offer(catalog: Catalog, offer_id: str, **changes: Any) -> Catalog:
    offers = tuple(
        msgspec.structs.replace(o, **changes) if o.id == offer_id else o for o in catalog.offers
    )
    return msgspec.structs.replace(catalog, offers=offers)


# --- the baseline every test below changes one thing of -------------------------------------------


def test_baseline_customer_on_store_sees_every_offer_that_fits(catalog: Catalog) -> None:
    result = run(catalog, profile())
    # crbt is "potential": the silent and churn-risk ring-back offers do not fit; the spring
    # promotion ended in 2020. Everything else fits this GoTone fashion leader.
    assert rules(result) == {
        "crbt_box": "lifecycle",
        "crbt_annual": "lifecycle",
        "old_promo": "validity",
    }
    assert allowed(result) == set(ALL) - {"crbt_box", "crbt_annual", "old_promo"}
    assert result.customer_rule is None
    # Every offer is either allowed or suppressed, never both, never neither.
    assert sorted([*allowed(result), *rules(result)]) == sorted(ALL)


def test_every_suppression_carries_a_known_rule_and_a_detail(catalog: Catalog) -> None:
    for who, channel in [
        (profile(), "store"),
        (profile(flags=("arrears",)), "inbound"),
        (None, "outbound"),
        (profile(flags=("dnd",)), "store"),
    ]:
        for s in run(catalog, who, channel).suppressed:
            assert s.rule in RULES
            assert s.detail


# --- offer rules -------------------------------------------------------------------------------


def test_channel_offer_not_sold_on_this_channel(catalog: Catalog) -> None:
    result = run(catalog, profile(), "outbound")
    # mms_pkg, weather and alert are sold at the counter and inbound only.
    assert {k for k, v in rules(result).items() if v == "channel"} == {
        "mms_pkg",
        "weather",
        "alert",
    }
    assert "mms_pkg" in allowed(run(catalog, profile(), "inbound"))


def test_validity_offer_past_its_end_date(catalog: Catalog) -> None:
    result = run(catalog, profile())
    assert rules(result)["old_promo"] == "validity"
    assert "2020-03-31" in detail(result, "old_promo")


def test_validity_end_date_is_inclusive_and_start_date_counts(catalog: Catalog) -> None:
    today = NOW.date()
    ends_today = with_offer(catalog, "old_promo", valid_to=today)
    assert "old_promo" in allowed(run(ends_today, profile()))

    ended_yesterday = with_offer(catalog, "old_promo", valid_to=today - timedelta(days=1))
    assert rules(run(ended_yesterday, profile()))["old_promo"] == "validity"

    starts_tomorrow = with_offer(
        catalog, "old_promo", valid_from=today + timedelta(days=1), valid_to=None
    )
    assert rules(run(starts_tomorrow, profile()))["old_promo"] == "validity"

    started_today = with_offer(catalog, "old_promo", valid_from=today, valid_to=None)
    assert "old_promo" in allowed(run(started_today, profile()))


def test_brand_offer_for_another_brand(catalog: Catalog) -> None:
    result = run(catalog, profile(brand="mzone"))
    assert rules(result)["club_vip"] == "brand"
    assert detail(result, "club_vip") == "for gotone; customer is mzone"
    assert "club_vip" in allowed(run(catalog, profile(brand="gotone")))


def test_segment_offer_for_another_persona(catalog: Catalog) -> None:
    result = run(catalog, profile(segment="careful_calculator"))
    assert rules(result)["club_vip"] == "segment"
    # Offers without a segment list are for everyone.
    assert {"sms_50", "weather", "crbt_open"} <= allowed(result)


def test_handset_lacks_capability(catalog: Catalog) -> None:
    result = run(catalog, profile(handset=("data",)))
    assert rules(result)["mms_pkg"] == "handset"
    assert detail(result, "mms_pkg") == "handset lacks mms"
    assert "mms_pkg" in allowed(run(catalog, profile(handset=("mms",))))


@pytest.mark.parametrize(
    ("stage", "fits"),
    [
        ("potential", "crbt_open"),
        (None, "crbt_open"),  # the warehouse says nothing: stage "none"
        ("silent", "crbt_box"),
        ("churn_risk", "crbt_annual"),
        ("active", None),
        ("churned", None),
    ],
)
def test_lifecycle_picks_the_ring_back_offer_for_the_stage(
    catalog: Catalog, stage: str | None, fits: str | None
) -> None:
    lifecycle = {} if stage is None else {"crbt": stage}
    result = run(catalog, profile(lifecycle=lifecycle))
    crbt = {"crbt_open", "crbt_box", "crbt_annual"}
    assert allowed(result) & crbt == ({fits} if fits else set())
    for offer_id in crbt - {fits}:
        assert rules(result)[offer_id] == "lifecycle"
    if fits != "crbt_box":
        assert detail(result, "crbt_box").startswith(f"crbt stage is {stage or 'none'}")


def test_arrears_blocks_all_but_offers_that_allow_it(catalog: Catalog) -> None:
    result = run(catalog, profile(flags=("arrears",)))
    assert allowed(result) == {"alert"}  # allow_arrears
    blocked = {k for k, v in rules(result).items() if v == "arrears"}
    assert blocked == {"crbt_open", "sms_50", "sms_100", "mms_pkg", "club_vip", "weather"}


def test_arrears_allowed_offer_still_obeys_other_rules(catalog: Catalog) -> None:
    result = run(catalog, profile(flags=("arrears",)), "outbound")
    assert rules(result)["alert"] == "channel"


# --- held, exclusive, cancelled ---------------------------------------------------------------


def test_held_from_profile_subscriptions(catalog: Catalog) -> None:
    result = run(catalog, profile(subscriptions=("weather",)))
    assert rules(result)["weather"] == "held"
    assert "alert" in allowed(result)


def test_held_after_accepting_here(catalog: Catalog) -> None:
    accepted = event("accepted", ago(0.01), channel="store", offer_id="weather", source="nextbest")
    result = run(catalog, profile(), history=[accepted])
    assert rules(result)["weather"] == "held"


def test_held_after_warehouse_subscribed_event(catalog: Catalog) -> None:
    subscribed = event("subscribed", ago(3), channel="store", offer_id="mms_pkg")
    result = run(catalog, profile(), history=[subscribed])
    assert rules(result)["mms_pkg"] == "held"


def test_held_then_cancelled_is_no_longer_held(catalog: Catalog) -> None:
    cancelled = event("cancelled", ago(100), channel="store", offer_id="weather")
    # The cancellation is long past the 90-day block: weather may be offered again.
    result = run(catalog, profile(subscriptions=("weather",)), history=[cancelled])
    assert "weather" in allowed(result)

    # Subscribed, then cancelled: history order does not matter, time does.
    history = [
        event("cancelled", ago(100), channel="store", offer_id="mms_pkg"),
        event("subscribed", ago(200), channel="store", offer_id="mms_pkg"),
    ]
    assert "mms_pkg" in allowed(run(catalog, profile(), history=history))


def test_cancelled_then_subscribed_again_is_held(catalog: Catalog) -> None:
    history = [
        event("subscribed", ago(100), channel="store", offer_id="mms_pkg"),
        event("cancelled", ago(200), channel="store", offer_id="mms_pkg"),
    ]
    assert rules(run(catalog, profile(), history=history))["mms_pkg"] == "held"


def test_exclusive_group_sibling_blocks(catalog: Catalog) -> None:
    result = run(catalog, profile(subscriptions=("sms_50",)))
    assert rules(result)["sms_50"] == "held"
    assert rules(result)["sms_100"] == "exclusive"
    assert "sms_bundle" in detail(result, "sms_100")
    # The other way round too.
    result = run(catalog, profile(subscriptions=("sms_100",)))
    assert rules(result)["sms_50"] == "exclusive"


def test_exclusive_group_freed_by_cancellation(catalog: Catalog) -> None:
    cancelled = event("cancelled", ago(120), channel="store", offer_id="sms_50")
    result = run(catalog, profile(subscriptions=("sms_50",)), history=[cancelled])
    assert {"sms_50", "sms_100"} <= allowed(result)


def test_cancelled_recently_blocks_the_whole_service(catalog: Catalog) -> None:
    cancelled = event("cancelled", ago(30), channel="store", offer_id="sms_50")
    result = run(catalog, profile(), history=[cancelled])
    # sms_100 is another offer of the same service: blocked too.
    assert rules(result)["sms_50"] == "cancelled_recently"
    assert rules(result)["sms_100"] == "cancelled_recently"
    assert (
        detail(result, "sms_100") == "cancelled sms 30 days ago (not offered again within 90 days)"
    )
    # Other services are untouched.
    assert {"crbt_open", "mms_pkg", "weather"} <= allowed(result)


@pytest.mark.parametrize(("days", "blocked"), [(1, True), (89.9, True), (90, False), (91, False)])
def test_cancelled_recently_window_is_90_days(catalog: Catalog, days: float, blocked: bool) -> None:
    cancelled = event("cancelled", ago(days), channel="store", offer_id="sms_50")
    result = run(catalog, profile(), history=[cancelled])
    assert ("sms_50" not in allowed(result)) is blocked
    assert (rules(result).get("sms_50") == "cancelled_recently") is blocked


def test_cancel_block_comes_from_policy_and_offer(catalog: Catalog) -> None:
    cancelled = event("cancelled", ago(45), channel="store", offer_id="sms_50")
    # A per-offer override: sms_100 is blocked for 30 days only, sms_50 keeps the policy's 90.
    variant = with_offer(catalog, "sms_100", cancel_block_days=30)
    result = run(variant, profile(), history=[cancelled])
    assert rules(result)["sms_50"] == "cancelled_recently"
    assert "sms_100" in allowed(result)

    shorter = with_policy(catalog, cancel_block_days=40)
    assert {"sms_50", "sms_100"} <= allowed(run(shorter, profile(), history=[cancelled]))


# --- declines ---------------------------------------------------------------------------------


def test_declined_now_gone_next_call_back_after_cooldown(catalog: Catalog) -> None:
    clock = FixedClock(NOW)
    who = profile()
    assert "weather" in allowed(run(catalog, who, now=clock.now()))

    declined = event(
        "declined", clock.now(), channel="store", offer_id="weather", source="nextbest"
    )
    clock.advance(minutes=5)  # the next call
    result = run(catalog, who, history=[declined], now=clock.now())
    assert rules(result)["weather"] == "declined_cooldown"
    assert detail(result, "weather").endswith("may be offered again from 2026-12-19")
    assert "alert" in allowed(result)  # only the declined offer

    clock.advance(days=29)
    assert rules(run(catalog, who, history=[declined], now=clock.now()))["weather"] == (
        "declined_cooldown"
    )

    clock.advance(days=1)  # 30 days and 5 minutes after the decline
    assert "weather" in allowed(run(catalog, who, history=[declined], now=clock.now()))


@pytest.mark.parametrize(("days", "blocked"), [(29.99, True), (30, False)])
def test_declined_cooldown_boundary(catalog: Catalog, days: float, blocked: bool) -> None:
    declined = event("declined", ago(days), channel="store", offer_id="weather")
    result = run(catalog, profile(), history=[declined])
    assert (rules(result).get("weather") == "declined_cooldown") is blocked
    assert ("weather" in allowed(result)) is not blocked


def test_declined_cooldown_per_offer_override(catalog: Catalog) -> None:
    clock = FixedClock(NOW)
    who = profile(lifecycle={"crbt": "silent"})
    history = [
        event("declined", clock.now(), channel="store", offer_id="crbt_box", source="nextbest"),
        event("declined", clock.now(), channel="store", offer_id="sms_50", source="nextbest"),
    ]
    clock.advance(days=6)
    result = run(catalog, who, history=history, now=clock.now())
    assert rules(result)["crbt_box"] == "declined_cooldown"
    assert rules(result)["sms_50"] == "declined_cooldown"

    clock.advance(days=2)  # 8 days: past crbt_box's 7, within the policy's 30
    result = run(catalog, who, history=history, now=clock.now())
    assert "crbt_box" in allowed(result)
    assert rules(result)["sms_50"] == "declined_cooldown"


def test_decline_cooldown_comes_from_policy(catalog: Catalog) -> None:
    declined = event("declined", ago(10), channel="store", offer_id="weather", source="nextbest")
    assert rules(run(catalog, profile(), history=[declined]))["weather"] == "declined_cooldown"
    shorter = with_policy(catalog, decline_cooldown_days=5)
    assert "weather" in allowed(run(shorter, profile(), history=[declined]))


def test_latest_decline_counts(catalog: Catalog) -> None:
    history = [
        event("declined", ago(5), channel="store", offer_id="weather"),
        event("declined", ago(60), channel="store", offer_id="weather"),
    ]
    result = run(catalog, profile(), history=history)
    assert rules(result)["weather"] == "declined_cooldown"
    assert detail(result, "weather").startswith("declined 5 days ago")


# --- customer-level rules ----------------------------------------------------------------------


def test_unknown_subscriber_gets_general_offers_only(catalog: Catalog) -> None:
    result = run(catalog, None, "store")
    assert allowed(result) == {"weather", "alert"}
    assert rules(result) == {
        **{o: "unknown_subscriber" for o in ALL if o not in {"weather", "alert", "old_promo"}},
        "old_promo": "validity",
    }
    assert result.customer_rule is None


def test_unknown_subscriber_general_offer_still_obeys_history(catalog: Catalog) -> None:
    declined = event("declined", ago(2), channel="store", offer_id="weather")
    result = run(catalog, None, "store", history=[declined])
    assert allowed(result) == {"alert"}
    assert rules(result)["weather"] == "declined_cooldown"


@pytest.mark.parametrize("flag", ["dnd", "complaint"])
def test_flagged_customer_gets_nothing_on_outbound(catalog: Catalog, flag: str) -> None:
    result = run(catalog, profile(flags=(flag,)), "outbound")
    assert result.allowed == []
    assert rules(result) == dict.fromkeys(ALL, flag)
    assert result.customer_rule == flag


@pytest.mark.parametrize("flag", ["dnd", "complaint"])
@pytest.mark.parametrize("channel", ["store", "inbound"])
def test_flagged_customer_gets_service_critical_offers_only_off_outbound(
    catalog: Catalog, flag: str, channel: str
) -> None:
    result = run(catalog, profile(flags=(flag,)), channel)
    assert allowed(result) == {"alert"}
    assert result.customer_rule == flag
    assert {k for k, v in rules(result).items() if v == flag} == set(ALL) - {"alert"}


def test_flagged_customer_service_critical_offer_still_screened(catalog: Catalog) -> None:
    result = run(catalog, profile(flags=("dnd",), subscriptions=("alert",)))
    assert result.allowed == []
    assert rules(result)["alert"] == "held"
    # Arrears does not block alert (allow_arrears).
    assert allowed(run(catalog, profile(flags=("dnd", "arrears")))) == {"alert"}


def test_dnd_takes_precedence_over_complaint(catalog: Catalog) -> None:
    result = run(catalog, profile(flags=("complaint", "dnd")), "outbound")
    assert result.customer_rule == "dnd"


@pytest.mark.parametrize(("days", "blocked"), [(1, True), (100, True), (179, True), (181, False)])
def test_complaint_event_acts_like_the_flag_within_the_window(
    catalog: Catalog, days: int, blocked: bool
) -> None:
    complaint = event("complaint", ago(days), channel="inbound")
    result = run(catalog, profile(), "outbound", history=[complaint])
    if blocked:
        assert result.customer_rule == "complaint"
        assert result.allowed == []
        assert detail(result, "crbt_open") == (
            f"complaint recorded {days} days ago (excluded for 180 days)"
        )
        # Off outbound, like the flag: service-critical offers only.
        assert allowed(run(catalog, profile(), "store", history=[complaint])) == {"alert"}
    else:
        assert result.customer_rule is None
        assert result.allowed


def test_complaint_window_comes_from_policy(catalog: Catalog) -> None:
    complaint = event("complaint", ago(100), channel="inbound")
    shorter = with_policy(catalog, complaint_block_days=30)
    assert run(shorter, profile(), "outbound", history=[complaint]).customer_rule is None


def test_recontact_outbound_reached_20_days_ago(catalog: Catalog) -> None:
    contacted = event("contacted", ago(20), channel="outbound")
    result = run(catalog, profile(), "outbound", history=[contacted])
    assert result.customer_rule == "recontact"
    assert result.allowed == []
    assert rules(result) == dict.fromkeys(ALL, "recontact")
    assert detail(result, "sms_50") == (
        "last reached by outbound 20 days ago (no outbound offer within 60 days)"
    )
    # The store has no such window: the counter still serves the customer.
    at_store = run(catalog, profile(), "store", history=[contacted])
    assert at_store.customer_rule is None
    assert allowed(at_store) == allowed(run(catalog, profile(), "store"))


@pytest.mark.parametrize(("days", "blocked"), [(59, True), (59.99, True), (60, False), (61, False)])
def test_recontact_window_is_60_days(catalog: Catalog, days: float, blocked: bool) -> None:
    contacted = event("contacted", ago(days), channel="outbound")
    result = run(catalog, profile(), "outbound", history=[contacted])
    assert (result.customer_rule == "recontact") is blocked
    assert bool(result.allowed) is not blocked


def test_recontact_counts_outcomes_recorded_here(catalog: Catalog) -> None:
    for kind in ("presented", "accepted", "declined", "considering"):
        assert kind in REACHED
        reached = event(kind, ago(5), offer_id="sms_50", source="nextbest")
        assert run(catalog, profile(), "outbound", history=[reached]).customer_rule == (
            "recontact"
        ), kind


def test_no_answer_does_not_count_as_reached(catalog: Catalog) -> None:
    history = [event("no_answer", ago(1), offer_id="sms_50", source="nextbest")]
    result = run(catalog, profile(), "outbound", history=history)
    assert result.customer_rule is None
    assert result.allowed
    # ... and does not hide an earlier reach either.
    history.append(event("contacted", ago(10)))
    assert run(catalog, profile(), "outbound", history=history).customer_rule == "recontact"


def test_later_callback_waives_recontact(catalog: Catalog) -> None:
    history = [
        event("presented", ago(10), offer_id="sms_50", source="nextbest"),
        event("callback", ago(9), offer_id="sms_50", source="nextbest"),
    ]
    result = run(catalog, profile(), "outbound", history=history)
    assert result.customer_rule is None
    assert result.allowed

    # Reached again after the callback: the window starts over.
    history.append(event("declined", ago(1), offer_id="sms_50", source="nextbest"))
    assert run(catalog, profile(), "outbound", history=history).customer_rule == "recontact"


def test_callback_on_another_channel_does_not_waive(catalog: Catalog) -> None:
    history = [
        event("contacted", ago(10)),
        event("callback", ago(5), channel="store", offer_id="sms_50", source="nextbest"),
    ]
    assert run(catalog, profile(), "outbound", history=history).customer_rule == "recontact"


def test_recontact_counts_only_configured_channels(catalog: Catalog) -> None:
    inbound = event("presented", ago(3), channel="inbound", offer_id="sms_50", source="nextbest")
    assert run(catalog, profile(), "outbound", history=[inbound]).customer_rule is None

    channels = dict(catalog.policy.channels)
    channels["outbound"] = ChannelPolicy(
        max_offers=2, recontact_days=60, counts_channels=("outbound", "inbound")
    )
    variant = with_policy(catalog, channels=channels)
    assert run(variant, profile(), "outbound", history=[inbound]).customer_rule == "recontact"


def test_recontact_applies_to_unknown_subscriber(catalog: Catalog) -> None:
    contacted = event("contacted", ago(20))
    assert run(catalog, None, "outbound", history=[contacted]).customer_rule == "recontact"


def test_segment_not_for_channel_tight_fisted_on_outbound(catalog: Catalog) -> None:
    tight = profile(segment="tight_fisted")
    result = run(catalog, tight, "outbound")
    assert result.customer_rule == "segment_not_for_channel"
    assert result.allowed == []
    assert rules(result) == dict.fromkeys(ALL, "segment_not_for_channel")
    assert detail(result, "sms_50").startswith("Tight-fisted: ")
    # At the counter they are served like anyone else.
    at_store = run(catalog, tight, "store")
    assert at_store.customer_rule is None
    assert {"crbt_open", "sms_50", "weather"} <= allowed(at_store)
    assert rules(at_store)["club_vip"] == "segment"


# --- contact_state ----------------------------------------------------------------------------


def test_contact_state_folds_history(catalog: Catalog) -> None:
    history = [
        event("declined", ago(3), channel="store", offer_id="weather"),
        event("cancelled", ago(40), channel="store", offer_id="sms_100"),
        event("contacted", ago(70)),
        event("contacted", ago(20)),
        event("complaint", ago(200), channel="inbound"),
        event("subscribed", ago(50), channel="store", offer_id="mms_pkg"),
    ]
    state = contact_state(catalog, profile(subscriptions=("alert",)), history)
    assert state.held == frozenset({"alert", "mms_pkg"})
    assert state.declined_at == {"weather": ago(3)}
    assert state.cancelled_at == {"sms": ago(40)}  # keyed by service
    # A decline reached the customer too; a cancellation did not (it came from elsewhere).
    assert state.last_reached == {"outbound": ago(20), "store": ago(3)}
    assert state.callback_pending == {"outbound": False, "store": False}
    assert state.last_complaint == ago(200)
