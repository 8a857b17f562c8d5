"""Report rollups: kept in the decision's and the outcome's own transaction, equal to a recount
from the ledgers (`nextbest rollup --rebuild`), on SQLite and PostgreSQL.

``play_scenario`` is the hand-worked history the report tests check their numbers against.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import msgspec
import pytest
from conftest import STANDARD_AFFINITY, STANDARD_CONTACTS, STANDARD_PROFILES, write_extract
from sqlalchemy import select, update

from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.errors import Unprocessable
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService
from nextbest.rollups import (
    PAIR_GRAINS,
    grain_for,
    read_rollups,
    rebuild,
    report_day,
    snapshot,
    utc_bounds,
)
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.report_models import ReportRollup
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

ANA = Actor(key_id=1, user_id="ana", role="clerk", store_id="NJ-0001")
BO = Actor(key_id=2, user_id="bo", role="clerk", store_id="WX-0003")
CY = Actor(key_id=3, user_id="cy", role="agent", store_id=None)
DAY1 = date(2026, 11, 19)
DAY2 = date(2026, 11, 20)


class Scenario(msgspec.Struct, kw_only=True):
    decisions: dict[str, str]  # D1.. -> decision id
    sales: dict[str, int]  # "D1:crbt_open" -> subscription id


def play_scenario(db: Database, clock: FixedClock, tmp_path: Path) -> Scenario:
    """Six contacts over two report days (China Standard Time), worked by hand:

    day 1 (2026-11-19, 10:00 CST)
      D1 ana store 13900000001: crbt_open presented then accepted (5 yuan), club_vip
         declined, mms_pkg considering then accepted (5 yuan), a second click on crbt_open
      D2 bo  store 13900000003: crbt_box accepted (1 yuan), mms_pkg declined twice,
         weather no_answer
      D3 cy  inbound 13900000004: alert no_answer
      D4 ana store 13900000002 (do not disturb: only the service-critical alert): callback
    15 hours later, day 2 (2026-11-20, 01:00 CST)
      D2's weather accepted (2 yuan): counted on D2's day, 1
      D5 cy  outbound 13900000001: sms_100 declined
      D6 bo  store 13900000003: no outcome

    Offers presented 8 (ana 4, bo 3, cy 1), accepted 4 (ana 2, bo 2), revenue 13 yuan;
    contacts 6, with an offer presented 4 (D1 D2 D4 D5), with an acceptance 2 (D1 D2).
    """
    extract = write_extract(
        tmp_path / "extract", STANDARD_PROFILES, STANDARD_AFFINITY, STANDARD_CONTACTS
    )
    load_extract(db, extract, clock)
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    decisions = DecisionService(db, reader, clock)
    outcomes = OutcomeService(db, reader, clock)
    ids: dict[str, str] = {}
    sales: dict[str, int] = {}

    def decide(name: str, actor: Actor, msisdn: str, channel: str, offers: list[str]) -> None:
        answer = decisions.decide(actor, DecisionRequest(msisdn=msisdn, channel=channel))
        assert [o.offer_id for o in answer.offers] == offers
        ids[name] = answer.decision_id

    def say(name: str, actor: Actor, offer: str, outcome: str, status: int = 201) -> None:
        callback_at = clock.now() + timedelta(days=1) if outcome == "callback" else None
        recorded = outcomes.record(
            actor,
            ids[name],
            OutcomeRequest(offer_id=offer, outcome=outcome, callback_at=callback_at),  # type: ignore[arg-type]
        )
        assert recorded.status_code == status
        if recorded.response.subscription is not None and status == 201:
            sales[f"{name}:{offer}"] = recorded.response.subscription.id

    decide("D1", ANA, "13900000001", "store", ["crbt_open", "club_vip", "mms_pkg"])
    say("D1", ANA, "crbt_open", "presented")
    say("D1", ANA, "crbt_open", "accepted")
    say("D1", ANA, "club_vip", "declined")
    say("D1", ANA, "mms_pkg", "considering")
    say("D1", ANA, "mms_pkg", "accepted")
    say("D1", ANA, "crbt_open", "accepted", status=200)  # the second click writes nothing
    decide("D2", BO, "13900000003", "store", ["crbt_box", "mms_pkg", "weather"])
    say("D2", BO, "crbt_box", "accepted")
    say("D2", BO, "mms_pkg", "declined")
    say("D2", BO, "mms_pkg", "declined")
    say("D2", BO, "weather", "no_answer")
    decide("D3", CY, "13900000004", "inbound", ["alert"])
    say("D3", CY, "alert", "no_answer")
    decide("D4", ANA, "13900000002", "store", ["alert"])
    say("D4", ANA, "alert", "callback")
    # A refused outcome is rolled back with everything it would have counted.
    with pytest.raises(Unprocessable):
        say("D4", ANA, "crbt_open", "accepted")

    clock.advance(hours=15)
    assert report_day(clock.now()) == DAY2
    say("D2", BO, "weather", "accepted")
    decide("D5", CY, "13900000001", "outbound", ["sms_100"])
    say("D5", CY, "sms_100", "declined")
    decide("D6", BO, "13900000003", "store", ["alert"])
    return Scenario(decisions=ids, sales=sales)


def test_rollups_equal_a_recount_from_the_ledgers(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    play_scenario(db, clock, tmp_path)
    with db.read() as session:
        incremental = snapshot(session)
    # Every grain holds every contact: the contact counts agree whichever pair is read.
    contact_totals = {
        grain: sum(m[0] for k, m in incremental.items() if k[0] == grain)
        for grain in ("agent+store", "channel+segment", "store+campaign")
    }
    assert contact_totals == {"agent+store": 6, "channel+segment": 6, "store+campaign": 6}
    offer_totals = {
        grain: tuple(sum(m[i] for k, m in incremental.items() if k[0] == grain) for i in (3, 4, 5))
        for grain in ("+".join(g) for g in PAIR_GRAINS)
    }
    assert set(offer_totals.values()) == {(8, 4, 1300)}

    report = rebuild(db, check=True)
    assert report.differences == 0
    with db.read() as session:
        assert snapshot(session) == incremental  # check wrote nothing
    report = rebuild(db)
    assert report.rows > 0
    with db.read() as session:
        assert snapshot(session) == incremental


def test_rebuild_repairs_rollups_that_drifted(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    play_scenario(db, clock, tmp_path)
    with db.read() as session:
        right = snapshot(session)
    with db.write() as session:
        session.execute(
            update(ReportRollup)
            .where(ReportRollup.grain == "agent+offer")
            .values(accepted=ReportRollup.accepted + 7)
        )
        session.execute(ReportRollup.__table__.delete().where(ReportRollup.grain == "agent+store"))
    assert (rebuild(db, check=True).differences or 0) > 0
    rebuild(db)
    with db.read() as session:
        assert snapshot(session) == right


def test_counts_are_attributed_to_the_decisions_day(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    play_scenario(db, clock, tmp_path)
    with db.read() as session:
        by_day = {
            row.day: row.measures
            for row in read_rollups(session, dims=[], since=DAY1, until=DAY2, by_day=True)
        }
    # D2's weather was accepted on day 2 and counts on day 1, D2's day.
    assert (by_day[DAY1].decisions, by_day[DAY1].presented, by_day[DAY1].accepted) == (4, 7, 4)
    assert (by_day[DAY2].decisions, by_day[DAY2].presented, by_day[DAY2].accepted) == (2, 1, 0)
    assert by_day[DAY1].revenue_fen == 1300


def test_postgres_spreads_hot_rows_over_shards_and_reads_sum_them(
    settings: Settings, db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    play_scenario(db, clock, tmp_path)
    with db.read() as session:
        shards = set(session.scalars(select(ReportRollup.shard)))
    if settings.is_sqlite:
        assert shards == {0}
    else:
        assert len(shards) > 1  # six decisions, eight shards: almost surely several


def test_grain_for_picks_the_pair_and_refuses_three() -> None:
    assert grain_for(["offer", "agent"]) == ("agent+offer", ("agent", "offer"))
    assert grain_for(["offer"]) == ("channel+offer", ("channel", "offer"))
    assert grain_for([]) == ("channel+campaign", ("channel", "campaign"))
    with pytest.raises(ValueError, match="at most two"):
        grain_for(["agent", "offer", "store"])
    with pytest.raises(ValueError, match="unknown"):
        grain_for(["weather"])


def test_report_days_are_china_standard_time() -> None:
    since, until = utc_bounds(DAY1, DAY1)
    assert since.isoformat() == "2026-11-18T16:00:00+00:00"
    assert until.isoformat() == "2026-11-19T16:00:00+00:00"
    assert report_day(since) == DAY1
    assert report_day(until - timedelta(microseconds=1)) == DAY1
    assert report_day(until) == DAY2


def test_an_old_database_gets_the_new_decision_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    db = Database(settings)
    db.create_schema()
    db.dispose()
    # As before control groups (and before migrations): no experiment and arm columns, and
    # no revision stamped (nextbest/migrations adopts such a database with create_all).
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE decisions DROP COLUMN arm")
        conn.execute("ALTER TABLE decisions DROP COLUMN experiment")
        conn.execute("DROP TABLE IF EXISTS alembic_version")
    db = Database(settings)
    try:
        db.create_schema()
        with db.read() as session:
            assert session.scalars(select(Decision.arm)).all() == []
    finally:
        db.dispose()


def test_cli_rollup_check_and_rebuild(tmp_path: Path, clock: FixedClock) -> None:
    path = tmp_path / "cli.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    db = Database(settings)
    db.create_schema()
    play_scenario(db, clock, tmp_path)
    with db.write() as session:
        session.execute(ReportRollup.__table__.delete())
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTBEST_")}
    env["NEXTBEST_DATABASE_URL"] = f"sqlite:///{path}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nextbest.cli", "rollup", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    checked = run("--check")
    assert checked.returncode == 1, checked.stderr
    assert "differ from the ledgers; run --rebuild" in checked.stdout
    rebuilt = run("--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt" in rebuilt.stdout
    again = run("--check")
    assert again.returncode == 0, again.stdout
    assert "0 of the rollup keys differ" in again.stdout
    assert run().returncode == 2
