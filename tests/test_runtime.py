"""What the decision path's plumbing promises: cached warehouse rows out of the garbage
collector's sight, start-up objects frozen, and PostgreSQL's session-free reads leaving no
transaction open and no autocommit behind for the ORM sessions that share the pool."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from helpers import api
from litestar.testing import TestClient
from sqlalchemy import text

from nextbest.api.app import create_app
from nextbest.api.asgi import app_from_env
from nextbest.clock import FixedClock
from nextbest.records import ContactEvent, Profile
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.warehouse import CustomerData


def test_cached_customer_rows_are_not_tracked_by_the_collector() -> None:
    profile = Profile(msisdn="13800000001", segment="s", brand="b", lifecycle={"crbt": "trial"})
    contact = ContactEvent(channel="store", kind="offer_made", at=datetime.now(UTC))
    data = CustomerData(profile, {"crbt_open": 0.4}, (contact,))
    assert not gc.is_tracked(profile)
    assert not gc.is_tracked(contact)
    assert not gc.is_tracked(data)


def test_the_server_freezes_what_start_up_built(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_DATABASE_URL", sqlite_settings.database_url)
    gc.unfreeze()
    try:
        with TestClient(app_from_env()) as client:  # the app `nextbest serve` runs
            assert gc.get_freeze_count() > 1000  # modules, metadata, routes
            assert client.get("/healthz").status_code == 200
        gc.unfreeze()
        with TestClient(create_app(sqlite_settings)):  # an app a test builds: left alone
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_raw_reads_leave_no_transaction_and_sessions_keep_theirs(db: Database) -> None:
    db.reader.dispose()  # an empty pool: the Session below gets the raw read's connection
    with db.raw_read() as reads:
        assert reads.fetch("SELECT 1", ()) == [(1,)]
        raw_driver = reads.connection.driver_connection
        if not db.is_sqlite:
            assert raw_driver.autocommit is True
            assert raw_driver.info.transaction_status.name == "IDLE"  # no ROLLBACK needed
    if db.is_sqlite:
        return
    # The same pooled connection, now in a Session: statements run in one transaction again.
    with db.read() as session:
        driver = session.connection().connection.driver_connection
        assert driver is raw_driver
        assert driver.autocommit is False
        session.execute(text("SELECT 1"))
        assert driver.info.transaction_status.name == "INTRANS"


@pytest.mark.parametrize("reads", ["true", "false"])
def test_decisions_and_outcomes_with_reads_on_the_loop_or_in_threads(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path, reads: str
) -> None:
    chosen = msgspec.structs.replace(settings, reads_on_loop=reads)
    with api(chosen, db, clock, standard_extract) as env:
        decision = env.decide()
        offer = decision["offers"][0]["offer_id"]
        assert (
            env.outcome(decision["decision_id"], offer, "declined", reason="price").status_code
            == 201
        )
        again = env.decide()  # the decline is honoured at once
        assert offer not in [o["offer_id"] for o in again["offers"]]
        refused = env.client.post(
            "/v1/decisions",
            json={"msisdn": "13900000001", "channel": "store"},
            headers={"Authorization": "Bearer nb_clerk_unknown"},
        )
        assert refused.status_code == 401
