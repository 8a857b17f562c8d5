"""What the decision path's plumbing promises: cached warehouse rows out of the garbage
collector's sight, start-up objects frozen, and the session-free reads on connections of their
own, kept open, leaving no transaction open, refusing writes, and never reusing a broken one."""

from __future__ import annotations

import gc
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
import pytest
from helpers import api
from litestar.testing import TestClient
from sqlalchemy import text

from nextbest.api.app import create_app
from nextbest.api.asgi import app_from_env
from nextbest.clock import FixedClock
from nextbest.decisions import new_decision_id
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


# What each driver raises on a closed connection.
_BROKEN = (sqlite3.ProgrammingError, psycopg.OperationalError, psycopg.InterfaceError)


def _in_transaction(connection: object) -> bool:
    info = getattr(connection, "info", None)
    if info is not None and hasattr(info, "transaction_status"):  # psycopg
        return bool(info.transaction_status.name != "IDLE")
    return bool(connection.in_transaction)  # type: ignore[attr-defined]


def test_raw_reads_reuse_a_connection_and_leave_no_transaction(db: Database) -> None:
    with db.raw_read() as reads:
        assert reads.fetch("SELECT 1", ()) == [(1,)]
        first = reads.connection
        assert not _in_transaction(first)
    with db.raw_read() as reads:
        assert reads.connection is first  # kept open: a checkout is a pop, not a connect
        assert reads.fetch("SELECT 2", ()) == [(2,)]
        assert not _in_transaction(first)
    # Not the ORM's connections: its sessions keep their transactions.
    with db.read() as session:
        driver = session.connection().connection.driver_connection
        assert driver is not first
        session.execute(text("SELECT 1"))
        assert _in_transaction(driver)


def test_raw_reads_cannot_write(db: Database) -> None:
    with (
        pytest.raises(Exception, match=r"read-only|readonly|attempt to write"),
        db.raw_read() as reads,
    ):
        reads.fetch("DELETE FROM api_keys", ())
    # A caller's own error gives the connection back, fine for the next read.
    with db.raw_read() as reads:
        assert reads.fetch("SELECT 3", ()) == [(3,)]


def test_a_connection_that_broke_mid_read_is_not_reused(db: Database) -> None:
    with db.raw_read() as reads:
        broken = reads.connection
    broken.close()  # as a server restart or a cut network would leave it
    with pytest.raises(_BROKEN), db.raw_read() as reads:
        assert reads.connection is broken
        reads.fetch("SELECT 1", ())
    with db.raw_read() as reads:
        assert reads.connection is not broken
        assert reads.fetch("SELECT 4", ()) == [(4,)]


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


def test_decision_ids_are_ordered_and_a_forked_child_draws_its_own_random_part() -> None:
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    first, second = new_decision_id(now), new_decision_id(now)
    assert len(first) == 32 and first < second  # one instant: the sequence keeps the order
    assert first[:12] == f"{int(now.timestamp() * 1000):012x}"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out at once (no pytest teardown here)
        os.write(write_end, new_decision_id(now).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    parent = new_decision_id(now)
    # The buffered random bytes were not inherited: the two ids differ in their random part.
    assert len(child) == 32 and child[16:] != parent[16:]
