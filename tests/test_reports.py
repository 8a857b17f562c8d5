"""Supervisor reports: numbers checked against the hand-worked scenario of test_rollups.py and
against hand-computed rollup rows; empty ranges and divisions by zero; roles and CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import api
from test_rollups import DAY1, DAY2, Scenario, play_scenario

from nextbest.clock import FixedClock
from nextbest.errors import BadInput
from nextbest.outbox import OutboxWorker
from nextbest.provisioning import LedgerProvisioner
from nextbest.reports import ReportService, lift_interval, rate, to_csv, wilson
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import AuditFlag, Subscription
from nextbest.storage.report_models import ReportRollup


def _rows(report: Any) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(r) for r in report.rows]


def _plain(report: Any) -> list[dict[str, Any]]:
    """Rows as JSON would show them (dimensions not asked for left out)."""
    decoded: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(report.rows))
    return decoded


@pytest.fixture
def scenario(db: Database, clock: FixedClock, tmp_path: Path) -> Scenario:
    return play_scenario(db, clock, tmp_path)


def test_conversion_by_agent_with_hand_computed_numbers(
    db: Database, clock: FixedClock, scenario: Scenario
) -> None:
    reports = ReportService(db, clock)
    report = reports.conversion(since=DAY1, until=DAY2, by=["agent"])
    assert _plain(report) == [
        {"agent": "ana", "presented": 4, "accepted": 2, "rate": 0.5, "revenue": 10.0},
        {"agent": "bo", "presented": 3, "accepted": 2, "rate": 0.6667, "revenue": 3.0},
        {"agent": "cy", "presented": 1, "accepted": 0, "rate": 0.0, "revenue": 0.0},
    ]
    total = report.total
    assert (total.presented, total.accepted, total.rate, total.revenue) == (8, 4, 0.5, 13.0)
    assert report.columns == ["agent", "presented", "accepted", "rate", "revenue"]


def test_conversion_by_two_dimensions_and_filters(
    db: Database, clock: FixedClock, scenario: Scenario
) -> None:
    reports = ReportService(db, clock)
    by_agent_offer = reports.conversion(since=DAY1, until=DAY2, by=["agent", "offer"])
    assert [
        (r["agent"], r["offer"], r["presented"], r["accepted"]) for r in _plain(by_agent_offer)
    ] == [
        ("ana", "alert", 1, 0),
        ("ana", "club_vip", 1, 0),
        ("ana", "crbt_open", 1, 1),
        ("ana", "mms_pkg", 1, 1),
        ("bo", "crbt_box", 1, 1),
        ("bo", "mms_pkg", 1, 0),
        ("bo", "weather", 1, 1),
        ("cy", "sms_100", 1, 0),
    ]
    # by day and offer, only the store: mms_pkg presented twice (ana, bo), accepted once.
    store = reports.conversion(
        since=DAY1, until=DAY2, by=["day", "offer"], filters={"channel": "store"}
    )
    assert [(r["day"], r["offer"], r["presented"], r["accepted"]) for r in _plain(store)] == [
        ("2026-11-19", "alert", 1, 0),
        ("2026-11-19", "club_vip", 1, 0),
        ("2026-11-19", "crbt_box", 1, 1),
        ("2026-11-19", "crbt_open", 1, 1),
        ("2026-11-19", "mms_pkg", 2, 1),
        ("2026-11-19", "weather", 1, 1),
    ]
    # a campaign filter: no decision here had one
    none = reports.conversion(since=DAY1, until=DAY2, by=["agent"], filters={"campaign": "C1"})
    assert none.rows == []
    by_segment = reports.conversion(since=DAY1, until=DAY2, by=["segment"])
    assert [(r["segment"], r["presented"]) for r in _plain(by_segment)] == [
        ("careful_calculator", 4),
        ("fashionable_high_end", 4),
        ("tight_fisted", 0),
    ]
    # no store (the agent's key has none) and no campaign are shown as null
    by_store = reports.conversion(since=DAY1, until=DAY2, by=["store", "campaign"])
    assert [(r["store"], r["campaign"], r["presented"]) for r in _plain(by_store)] == [
        (None, None, 1),
        ("NJ-0001", None, 4),
        ("WX-0003", None, 3),
    ]


def test_empty_range_and_division_by_zero(
    db: Database, clock: FixedClock, scenario: Scenario
) -> None:
    reports = ReportService(db, clock)
    empty = reports.conversion(since=date(2026, 1, 1), until=date(2026, 1, 31), by=["agent"])
    assert empty.rows == []
    assert (empty.total.presented, empty.total.accepted, empty.total.rate) == (0, 0, None)
    # Day 2 alone: bo served D6 and nothing was presented: a row, with no rate.
    day2 = reports.conversion(since=DAY2, until=DAY2, by=["agent"])
    assert _plain(day2) == [
        {"agent": "bo", "presented": 0, "accepted": 0, "rate": None, "revenue": 0.0},
        {"agent": "cy", "presented": 1, "accepted": 0, "rate": 0.0, "revenue": 0.0},
    ]
    funnel = reports.funnel(since=date(2026, 1, 1), until=date(2026, 1, 31))
    assert _plain(funnel) == [
        {
            "targeted": None,
            "reached": 0,
            "presented": 0,
            "accepted": 0,
            "provisioned": 0,
            "matured": 0,
            "retained": 0,
            "presented_rate": None,
            "accepted_rate": None,
            "provisioned_rate": None,
            "retained_rate": None,
        }
    ]
    agents = reports.agents(since=date(2026, 1, 1), until=date(2026, 1, 31))
    assert (agents.rows, agents.team_rate) == ([], None)
    revenue = reports.revenue(since=DAY2, until=DAY2, by=["agent"])
    assert [(r["agent"], r["sales"], r["average_price"]) for r in _plain(revenue)] == [
        ("bo", 0, None),
        ("cy", 0, None),
    ]


def _deliver_and_age(db: Database, clock: FixedClock, scenario: Scenario) -> None:
    """Provision every sale, then: D1's crbt_open cancelled after 30 days, D2's crbt_box
    refused by the far side, D2's weather cancelled after 10 days; 100 days pass."""
    assert OutboxWorker(db, LedgerProvisioner(), clock, Settings()).run_once() == 4
    sales = scenario.sales
    with db.write() as session:
        for key, status, days, reason in (
            ("D1:crbt_open", "cancelled", 30, None),
            ("D2:crbt_box", "failed", None, "BOSS: service not open in region"),
            ("D2:weather", "cancelled", 10, None),
        ):
            row = session.get(Subscription, sales[key])
            assert row is not None
            row.status = status
            row.status_reason = reason
            if days is not None:
                row.cancelled_at = row.created_at + timedelta(days=days)
        session.add_all(
            [
                AuditFlag(
                    subscription_id=sales["D1:crbt_open"],
                    flag="arrears",
                    detail="x",
                    created_at=clock.now(),
                ),
                AuditFlag(
                    subscription_id=sales["D2:weather"],
                    flag="not_billed",
                    detail="x",
                    created_at=clock.now(),
                ),
                AuditFlag(
                    subscription_id=sales["D2:weather"],
                    flag="complaint_after",
                    detail="x",
                    created_at=clock.now(),
                ),
            ]
        )
    clock.advance(days=100)


def test_funnel_from_reached_to_still_active_at_90_days(
    db: Database, clock: FixedClock, scenario: Scenario
) -> None:
    reports = ReportService(db, clock)
    before = reports.funnel(since=DAY1, until=DAY2)
    row = _plain(before)[0]
    # Sales are pending until provisioning answers: none provisioned, none matured.
    assert (row["reached"], row["presented"], row["accepted"], row["provisioned"]) == (6, 4, 2, 0)
    assert (row["provisioned_rate"], row["retained_rate"]) == (0.0, None)

    _deliver_and_age(db, clock, scenario)
    after = _plain(reports.funnel(since=DAY1, until=DAY2))[0]
    # D1: crbt_open cancelled at 30 days but mms_pkg still active: retained.
    # D2: crbt_box failed, weather cancelled at 10 days: provisioned, not retained.
    assert after == {
        "targeted": None,
        "reached": 6,
        "presented": 4,
        "accepted": 2,
        "provisioned": 2,
        "matured": 2,
        "retained": 1,
        "presented_rate": 0.6667,
        "accepted_rate": 0.5,
        "provisioned_rate": 1.0,
        "retained_rate": 0.5,
    }
    by_channel = reports.funnel(since=DAY1, until=DAY2, by=["channel"])
    assert [
        (r["channel"], r["reached"], r["presented"], r["accepted"], r["provisioned"], r["retained"])
        for r in _plain(by_channel)
    ] == [
        ("inbound", 1, 0, 0, 0, 0),
        ("outbound", 1, 1, 0, 0, 0),
        ("store", 4, 3, 2, 2, 1),
    ]
    by_agent = reports.funnel(since=DAY1, until=DAY2, by=["agent"])
    assert [(r["agent"], r["reached"], r["retained"]) for r in _plain(by_agent)] == [
        ("ana", 2, 1),
        ("bo", 2, 0),
        ("cy", 2, 0),
    ]
    # a shorter retention window: D2's weather lasted 10 days, so both are retained at 7
    week = _plain(reports.funnel(since=DAY1, until=DAY2, retention_days=7))[0]
    assert (week["matured"], week["retained"]) == (2, 2)
    by_segment = reports.funnel(since=DAY1, until=DAY2, by=["segment"])
    assert [(r["segment"], r["reached"], r["provisioned"]) for r in _plain(by_segment)] == [
        ("careful_calculator", 3, 1),
        ("fashionable_high_end", 2, 1),
        ("tight_fisted", 1, 0),
    ]


def test_provisioning_failures_and_audit_flags(
    db: Database, clock: FixedClock, scenario: Scenario
) -> None:
    _deliver_and_age(db, clock, scenario)
    reports = ReportService(db, clock)
    failures = reports.failures(since=DAY1, until=DAY2)
    assert _plain(failures) == [
        {
            "reason": "BOSS: service not open in region",
            "sales": 1,
            "failed": 1,
            "share": 1.0,
            "revenue_lost": 1.0,
        }
    ]
    by_agent = reports.failures(since=DAY1, until=DAY2, by=["agent"])
    # bo sold crbt_box (failed, day 1) and weather (day 2 by the sale's own day)
    assert _plain(by_agent) == [
        {"agent": "bo", "sales": 2, "failed": 1, "share": 0.5, "revenue_lost": 1.0}
    ]
    assert reports.failures(since=DAY2, until=DAY2).rows == []

    flags = reports.audit_flags(since=DAY1, until=DAY2)
    assert [(r["flag"], r["flags"], r["sales_flagged"]) for r in _plain(flags)] == [
        ("arrears", 1, 1),
        ("complaint_after", 1, 1),
        ("not_billed", 1, 1),
    ]
    assert _plain(flags)[0]["description"] == "the customer was in arrears when sold to"
    by_agent_flags = reports.audit_flags(since=DAY1, until=DAY2, by=["agent"])
    assert [(r["agent"], r["flags"], r["sales_flagged"]) for r in _plain(by_agent_flags)] == [
        ("ana", 1, 1),
        ("bo", 2, 1),
    ]
    csv_text = to_csv(reports.audit_flags(since=DAY1, until=DAY2, by=["agent", "flag"]))
    assert csv_text.splitlines()[0] == "agent,flag,description,flags,sales_flagged"


def test_wilson_and_lift_intervals_by_hand() -> None:
    # textbook values
    assert wilson(5, 10) == (0.2366, 0.7634)
    assert wilson(0, 10) == (0.0, 0.2775)
    assert wilson(0, 0) is None
    assert rate(1, 3) == 0.3333
    assert rate(0, 0) is None
    # lift 2 with 20/100 against 10/100: 2 * exp(+- 1.96 * sqrt(1/20 - 1/100 + 1/10 - 1/100))
    assert lift_interval(20, 100, 10, 100) == (2.0, 0.9866, 4.0545)
    assert lift_interval(5, 100, 0, 100) == (None, None, None)  # control never accepted
    assert lift_interval(0, 100, 5, 100) == (0.0, None, None)
    assert lift_interval(5, 0, 5, 100) == (None, None, None)


def _rollup(db: Database, **values: Any) -> None:
    """A hand-made rollup row (day 1, no experiment unless given)."""
    row = {
        "day": DAY1,
        "k3": "",
        "experiment": "",
        "arm": "",
        "shard": 0,
        "decisions": 0,
        "contacts_presented": 0,
        "contacts_accepted": 0,
        "presented": 0,
        "accepted": 0,
        "revenue_fen": 0,
        "expected_micro": 0,
        **values,
    }
    with db.write() as session:
        session.add(ReportRollup(**row))


def test_agents_against_the_team_flag_only_what_is_not_noise(
    db: Database, clock: FixedClock
) -> None:
    # (agent, store, presented, accepted, expected acceptances)
    for agent, store, n, k, e in (
        ("a-low", "S1", 200, 20, 40.0),  # 10% over 200: Wilson (6.57%, 14.94%): below 25%
        ("a-few", "S1", 10, 1, 2.5),  # 10% over 10: interval (1.8%, 40.4%) contains 25%
        ("a-high", "S2", 200, 80, 50.0),  # 40%: interval (33.5%, 46.9%) above 25%
        ("a-mid", "S2", 190, 49, 47.5),  # 25.8%: interval contains 25%
    ):
        _rollup(
            db,
            grain="agent+store",
            k1=agent,
            k2=store,
            presented=n,
            accepted=k,
            expected_micro=int(e * 1e6),
        )
    _rollup(db, grain="agent+store", k1="a-idle", k2="S1", decisions=3)
    report = ReportService(db, clock).agents(since=DAY1, until=DAY1)
    assert (report.team_presented, report.team_accepted, report.team_rate) == (600, 150, 0.25)
    rows = {r["agent"]: r for r in _rows(report)}
    assert [r.agent for r in report.rows] == ["a-high", "a-mid", "a-few", "a-low", "a-idle"]
    assert rows["a-low"]["verdict"] == "below"
    assert (rows["a-low"]["low"], rows["a-low"]["high"]) == (0.0657, 0.1494)
    assert rows["a-low"]["gap_points"] == -15.0
    assert rows["a-low"]["expected_rate"] == 0.2
    assert rows["a-few"]["verdict"] == "within"
    assert rows["a-high"]["verdict"] == "above"
    assert rows["a-mid"]["verdict"] == "within"
    assert rows["a-idle"] == {
        "agent": "a-idle",
        "presented": 0,
        "accepted": 0,
        "rate": None,
        "low": None,
        "high": None,
        "expected_rate": None,
        "gap_points": None,
        "verdict": "no_data",
    }
    # filtered to one store: the team is that store's agents
    s1 = ReportService(db, clock).agents(since=DAY1, until=DAY1, filters={"store": "S1"})
    assert (s1.team_presented, s1.team_accepted) == (210, 21)
    assert {r.agent: r.verdict for r in s1.rows} == {
        "a-low": "within",
        "a-few": "within",
        "a-idle": "no_data",
    }
    wide = ReportService(db, clock).agents(since=DAY1, until=DAY1, confidence=0.99)
    assert wide.confidence == 0.99
    with pytest.raises(BadInput):
        ReportService(db, clock).agents(since=DAY1, until=DAY1, confidence=1.5)


def test_lift_per_channel_and_offer(db: Database, clock: FixedClock) -> None:
    for channel, arm, decisions, accepted in (
        ("store", "model", 100, 20),
        ("store", "control", 100, 10),
        ("outbound", "model", 50, 5),
        ("outbound", "control", 40, 0),
    ):
        _rollup(
            db,
            grain="channel+campaign",
            k1=channel,
            k2="",
            experiment="holdout",
            arm=arm,
            decisions=decisions,
            contacts_accepted=accepted,
        )
    _rollup(db, grain="channel+campaign", k1="store", k2="", decisions=999, contacts_accepted=999)
    for offer, arm, n, k in (
        ("crbt_open", "model", 1000, 300),
        ("crbt_open", "control", 1000, 100),
    ):
        _rollup(
            db,
            grain="channel+offer",
            k1="store",
            k2=offer,
            experiment="holdout",
            arm=arm,
            presented=n,
            accepted=k,
        )
    reports = ReportService(db, clock)
    by_channel = reports.lift(since=DAY1, until=DAY1, by=["channel"])
    assert by_channel.unit == "contacts"
    assert _plain(by_channel) == [
        {
            "channel": "outbound",
            "model_n": 50,
            "model_accepted": 5,
            "model_rate": 0.1,
            "control_n": 40,
            "control_accepted": 0,
            "control_rate": 0.0,
            "lift": None,
            "low": None,
            "high": None,
            "verdict": "no_data",
        },
        {
            "channel": "store",
            "model_n": 100,
            "model_accepted": 20,
            "model_rate": 0.2,
            "control_n": 100,
            "control_accepted": 10,
            "control_rate": 0.1,
            "lift": 2.0,
            "low": 0.9866,
            "high": 4.0545,
            "verdict": "unclear",
        },
    ]
    by_offer = reports.lift(since=DAY1, until=DAY1, by=["offer"], experiment="holdout")
    assert by_offer.unit == "offers"
    (row,) = _plain(by_offer)
    assert (row["offer"], row["lift"], row["verdict"]) == ("crbt_open", 3.0, "higher")
    assert reports.lift(since=DAY1, until=DAY1, experiment="other").rows == []
    overall = _plain(reports.lift(since=DAY1, until=DAY1))
    assert (overall[0]["model_n"], overall[0]["control_n"]) == (150, 140)


def test_bad_parameters_are_refused_with_the_field(db: Database, clock: FixedClock) -> None:
    reports = ReportService(db, clock)
    with pytest.raises(BadInput) as three:
        reports.conversion(by=["agent", "offer"], filters={"channel": "store"})
    assert three.value.field == "by"
    with pytest.raises(BadInput) as backwards:
        reports.conversion(since=DAY2, until=DAY1)
    assert backwards.value.field == "since"
    with pytest.raises(BadInput):
        reports.funnel(by=["offer"])
    with pytest.raises(BadInput):
        reports.funnel(by=["agent", "channel"])
    with pytest.raises(BadInput):
        reports.lift(by=["agent"])
    # the default period: the 30 days up to today (clock: 2026-11-19 in China)
    report = reports.conversion()
    assert (report.since, report.until) == (date(2026, 10, 21), DAY1)


def test_report_endpoints_roles_csv_and_errors(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(settings, db, clock, standard_extract) as a:
        decision = a.decide()
        offer = decision["offers"][0]["offer_id"]
        assert a.outcome(decision["decision_id"], offer, "accepted").status_code == 201
        paths = [
            "/v1/reports/conversion?by=agent&by=offer",
            "/v1/reports/revenue?by=offer",
            "/v1/reports/funnel?by=channel",
            "/v1/reports/agents",
            "/v1/reports/lift?by=channel",
            "/v1/reports/provisioning-failures",
            "/v1/reports/audit-flags",
        ]
        for path in paths:
            for role in ("clerk", "agent", "supervisor", "admin"):
                response = a.client.get(path, headers=a.headers(role))
                expected = 200 if role in ("supervisor", "admin") else 403
                assert response.status_code == expected, (path, role, response.text)
            csv_answer = a.client.get(
                path + "&format=csv" if "?" in path else path + "?format=csv",
                headers=a.headers("supervisor"),
            )
            assert csv_answer.status_code == 200
            assert csv_answer.headers["content-type"].startswith("text/csv")
            assert "attachment" in csv_answer.headers["content-disposition"]

        sup = a.headers("supervisor")
        body = a.client.get("/v1/reports/conversion?by=agent&by=offer", headers=sup).json()
        assert body["rows"] == [
            {
                "agent": "clerk-1",
                "offer": offer,
                "presented": 1,
                "accepted": 1,
                "rate": 1.0,
                "revenue": 5.0,
            }
        ]
        by_header = a.client.get(
            "/v1/reports/conversion?by=offer", headers={**sup, "Accept": "text/csv"}
        )
        assert by_header.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(by_header.text)))
        assert table == [
            ["offer", "presented", "accepted", "rate", "revenue"],
            [offer, "1", "1", "1.0", "5.0"],
        ]
        assert by_header.headers["vary"] == "Accept"

        dated = a.client.get(
            "/v1/reports/conversion?since=2026-11-19&until=2026-11-19&channel=store&by=day",
            headers=sup,
        ).json()
        assert dated["filters"] == {"channel": "store"}
        assert dated["rows"][0]["day"] == "2026-11-19"

        three = a.client.get("/v1/reports/conversion?by=agent&by=offer&by=store", headers=sup)
        assert three.status_code == 400
        assert three.json()["field"] == "by"
        unknown = a.client.get("/v1/reports/conversion?by=colour", headers=sup)
        assert unknown.status_code == 400
        backwards = a.client.get(
            "/v1/reports/funnel?since=2026-11-20&until=2026-11-01", headers=sup
        )
        assert backwards.status_code == 400
        assert backwards.json()["field"] == "since"
        assert a.client.get("/v1/reports/agents?confidence=2", headers=sup).status_code == 400
        # Days and windows no ledger could hold are refused, not a 500 (found by the fuzzer).
        for query, field in (
            ("since=0001-01-01", "since"),
            ("until=9999-12-31", "until"),
            ("retention_days=999999999", "retention_days"),
        ):
            refused = a.client.get(f"/v1/reports/funnel?{query}", headers=sup)
            assert refused.status_code == 400, refused.text
            assert field in refused.text


def test_funnel_takes_targeted_and_reached_from_the_campaign_queue(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    from nextbest.decisions import DecisionService
    from nextbest.keys import Actor
    from nextbest.loader import load_extract
    from nextbest.outcomes import OutcomeService
    from nextbest.storage.campaign_models import CallTask, Campaign
    from nextbest.storage.warehouse import WarehouseReader
    from nextbest.wire import DecisionRequest, OutcomeRequest

    load_extract(db, standard_extract, clock)
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    decisions = DecisionService(db, reader, clock)
    agent = Actor(key_id=9, user_id="cy", role="agent")
    clerk = Actor(key_id=8, user_id="ana", role="clerk", store_id="NJ-0001")
    call = decisions.decide(
        agent, DecisionRequest(msisdn="13900000001", channel="outbound"), campaign_id="C1"
    )
    OutcomeService(db, reader, clock).record(
        agent,
        call.decision_id,
        OutcomeRequest(offer_id=call.offers[0].offer_id, outcome="declined"),
    )
    decisions.decide(clerk, DecisionRequest(msisdn="13900000004", channel="store"))
    now = clock.now()
    with db.write() as session:
        for campaign_id, status, targets in (("C1", "live", 5), ("C0", "draft", 9)):
            session.add(
                Campaign(
                    id=campaign_id,
                    name=campaign_id,
                    owner="pl",
                    strategy="ranked",
                    offers="crbt_open",
                    status=status,
                    starts_on=date(2026, 11, 1),
                    ends_on=date(2026, 11, 30),
                    calling_from="09:00",
                    calling_until="21:00",
                    timezone="Asia/Shanghai",
                    daily_cap=100,
                    control_share=0.2,
                    retry_delay_minutes=60,
                    max_attempts=3,
                    targets=targets,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.flush()
        for n, (status, result) in enumerate(
            (
                ("closed", "declined"),
                ("closed", "no_answer"),
                ("queued", None),
                ("closed", "control"),
            )
        ):
            session.add(
                CallTask(
                    campaign_id="C1",
                    msisdn=f"1390000100{n}",
                    status=status,
                    result=result,
                    priority=1.0,
                    due_at=now,
                    created_at=now,
                    updated_at=now,
                    closed_at=now if status == "closed" else None,
                )
            )
    reports = ReportService(db, clock)
    by_campaign = reports.funnel(since=DAY1, until=DAY1, by=["campaign"])
    assert by_campaign.targeted_source.startswith("campaigns:")
    assert [
        (r["campaign"], r["targeted"], r["reached"], r["presented"], r["accepted"])
        for r in _plain(by_campaign)
    ] == [
        (None, None, 1, 0, 0),  # the counter contact: reached when served, nothing said
        ("C1", 5, 1, 1, 0),  # five targets, one call answered (a decline), one pitched
    ]
    overall = _plain(reports.funnel(since=DAY1, until=DAY1))[0]
    assert (overall["targeted"], overall["reached"], overall["presented"]) == (5, 2, 1)
    # no targets apply to a split by agent
    by_agent = reports.funnel(since=DAY1, until=DAY1, by=["agent"])
    assert {r["agent"]: (r["targeted"], r["reached"]) for r in _plain(by_agent)} == {
        "ana": (None, 1),
        "cy": (None, 1),
    }
