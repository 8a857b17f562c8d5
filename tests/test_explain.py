"""Every query on the decision path is answered from an index, never a scan of its table:
EXPLAIN QUERY PLAN on SQLite, EXPLAIN with sequential scans priced out on PostgreSQL (on a
test-sized table the planner would rightly prefer a scan, which says nothing about 50 million
rows; with enable_seqscan off it still picks one when no index can serve)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nextbest.clock import FixedClock
from nextbest.keys import _AUTH_SQL
from nextbest.loader import load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import DataVersion
from nextbest.storage.warehouse import (
    _AFFINITY_SQL,
    _CONTACTS_SQL,
    _CUSTOMER_AND_HISTORY_SQL,
    _HISTORY_SQL,
    _PROFILE_SQL,
    _STATUS_SQL,
    ACTIVE_VERSION,
)

MSISDN = "13900000001"
_HISTORY_INDEXES = {
    "outcomes": "outcomes_by_msisdn",
    "subscriptions": "one_live_subscription",
    "dnd_numbers": "dnd_numbers_pkey",
}


def _active_version_sql(db: Database) -> str:
    # The reader's own statement, compiled as it is sent.
    statement = select(DataVersion.id, DataVersion.activated_at).where(ACTIVE_VERSION)
    return str(statement.compile(dialect=db.reader.dialect))


# (what, SQL, parameters, the index that must serve each table it reads: SQLite, PostgreSQL)
def _queries(db: Database, clock: FixedClock, version: int) -> list[tuple[Any, ...]]:
    since: Any = clock.now() - timedelta(days=181)
    if db.is_sqlite:
        since = since.strftime("%Y-%m-%d %H:%M:%S.%f")
    return [
        ("active version", _active_version_sql(db), (), {"data_versions": "one_active_version"}),
        ("version still active", _STATUS_SQL, (version,), {"data_versions": "data_versions_pkey"}),
        ("profile", _PROFILE_SQL, (version, MSISDN), {"profiles": "profiles_pkey"}),
        ("affinities", _AFFINITY_SQL, (version, MSISDN), {"affinities": "affinities_pkey"}),
        (
            "warehouse contacts",
            _CONTACTS_SQL,
            (version, MSISDN),
            {"warehouse_contacts": "warehouse_contacts_by_msisdn"},
        ),
        (
            "a decision's read, customer not cached: warehouse rows and what happened here",
            _CUSTOMER_AND_HISTORY_SQL,
            (*(version, MSISDN) * 3, version, MSISDN, since, MSISDN, MSISDN),
            {
                "profiles": "profiles_pkey",
                "affinities": "affinities_pkey",
                "warehouse_contacts": "warehouse_contacts_by_msisdn",
                "data_versions": "data_versions_pkey",
                **_HISTORY_INDEXES,
            },
        ),
        (
            "a decision's read, customer cached: outcomes, live subscriptions, do-not-call list",
            _HISTORY_SQL,
            (MSISDN, since, MSISDN, MSISDN),
            _HISTORY_INDEXES,
        ),
        ("API key", _AUTH_SQL, ("0" * 64,), {"api_keys": "api_keys_key_hash_key"}),
    ]


# SQLite names primary keys its own way.
_SQLITE_NAMES = {
    "data_versions_pkey": "INTEGER PRIMARY KEY",
    "profiles_pkey": "PRIMARY KEY",
    "affinities_pkey": "PRIMARY KEY",
    "api_keys_key_hash_key": "sqlite_autoindex_api_keys_1",
    "dnd_numbers_pkey": "sqlite_autoindex_dnd_numbers_1",
}


def _sqlite_plan(db: Database, sql: str, params: tuple[Any, ...]) -> list[str]:
    with db.read() as session:
        cursor = session.connection().connection.cursor()
        try:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return [row[3] for row in cursor.fetchall()]
        finally:
            cursor.close()


def _pg_plan(db: Database, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    with db.read() as session:
        cursor = session.connection().connection.cursor()
        try:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql.replace('?', '%s')}", params)
            (plan,) = cursor.fetchone()
        finally:
            cursor.close()
    nodes: list[dict[str, Any]] = []
    pending = [plan[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return nodes


def test_the_decision_path_reads_through_indexes(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    version = load_extract(db, standard_extract, clock).version_id
    failures = []
    for what, sql, params, wanted in _queries(db, clock, version):
        if db.is_sqlite:
            details = _sqlite_plan(db, sql, params)
            for table, index in wanted.items():
                steps = [d for d in details if f" {table} " in f" {d} "]
                name = _SQLITE_NAMES.get(index, index)
                if not steps or any("USING" not in d or name not in d for d in steps):
                    failures.append(f"{what}: {table} read by {steps}, wanted {name}")
        else:
            nodes = _pg_plan(db, sql, params)
            scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
            if scans:
                failures.append(f"{what}: sequential scan of {[n['Relation Name'] for n in scans]}")
            used = {n.get("Index Name") for n in nodes}
            for table, index in wanted.items():
                if index not in used:
                    failures.append(f"{what}: {table} not read by {index} (plan used {used})")
    assert not failures, "\n".join(failures)


def test_a_query_without_an_index_is_caught(sqlite_settings: Settings) -> None:
    # The check above would see a scan: here is what one looks like (one backend is enough).
    db = Database(sqlite_settings)
    db.create_schema()
    try:
        details = _sqlite_plan(db, "SELECT * FROM outcomes WHERE reason = ?", ("x",))
    finally:
        db.dispose()
    assert any(d.startswith("SCAN outcomes") for d in details), details
