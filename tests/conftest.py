"""Shared fixtures: a fixed clock, the small test catalog, extracts, and both backends.

Storage tests take the ``settings`` fixture and run once on a SQLite file and once on a fresh
PostgreSQL database. Without a PostgreSQL server the second run is skipped with the reason,
except under CI (CI=true), where it fails: CI must exercise both.
"""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nextbest.catalog import Catalog, load_catalog
from nextbest.clock import FixedClock
from nextbest.loader import AFFINITY_COLUMNS, CONTACT_COLUMNS, PROFILE_COLUMNS
from nextbest.records import Profile
from nextbest.settings import Settings
from nextbest.storage.db import Database

DATA = Path(__file__).parent / "data"
TEST_CATALOG = DATA / "catalog.toml"
PG_URL = os.environ.get("NEXTBEST_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
# Thursday 2026-11-19, 10:00 in Nanjing.
NOW = datetime(2026, 11, 19, 2, 0, tzinfo=UTC)


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(TEST_CATALOG)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def profile(**overrides: Any) -> Profile:
    """A GoTone fashion leader with an MMS/data handset and no flags, unless told otherwise."""
    values: dict[str, Any] = {
        "msisdn": "13900000001",
        "segment": "fashionable_high_end",
        "brand": "gotone",
        "region": "Nanjing",
        "store_id": "NJ-0001",
        "arpu": 120.0,
        "handset": ("mms", "data"),
        "subscriptions": (),
        "lifecycle": {"crbt": "potential"},
        "channel_pref": ("store", "outbound"),
        "flags": (),
    }
    values.update(overrides)
    return Profile(**values)


def write_extract(
    directory: Path,
    profiles: Sequence[Sequence[object]] = (),
    affinity: Sequence[Sequence[object]] = (),
    contacts: Sequence[Sequence[object]] = (),
    catalog: Path = TEST_CATALOG,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(catalog, directory / "catalog.toml")
    for name, header, rows in (
        ("profiles.csv", PROFILE_COLUMNS, profiles),
        ("affinity.csv", AFFINITY_COLUMNS, affinity),
        ("contacts.csv", CONTACT_COLUMNS, contacts),
    ):
        with (directory / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return directory


# A small extract every service/API test can load: (msisdn, what it is).
STANDARD_PROFILES = [
    # typical: potential crbt, MMS handset, store first
    [
        "13900000001",
        "fashionable_high_end",
        "gotone",
        "Nanjing",
        "NJ-0001",
        "120.5",
        "mms;data",
        "",
        "crbt:potential",
        "store;outbound",
        "",
    ],
    # do-not-disturb and complaint-flagged
    [
        "13900000002",
        "careful_calculator",
        "mzone",
        "Suzhou",
        "SZ-0002",
        "40",
        "",
        "",
        "crbt:silent",
        "store",
        "dnd;complaint",
    ],
    # silent ring-back tone user, careful calculator, holds sms_50
    [
        "13900000003",
        "careful_calculator",
        "mzone",
        "Wuxi",
        "WX-0003",
        "35",
        "mms",
        "sms_50",
        "crbt:silent",
        "outbound;store",
        "",
    ],
    # tight-fisted, in arrears
    [
        "13900000004",
        "tight_fisted",
        "mzone",
        "Wuxi",
        "WX-0003",
        "12",
        "",
        "",
        "",
        "store",
        "arrears",
    ],
]
STANDARD_AFFINITY = [
    ["13900000001", "crbt_open", "0.62"],
    ["13900000001", "mms_pkg", "0.30"],
    ["13900000001", "club_vip", "0.45"],
    ["13900000001", "sms_100", "0.20"],
    ["13900000003", "crbt_box", "0.55"],
    ["13900000003", "sms_100", "0.40"],
]
STANDARD_CONTACTS: list[list[str]] = [
    # outbound telemarketing 20 days ago reached 13900000003
    ["13900000003", "outbound", "", "contacted", "2026-10-30T10:00:00+08:00"],
]


@pytest.fixture
def standard_extract(tmp_path: Path) -> Path:
    return write_extract(
        tmp_path / "extract", STANDARD_PROFILES, STANDARD_AFFINITY, STANDARD_CONTACTS
    )


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} does not answer: {exc}"


_PG_STATE: dict[str, str | None] = {}


def pg_unavailable() -> str | None:
    if "why" not in _PG_STATE:
        _PG_STATE["why"] = _pg_available()
    return _PG_STATE["why"]


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    why = pg_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {why}")
        pytest.skip(why)
    import psycopg

    name = f"nextbest_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(database_url=f"sqlite:///{tmp_path / 'nextbest.db'}")
    url: str = request.getfixturevalue("pg_database")
    return Settings(database_url=url, db_pool_size=4)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'nextbest.db'}")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    database.create_schema()
    try:
        yield database
    finally:
        database.dispose()
