"""Reports within a supervisor's scope (a store, or a team): every figure a scoped supervisor
can reach is their store's or their team's only, checked against numbers worked by hand, on
SQLite and PostgreSQL; a filter outside the scope, a split the scope leaves no room for, and
the lift (which cannot be cut by store or team) are refused with the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import api
from sqlalchemy import select
from test_rollups import DAY1, DAY2, Scenario, play_scenario

from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.errors import BadInput
from nextbest.keys import Actor, ReportScope, create_key, report_scope, revoke_key
from nextbest.outbox import OutboxWorker
from nextbest.outcomes import OutcomeService
from nextbest.provisioning import LedgerProvisioner
from nextbest.reports import OutOfScope, ReportService, splits
from nextbest.sales import SalesService
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import ApiKey, AuditFlag, Subscription
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

NJ = ReportScope(store_id="NJ-0001")
WX = ReportScope(store_id="WX-0003")
T1 = ReportScope(team_id="T1")
T2 = ReportScope(team_id="T2")
EVERYTHING = ReportScope()

DEE = Actor(key_id=7, user_id="dee", role="agent", team_id="T2")
EVE = Actor(key_id=8, user_id="eve", role="agent", team_id="T1")


def key_of_user(db: Database, user: str) -> int:
    """The id of ``user``'s (only) key."""
    with db.read() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.user_id == user))
    assert key_id is not None
    return int(key_id)


def play_teams(db: Database, clock: FixedClock, tmp_path: Path) -> Scenario:
    """``play_scenario`` (test_rollups.py: ana, a clerk at NJ-0001; bo, a clerk at WX-0003;
    cy, an agent), with cy and eve in team T1 and dee in team T2, and on day 2:

      D7 dee inbound 13900000001: sms_50 accepted (3 yuan), weather declined
      D8 eve inbound 13900000002: alert accepted (1 yuan); then eve's key is revoked
      D9 dee inbound 13900000004: alert declined

    then every sale provisioned, except two the far side refused: D2's crbt_box (bo, "region")
    and D7's sms_50 (dee, "suspended"); audit flags on D1's crbt_open (arrears) and D7's
    sms_50 (not_billed).

    Offers presented, accepted, revenue (yuan), contacts; contacts presented, accepted,
    provisioned:
      NJ-0001 (ana: D1 D4)      4  2  10  2;  2 1 1
      WX-0003 (bo: D2 D6)       3  2   3  2;  1 1 1
      T1 (cy: D3 D5, eve: D8)   2  1   1  3;  2 1 1   (cy 1 0, eve 1 1)
      T2 (dee: D7 D9)           3  1   3  2;  2 1 0
      everyone                 12  6  17  9;  7 4 3
    """
    scenario = play_scenario(db, clock, tmp_path)
    now = clock.now()
    for user, team in (("cy", "T1"), ("eve", "T1"), ("dee", "T2")):
        create_key(db, role="agent", user_id=user, team_id=team, now=now)
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    decisions = DecisionService(db, reader, clock)
    outcomes = OutcomeService(db, reader, clock)

    def contact(name: str, actor: Actor, msisdn: str, said: dict[str, str]) -> None:
        answer = decisions.decide(actor, DecisionRequest(msisdn=msisdn, channel="inbound"))
        assert [o.offer_id for o in answer.offers] == list(said)
        scenario.decisions[name] = answer.decision_id
        for offer, outcome in said.items():
            recorded = outcomes.record(
                actor,
                answer.decision_id,
                OutcomeRequest(offer_id=offer, outcome=outcome),  # type: ignore[arg-type]
            )
            assert recorded.status_code == 201
            if recorded.response.subscription is not None:
                scenario.sales[f"{name}:{offer}"] = recorded.response.subscription.id

    contact("D7", DEE, "13900000001", {"sms_50": "accepted", "weather": "declined"})
    contact("D8", EVE, "13900000002", {"alert": "accepted"})
    eve = key_of_user(db, "eve")
    assert revoke_key(db, eve, clock.now()) is not None  # she left: her past stays in T1
    contact("D9", DEE, "13900000004", {"alert": "declined"})

    assert OutboxWorker(db, LedgerProvisioner(), clock, Settings()).run_once() == 6
    sales = scenario.sales
    with db.write() as session:
        for key, reason in (("D2:crbt_box", "region"), ("D7:sms_50", "suspended")):
            row = session.get(Subscription, sales[key])
            assert row is not None
            row.status, row.status_reason = "failed", reason
        for key, flag in (("D1:crbt_open", "arrears"), ("D7:sms_50", "not_billed")):
            session.add(
                AuditFlag(subscription_id=sales[key], flag=flag, detail="x", created_at=now)
            )
    return scenario


@pytest.fixture
def teams(db: Database, clock: FixedClock, tmp_path: Path) -> Scenario:
    return play_teams(db, clock, tmp_path)


def _plain(rows: Any) -> list[dict[str, Any]]:
    """Rows as JSON shows them (dimensions not asked for left out)."""
    decoded: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(rows))
    return decoded


def _figures(reports: ReportService, scope: ReportScope) -> dict[str, Any]:
    """What a supervisor in ``scope`` reads for days 1-2, reduced to the hand-worked numbers."""
    conversion = reports.conversion(since=DAY1, until=DAY2, scope=scope).total
    revenue = reports.revenue(since=DAY1, until=DAY2, scope=scope).total
    (funnel,) = reports.funnel(since=DAY1, until=DAY2, scope=scope).rows
    agents = reports.agents(since=DAY1, until=DAY2, scope=scope)
    failures = reports.failures(since=DAY1, until=DAY2, scope=scope)
    audit = reports.audit_flags(since=DAY1, until=DAY2, scope=scope)
    return {
        "conversion": (conversion.presented, conversion.accepted, conversion.revenue),
        "revenue": (revenue.sales, revenue.revenue, revenue.average_price),
        "funnel": (
            funnel.reached,
            funnel.presented,
            funnel.accepted,
            funnel.provisioned,
        ),
        "agents": [(a.agent, a.presented, a.accepted) for a in agents.rows],
        "team": (agents.team_presented, agents.team_accepted),
        "failures": [(r.reason, r.sales, r.failed, r.revenue_lost) for r in failures.rows],
        "audit": [(r.flag, r.flags) for r in audit.rows],
    }


def test_a_store_bound_supervisor_sees_their_store_only(
    db: Database, clock: FixedClock, teams: Scenario
) -> None:
    reports = ReportService(db, clock)
    assert _figures(reports, NJ) == {
        "conversion": (4, 2, 10.0),
        "revenue": (2, 10.0, 5.0),
        "funnel": (2, 2, 1, 1),
        "agents": [("ana", 4, 2)],
        "team": (4, 2),
        "failures": [],
        "audit": [("arrears", 1)],
    }
    assert _figures(reports, WX) == {
        "conversion": (3, 2, 3.0),
        "revenue": (2, 3.0, 1.5),
        "funnel": (2, 1, 1, 1),
        "agents": [("bo", 3, 2)],
        "team": (3, 2),
        "failures": [("region", 1, 1, 1.0)],
        "audit": [],
    }
    # Splits stay inside the store; the report says whose it is.
    by_channel = reports.conversion(since=DAY1, until=DAY2, by=["channel"], scope=NJ)
    assert by_channel.scope == {"store": "NJ-0001"}
    assert [(r["channel"], r["presented"]) for r in _plain(by_channel.rows)] == [("store", 4)]
    by_day = reports.funnel(since=DAY1, until=DAY2, by=["day"], scope=WX)
    assert [(r["day"], r["reached"], r["provisioned"]) for r in _plain(by_day.rows)] == [
        ("2026-11-19", 1, 0),  # D2: its crbt_box failed; its weather was sold on day 2
        ("2026-11-20", 1, 1),  # D6, and D2's weather counted on the sale's own day
    ]
    assert by_day.targeted_source.startswith("decisions: targeted is not known within store")
    # Naming their own store is allowed, and changes nothing.
    named = reports.conversion(since=DAY1, until=DAY2, filters={"store": "NJ-0001"}, scope=NJ)
    assert named.total.presented == 4


def test_a_team_bound_supervisor_sees_their_teams_agents_only(
    db: Database, clock: FixedClock, teams: Scenario
) -> None:
    reports = ReportService(db, clock)
    # eve's key was revoked after D8: she is still counted in T1's past.
    assert _figures(reports, T1) == {
        "conversion": (2, 1, 1.0),
        "revenue": (1, 1.0, 1.0),
        "funnel": (3, 2, 1, 1),
        "agents": [("eve", 1, 1), ("cy", 1, 0)],
        "team": (2, 1),
        "failures": [],
        "audit": [],
    }
    assert _figures(reports, T2) == {
        "conversion": (3, 1, 3.0),
        "revenue": (1, 3.0, 3.0),
        "funnel": (2, 2, 1, 0),
        "agents": [("dee", 3, 1)],
        "team": (3, 1),
        "failures": [("suspended", 1, 1, 3.0)],
        "audit": [("not_billed", 1)],
    }
    by_agent = reports.conversion(since=DAY1, until=DAY2, by=["agent", "offer"], scope=T1)
    assert [(r["agent"], r["offer"], r["accepted"]) for r in _plain(by_agent.rows)] == [
        ("cy", "sms_100", 0),
        ("eve", "alert", 1),
    ]
    assert by_agent.scope == {"team": "T1"}
    one = reports.revenue(since=DAY1, until=DAY2, filters={"agent": "eve"}, scope=T1)
    assert (one.total.sales, one.total.revenue) == (1, 1.0)


def test_an_admin_or_unbound_supervisor_sees_both_stores_and_both_teams(
    db: Database, clock: FixedClock, teams: Scenario
) -> None:
    reports = ReportService(db, clock)
    admin = Actor(key_id=1, user_id="root", role="admin")
    supervisor = Actor(key_id=2, user_id="chen", role="supervisor")
    assert report_scope(admin) == report_scope(supervisor) == EVERYTHING
    everything = _figures(reports, EVERYTHING)
    assert everything == {
        "conversion": (12, 6, 17.0),
        "revenue": (6, 17.0, 2.83),
        "funnel": (9, 7, 4, 3),
        "agents": [
            ("eve", 1, 1),
            ("bo", 3, 2),
            ("ana", 4, 2),
            ("dee", 3, 1),
            ("cy", 1, 0),
        ],
        "team": (12, 6),
        "failures": [("region", 1, 1, 1.0), ("suspended", 1, 1, 3.0)],
        "audit": [("arrears", 1), ("not_billed", 1)],
    }
    assert _figures(reports, report_scope(supervisor)) == everything
    # The parts add up to the whole: two stores and two teams cover every contact here.
    parts = [_figures(reports, s)["conversion"] for s in (NJ, WX, T1, T2)]
    assert tuple(sum(p[i] for p in parts) for i in range(3)) == (12, 6, 17.0)
    lift = reports.lift(since=DAY1, until=DAY2)
    assert lift.rows == []  # no experiment in this catalog: nothing, but not refused


def test_what_a_scoped_supervisor_cannot_have_is_refused_with_the_reason(
    db: Database, clock: FixedClock, teams: Scenario
) -> None:
    reports = ReportService(db, clock)
    cases: list[tuple[Callable[[], object], type[Exception], str | None, str]] = [
        # a filter outside the scope: 403, naming the filter
        (
            lambda: reports.conversion(filters={"store": "WX-0003"}, scope=NJ),
            OutOfScope,
            "store",
            "store: your reports are limited to store NJ-0001; 'WX-0003' is outside it",
        ),
        (
            lambda: reports.agents(filters={"store": "WX-0003"}, scope=NJ),
            OutOfScope,
            "store",
            "store NJ-0001",
        ),
        (
            lambda: reports.revenue(filters={"agent": "dee"}, scope=T1),
            OutOfScope,
            "agent",
            "agent: your reports are limited to team T1; 'dee' is not in it",
        ),
        # the scope takes one of the two dimensions: 400, naming by
        (
            lambda: reports.conversion(by=["channel", "offer"], scope=NJ),
            BadInput,
            "by",
            "by: your reports are limited to store NJ-0001, which takes one of the two "
            "dimensions a report can combine",
        ),
        (
            lambda: reports.revenue(by=["store"], filters={"offer": "alert"}, scope=T2),
            BadInput,
            "by",
            "team T2 (its agents)",
        ),
        (
            lambda: reports.agents(filters={"channel": "store"}, scope=NJ),
            BadInput,
            "by",
            "asked: agent, channel",
        ),
        (
            lambda: reports.funnel(by=["channel"], scope=ReportScope(store_id="S", team_id="T")),
            BadInput,
            "by",
            "which takes both of the two dimensions",
        ),
        # the lift cannot be cut by store or team: 403, saying why
        (
            lambda: reports.lift(scope=T1),
            OutOfScope,
            None,
            "lift: the model is compared with the control group for the whole operator only",
        ),
    ]
    for call, kind, field, words in cases:
        with pytest.raises(kind) as refused:
            call()
        error: Any = refused.value
        assert (error.status, error.field) == (403 if kind is OutOfScope else 400, field)
        assert words in error.message, error.message
    # Unscoped, the same two dimensions are fine.
    assert reports.conversion(since=DAY1, until=DAY2, by=["channel", "offer"]).rows


def test_splits_leave_room_for_the_scope() -> None:
    assert splits() == ("agent", "store", "channel", "offer", "campaign", "segment")
    assert splits(NJ) == splits(T1) == splits()
    assert splits(ReportScope(store_id="S", team_id="T")) == ("agent", "store")


def test_sales_lists_keep_to_the_scope(db: Database, clock: FixedClock, teams: Scenario) -> None:
    sales = SalesService(db, clock)
    assert sorted(s.sold_by for s in sales.subscriptions(None, None, None, NJ)) == ["ana", "ana"]
    assert [s.sold_by for s in sales.subscriptions("failed", None, None, T2)] == ["dee"]
    assert [s.sold_by for s in sales.subscriptions(None, None, None, T1)] == ["eve"]
    assert len(sales.subscriptions(None, None, None)) == 6
    assert [(f.flag, f.sold_by) for f in sales.audit_flags(None, NJ)] == [("arrears", "ana")]
    assert sales.audit_flags(None, WX) == []
    clock.advance(days=2)
    # Delivered sales at least a day old: ana's two, bo's weather, eve's alert.
    assert (sales.retention(1, NJ).sales, sales.retention(1, NJ).retained) == (2, 2)
    assert sales.retention(1, T2).sales == 0  # dee's one sale failed
    assert sales.retention(1).sales == 4


def test_scoped_report_and_sales_endpoints(
    settings: Settings, db: Database, clock: FixedClock, teams: Scenario
) -> None:
    with api(settings, db, clock, None) as a:
        now = clock.now()
        for name, store, team in (("nj", "NJ-0001", None), ("t1", None, "T1")):
            a.extra_keys[name] = create_key(
                db, role="supervisor", user_id=f"sup-{name}", store_id=store, team_id=team, now=now
            )

        def get(who: str, path: str) -> Any:
            key = a.extra_keys.get(who) or a.keys[who]
            return a.client.get(path, headers={"Authorization": f"Bearer {key}"})

        period = "since=2026-11-19&until=2026-11-20"
        totals = {
            who: get(who, f"/v1/reports/conversion?{period}").json()["total"]
            for who in ("nj", "t1", "supervisor", "admin")
        }
        assert {who: (t["presented"], t["accepted"]) for who, t in totals.items()} == {
            "nj": (4, 2),
            "t1": (2, 1),
            "supervisor": (12, 6),
            "admin": (12, 6),
        }
        nj = get("nj", f"/v1/reports/revenue?by=agent&{period}").json()
        assert (nj["scope"], [r["agent"] for r in nj["rows"]]) == ({"store": "NJ-0001"}, ["ana"])
        t1 = get("t1", f"/v1/reports/agents?{period}").json()
        assert [r["agent"] for r in t1["rows"]] == ["eve", "cy"]
        funnel = get("t1", f"/v1/reports/funnel?by=agent&{period}").json()
        assert [(r["agent"], r["reached"]) for r in funnel["rows"]] == [("cy", 2), ("eve", 1)]
        failures = get("nj", f"/v1/reports/provisioning-failures?{period}").json()
        assert failures["rows"] == []
        csv = get("t1", f"/v1/reports/conversion?by=agent&{period}&format=csv")
        assert csv.text.splitlines()[1:] == ["cy,1,0,0.0,0.0", "eve,1,1,1.0,1.0"]

        # Out of scope: 403 naming the filter; no room left for the split: 400 naming by.
        for who, path, status, field, words in (
            ("nj", "/v1/reports/conversion?store=WX-0003", 403, "store", "store NJ-0001"),
            ("t1", "/v1/reports/revenue?agent=dee", 403, "agent", "team T1"),
            ("nj", "/v1/reports/conversion?by=channel&by=offer", 400, "by", "store NJ-0001"),
            ("t1", "/v1/reports/conversion?by=store&by=offer", 400, "by", "team T1"),
            ("t1", "/v1/reports/lift?by=channel", 403, None, "whole operator only"),
        ):
            refused = get(who, path)
            assert refused.status_code == status, (path, refused.text)
            body = refused.json()
            assert body.get("field") == field and words in body["detail"], body
        for who in ("supervisor", "admin"):
            assert get(who, "/v1/reports/lift?by=channel").status_code == 200
            assert get(who, "/v1/reports/conversion?by=channel&by=offer").status_code == 200

        # The sales lists follow the same rule.
        listed = get("nj", "/v1/subscriptions").json()
        assert {s["sold_by"] for s in listed} == {"ana"} and len(listed) == 2
        assert [s["sold_by"] for s in get("t1", "/v1/subscriptions").json()] == ["eve"]
        assert len(get("admin", "/v1/subscriptions").json()) == 6
        assert [f["flag"] for f in get("nj", "/v1/audit/flags").json()] == ["arrears"]
        assert get("t1", "/v1/audit/flags").json() == []
        clock.advance(days=2)
        assert get("t1", "/v1/sales/retention?days=1").json()["sales"] == 1
        assert get("admin", "/v1/sales/retention?days=1").json()["sales"] == 4


def test_a_new_sale_moves_its_own_scopes_figures_only(
    db: Database, clock: FixedClock, teams: Scenario
) -> None:
    """Rollups and the sales ledger agree within a scope: a new T2 sale moves T2's figures
    and nobody else's."""
    reports = ReportService(db, clock)
    before = {s: _figures(reports, s)["conversion"] for s in (NJ, T1, T2)}
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    clock.advance(hours=1)
    answer = DecisionService(db, reader, clock).decide(
        DEE, DecisionRequest(msisdn="13900000003", channel="inbound")
    )
    offer = answer.offers[0]
    recorded = OutcomeService(db, reader, clock).record(
        DEE, answer.decision_id, OutcomeRequest(offer_id=offer.offer_id, outcome="accepted")
    )
    assert recorded.status_code == 201
    after = {s: _figures(reports, s)["conversion"] for s in (NJ, T1, T2)}
    assert after[NJ] == before[NJ] and after[T1] == before[T1]
    presented, accepted, revenue = before[T2]
    assert after[T2][:2] == (presented + 1, accepted + 1) and after[T2][2] > revenue
