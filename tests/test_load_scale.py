"""Loads at production scale: Parquet beside CSV, the reject threshold, duplicates found by the
database instead of in memory, the grace period of a retired version, and a load killed with
SIGKILL half-way, which must leave the service on the previous version and nothing visible."""

from __future__ import annotations

import copy
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import (
    STANDARD_AFFINITY,
    STANDARD_CONTACTS,
    STANDARD_PROFILES,
    TEST_CATALOG,
    write_extract,
)
from helpers import row_count
from sqlalchemy import select

from nextbest import extract_files, loader
from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.keys import Actor
from nextbest.loader import (
    PROFILE_COLUMNS,
    LoadError,
    drop_expired_versions,
    load_extract,
)
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Affinity, DataVersion, ProfileRow, WarehouseContact
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest

ROOT = Path(__file__).resolve().parents[1]
CLERK = Actor(key_id=1, user_id="clerk-ana", role="clerk", store_id="NJ-0001")
WAREHOUSE = (ProfileRow, Affinity, WarehouseContact)


def _bench_module() -> ModuleType:
    """scripts/bench/load.py: its fast extract generator makes the large extract below."""
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "scripts/bench/load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reader(db: Database) -> WarehouseReader:
    return WarehouseReader(db, cache_size=100, version_check_seconds=0.0)


def _versions(db: Database) -> dict[int, str]:
    with db.read() as session:
        return {v: s for v, s in session.execute(select(DataVersion.id, DataVersion.status))}


def _row_versions(db: Database) -> set[int]:
    found: set[int] = set()
    with db.read() as session:
        for model in WAREHOUSE:
            found.update(session.scalars(select(model.version_id).distinct()))
    return found


def _decide(db: Database, clock: FixedClock, msisdn: str) -> tuple[int | None, bool]:
    service = DecisionService(db, _reader(db), clock)
    response = service.decide(CLERK, DecisionRequest(msisdn=msisdn, channel="store"))
    return response.data_version, response.known


# --- Parquet ----------------------------------------------------------------------------------


def _write_parquet(directory: Path) -> Path:
    """The standard extract as typed Parquet: lists as list columns, numbers as doubles,
    contact times as timestamps, and the subscriber number as an integer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "catalog.toml").write_bytes(TEST_CATALOG.read_bytes())
    profiles: dict[str, list[Any]] = {c: [] for c in PROFILE_COLUMNS}
    for row in STANDARD_PROFILES:
        for column, value in zip(PROFILE_COLUMNS, row, strict=True):
            profiles[column].append(value)
    lists = ("handset", "subscriptions", "lifecycle", "channel_pref", "flags")
    table = {
        c: pa.array([[p for p in v.split(";") if p] for v in values], pa.list_(pa.string()))
        if c in lists
        else pa.array([float(v) for v in values])
        if c == "arpu"
        else pa.array([int(v) for v in values])
        if c == "msisdn"
        else pa.array(values)
        for c, values in profiles.items()
    }
    pq.write_table(pa.table(table), directory / "profiles.parquet")
    affinity = list(zip(*STANDARD_AFFINITY, strict=True))
    pq.write_table(
        pa.table(
            {
                "msisdn": pa.array(affinity[0]),
                "offer_id": pa.array(affinity[1]),
                "score": pa.array([float(s) for s in affinity[2]]),
                "model": pa.array(["tree"] * len(affinity[0])),  # an extra column
            }
        ),
        directory / "affinity.parquet",
    )
    from datetime import datetime

    contacts = list(zip(*STANDARD_CONTACTS, strict=True))
    pq.write_table(
        pa.table(
            {
                "msisdn": pa.array(contacts[0]),
                "channel": pa.array(contacts[1]),
                "offer_id": pa.array([v or None for v in contacts[2]], pa.string()),
                "kind": pa.array(contacts[3]),
                "at": pa.array(
                    [datetime.fromisoformat(v) for v in contacts[4]],
                    pa.timestamp("us", tz="Asia/Shanghai"),
                ),
            }
        ),
        directory / "contacts.parquet",
    )
    return directory


def test_parquet_extract_loads_like_the_csv_one(
    db: Database, clock: FixedClock, standard_extract: Path, tmp_path: Path
) -> None:
    from_csv = load_extract(db, standard_extract, clock)
    reader = _reader(db)
    expected = {m: reader.customer(from_csv.version_id, m) for m in ("13900000001", "13900000003")}

    from_parquet = load_extract(db, _write_parquet(tmp_path / "pq"), clock)

    assert from_parquet.files == ["profiles.parquet", "affinity.parquet", "contacts.parquet"]
    assert (from_parquet.profiles, from_parquet.affinities, from_parquet.contacts) == (4, 6, 1)
    assert from_parquet.ignored_columns == ["affinity.parquet:model"]
    for msisdn, data in expected.items():
        assert reader.customer(from_parquet.version_id, msisdn) == data


def test_a_parquet_file_is_preferred_to_the_csv_of_the_same_name(
    sqlite_settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY)
    parquet = _write_parquet(tmp_path / "pq")
    (extract / "affinity.parquet").write_bytes((parquet / "affinity.parquet").read_bytes())
    (extract / "affinity.csv").write_text("not even a header of the right columns\n")
    db = Database(sqlite_settings)
    db.create_schema()
    try:
        report = load_extract(db, extract, clock)
    finally:
        db.dispose()
    assert report.files == ["profiles.csv", "affinity.parquet", "contacts.csv"]
    assert report.affinities == len(STANDARD_AFFINITY)


def test_a_bad_parquet_row_is_named_by_its_row_number(
    sqlite_settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, [])
    (extract / "affinity.csv").unlink()
    pq.write_table(
        pa.table(
            {
                "msisdn": ["13900000001", "13900000001"],
                "offer_id": ["crbt_open", "mms_pkg"],
                "score": [0.5, 1.7],
            }
        ),
        extract / "affinity.parquet",
    )
    db = Database(sqlite_settings)
    db.create_schema()
    try:
        with pytest.raises(LoadError) as refused:
            load_extract(db, extract, clock)
    finally:
        db.dispose()
    assert (
        str(refused.value) == "affinity.parquet:2: column score: must be within [0, 1], got '1.7'"
    )


# --- rejects ----------------------------------------------------------------------------------


def _with_bad_rows(tmp_path: Path, bad: int) -> Path:
    profiles = copy.deepcopy(STANDARD_PROFILES)
    for i in range(bad):
        # An unknown segment: rejected, and so is any affinity row of that subscriber.
        profiles.append([f"1390200{i:04d}", "rich_kid", "gotone", "", "", "1", "", "", "", "", ""])
    affinity = [*STANDARD_AFFINITY, ["13902000000", "crbt_open", "0.5"]] if bad else []
    return write_extract(tmp_path / f"bad{bad}", profiles, affinity, STANDARD_CONTACTS)


def test_rejects_up_to_the_threshold_are_skipped_and_listed(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    sink = tmp_path / "rejects.txt"
    with sink.open("w") as rejects_to:
        report = load_extract(
            db, _with_bad_rows(tmp_path, 2), clock, max_rejects=3, rejects_to=rejects_to
        )

    # Two profiles, and the affinity of one of them (its subscriber was not loaded).
    assert report.rejected == 3
    assert report.rejects == [
        "profiles.csv:6: column segment: unknown segment 'rich_kid' (not in the catalog)",
        "profiles.csv:7: column segment: unknown segment 'rich_kid' (not in the catalog)",
        "affinity.csv:8: column msisdn: 13902000000 is not in profiles.csv",
    ]
    assert sink.read_text().splitlines() == report.rejects
    assert (report.profiles, report.affinities, report.contacts) == (4, 6, 1)
    assert _versions(db) == {report.version_id: "active"}
    assert _decide(db, clock, "13902000000") == (report.version_id, False)


def test_one_reject_over_the_threshold_refuses_the_whole_load(
    db: Database, clock: FixedClock, standard_extract: Path, tmp_path: Path
) -> None:
    a = load_extract(db, standard_extract, clock)
    with pytest.raises(LoadError) as refused:
        load_extract(db, _with_bad_rows(tmp_path, 3), clock, max_rejects=3)
    assert [p.line for p in refused.value.problems] == [6, 7, 8, 8]
    assert _versions(db)[a.version_id] == "active"
    assert _decide(db, clock, "13900000001") == (a.version_id, True)


def test_a_file_that_cannot_be_read_refuses_the_load_whatever_the_threshold(
    sqlite_settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY)
    (extract / "contacts.csv").write_bytes(b"msisdn,channel,offer_id,kind,at\n\xff\xfe\n")
    db = Database(sqlite_settings)
    db.create_schema()
    try:
        with pytest.raises(LoadError, match=r"contacts\.csv:0: not UTF-8"):
            load_extract(db, extract, clock, max_rejects=1000)
    finally:
        db.dispose()


def test_duplicates_are_found_across_write_batches(
    db: Database, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny write batches: each duplicate meets its first occurrence in the database, not in
    # the batch (nothing holds every key in memory).
    monkeypatch.setattr(loader, "WRITE_ROWS", dict.fromkeys(loader.WRITE_ROWS, 2))
    monkeypatch.setattr(extract_files, "BATCH_ROWS", 2)
    profiles = [*STANDARD_PROFILES, STANDARD_PROFILES[0]]
    affinity = [*STANDARD_AFFINITY, STANDARD_AFFINITY[1]]
    extract = write_extract(tmp_path / "dup", profiles, affinity, STANDARD_CONTACTS)

    report = load_extract(db, extract, clock, max_rejects=2)

    assert report.rejects == [
        "profiles.csv:6: column msisdn: duplicate subscriber 13900000001",
        "affinity.csv:8: column offer_id: duplicate score for 13900000001 and mms_pkg",
    ]
    assert (report.profiles, report.affinities) == (4, 6)
    assert _reader(db).customer(report.version_id, "13900000001").affinities["mms_pkg"] == 0.30


# --- grace period -----------------------------------------------------------------------------


def test_a_retired_version_stays_readable_for_the_grace_period_then_is_dropped(
    db: Database,
    clock: FixedClock,
    standard_extract: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loader, "DELETE_ROWS", dict.fromkeys((True, False), 2))  # many chunks
    a = load_extract(db, standard_extract, clock, grace_seconds=300)
    clock.advance(hours=1)
    b = load_extract(db, standard_extract, clock, grace_seconds=300)

    assert b.retired == a.version_id
    assert _versions(db) == {a.version_id: "retired", b.version_id: "active"}
    assert _row_versions(db) == {a.version_id, b.version_id}  # A still readable...
    assert _decide(db, clock, "13900000001") == (b.version_id, True)  # ...but not served

    assert drop_expired_versions(db, clock.now() + timedelta(seconds=299), 300) == []
    assert _row_versions(db) == {a.version_id, b.version_id}
    assert drop_expired_versions(db, clock.now() + timedelta(seconds=300), 300) == [a.version_id]
    assert _row_versions(db) == {b.version_id}
    assert [row_count(db, m) for m in WAREHOUSE] == [4, 6, 1]
    assert _versions(db) == {a.version_id: "retired", b.version_id: "active"}


def test_the_next_load_drops_versions_whose_grace_period_is_over(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    a = load_extract(db, standard_extract, clock, grace_seconds=300)
    b = load_extract(db, standard_extract, clock, grace_seconds=300)
    clock.advance(minutes=6)
    c = load_extract(db, standard_extract, clock, grace_seconds=300)

    assert c.dropped == [a.version_id]
    assert c.retired == b.version_id
    assert _row_versions(db) == {b.version_id, c.version_id}


# --- SIGKILL half-way -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_extract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # ~40k profiles x 10 scores: several seconds of loading, so a kill lands half-way.
    out = tmp_path_factory.mktemp("large") / "extract"
    _bench_module().write_extract(out, size=40_000, affinities=10, catalog=TEST_CATALOG)
    yield out


@pytest.mark.slow
def test_a_load_killed_half_way_leaves_the_previous_version_and_is_cleaned_up_next(
    settings: Settings,
    clock: FixedClock,
    standard_extract: Path,
    large_extract: Path,
    tmp_path: Path,
) -> None:
    db = Database(settings)
    db.create_schema()
    try:
        a = load_extract(db, standard_extract, clock)
        env = {
            **os.environ,
            "NEXTBEST_DATABASE_URL": settings.database_url,
            "NEXTBEST_VERSION_GRACE_SECONDS": "0",
        }
        seen = []
        with subprocess.Popen(
            [sys.executable, "-m", "nextbest.cli", "load", str(large_extract)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:  # progress lines: the file being loaded
                seen.append(line)
                if line.strip().startswith("affinity.csv"):
                    break
            # The profiles are written and the affinities are being written: kill it there.
            time.sleep(0.5)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "".join(seen)

        versions = _versions(db)
        (killed,) = [v for v, status in versions.items() if status == "loading"]
        assert versions[a.version_id] == "active"
        assert killed in _row_versions(db)  # rows were written...
        # ...and none is served: a subscriber only the killed load has is unknown.
        assert _decide(db, clock, "13900000000") == (a.version_id, False)
        assert _decide(db, clock, "13900000001") == (a.version_id, True)
        assert _reader(db).active().id == a.version_id

        c = load_extract(db, standard_extract, clock)

        assert _versions(db) == {a.version_id: "retired", c.version_id: "active"}
        assert _row_versions(db) == {c.version_id}
        assert [row_count(db, m) for m in WAREHOUSE] == [4, 6, 1]
    finally:
        db.dispose()


# --- the command ------------------------------------------------------------------------------


def test_the_command_shows_progress_and_lists_what_it_skipped(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NEXTBEST_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NEXTBEST_VERSION_GRACE_SECONDS": "0",
        "NEXTBEST_LOAD_MAX_REJECTS": "5",
    }
    run = [sys.executable, "-m", "nextbest.cli", "load"]
    bad = _with_bad_rows(tmp_path, 2)
    skipped = subprocess.run(
        [*run, str(bad), "--rejects-file", str(tmp_path / "r.txt")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "profiles.csv: 4 rows in" in skipped.stderr  # the progress line of a finished file
    assert "rows/s), 2 rejected" in skipped.stderr
    assert "skipped 3 malformed row(s) (at most 5 allowed):" in skipped.stdout
    assert "  profiles.csv:6: column segment: unknown segment 'rich_kid'" in skipped.stdout
    assert len((tmp_path / "r.txt").read_text().splitlines()) == 3

    refused = subprocess.run(
        [*run, str(bad), "--max-rejects", "2"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "refused, nothing of it is served" in refused.stderr
    assert "profiles.csv:6: column segment:" in refused.stderr
