"""Loading a warehouse extract: what a good one stores, how a bad one is refused, and that a
refused or superseded load never changes what decisions are served from."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import (
    STANDARD_AFFINITY,
    STANDARD_CONTACTS,
    STANDARD_PROFILES,
    TEST_CATALOG,
    profile,
    write_extract,
)
from helpers import row_count
from sqlalchemy import select

from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.keys import Actor
from nextbest.loader import MAX_REPORTED, LoadError, load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Affinity, DataVersion, ProfileRow, WarehouseContact
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest

CLERK = Actor(key_id=1, user_id="clerk-ana", role="clerk", store_id="NJ-0001")
WAREHOUSE = (ProfileRow, Affinity, WarehouseContact)


def _reader(db: Database) -> WarehouseReader:
    # Re-read the active version on every call: these tests swap versions on purpose.
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


# --- a good extract ---------------------------------------------------------------------------


def test_standard_extract_loads_and_round_trips(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    report = load_extract(db, standard_extract, clock)

    assert (report.profiles, report.affinities, report.contacts) == (4, 6, 1)
    assert report.catalog_version == "test-1"
    assert report.ignored_columns == []
    assert _versions(db) == {report.version_id: "active"}
    assert [row_count(db, m) for m in WAREHOUSE] == [4, 6, 1]

    reader = _reader(db)
    active = reader.active()
    assert active.id == report.version_id
    assert active.catalog.version == "test-1"
    assert active.loaded_at == clock.now()

    first = reader.customer(active.id, "13900000001")
    assert first.profile == profile(arpu=120.5)
    assert first.affinities == {
        "crbt_open": 0.62,
        "mms_pkg": 0.30,
        "club_vip": 0.45,
        "sms_100": 0.20,
    }
    assert first.contacts == ()

    flagged = reader.customer(active.id, "13900000002").profile
    assert flagged is not None
    assert flagged.flags == ("dnd", "complaint")
    assert flagged.lifecycle == {"crbt": "silent"}
    assert flagged.handset == ()
    assert flagged.brand == "mzone"
    assert flagged.segment == "careful_calculator"

    silent = reader.customer(active.id, "13900000003")
    assert silent.profile is not None
    assert silent.profile.subscriptions == ("sms_50",)
    assert silent.profile.channel_pref == ("outbound", "store")
    assert silent.profile.stage("crbt") == "silent"
    assert silent.affinities == {"crbt_box": 0.55, "sms_100": 0.40}
    (contact,) = silent.contacts
    assert (contact.channel, contact.kind, contact.offer_id) == ("outbound", "contacted", None)
    # 2026-10-30T10:00:00+08:00, stored and read back as aware UTC.
    assert contact.at == datetime(2026, 10, 30, 2, 0, tzinfo=UTC)
    assert contact.at.utcoffset() is not None
    assert contact.at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]

    arrears = reader.customer(active.id, "13900000004").profile
    assert arrears is not None
    assert arrears.flags == ("arrears",)
    assert arrears.lifecycle == {}
    assert arrears.stage("crbt") == "none"

    nobody = reader.customer(active.id, "13900000099")
    assert nobody.profile is None
    assert nobody.affinities == {}


def test_extra_columns_are_ignored_and_reported(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY)
    text = (extract / "affinity.csv").read_text().splitlines()
    lines = [text[0] + ",model"] + [line + ",tree" for line in text[1:]]
    (extract / "affinity.csv").write_text("\n".join(lines) + "\n")

    report = load_extract(db, extract, clock)

    assert report.affinities == len(STANDARD_AFFINITY)
    assert report.ignored_columns == ["affinity.csv:model"]


# --- refused extracts -------------------------------------------------------------------------

Rows = dict[str, list[list[str]]]


def _set(file: str, row: int, column: int, value: str) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        rows[file][row][column] = value

    return change


def _append(file: str, values: list[str]) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        rows[file].append(values)

    return change


# (mutation of the standard rows, file, line, column, words the reason must contain).
# Row 1 of a file is on line 3 (line 1 is the header), so the line number is really checked.
BAD_ROWS = {
    "bad msisdn": (_set("profiles", 1, 0, "12345"), "profiles.csv", 3, "msisdn", "11-digit"),
    "unknown segment": (
        _set("profiles", 1, 1, "rich_kid"),
        "profiles.csv",
        3,
        "segment",
        "unknown segment 'rich_kid'",
    ),
    "unknown brand": (
        _set("profiles", 1, 2, "easyown"),
        "profiles.csv",
        3,
        "brand",
        "unknown brand 'easyown'",
    ),
    "arpu not a number": (
        _set("profiles", 1, 5, "forty"),
        "profiles.csv",
        3,
        "arpu",
        "expected a number, got 'forty'",
    ),
    "negative arpu": (_set("profiles", 1, 5, "-3"), "profiles.csv", 3, "arpu", "negative"),
    "lifecycle without stage": (
        _set("profiles", 1, 8, "crbt"),
        "profiles.csv",
        3,
        "lifecycle",
        "expected service:stage",
    ),
    "lifecycle unknown stage": (
        _set("profiles", 1, 8, "crbt:asleep"),
        "profiles.csv",
        3,
        "lifecycle",
        "unknown stage 'asleep'",
    ),
    "unknown flag": (
        _set("profiles", 1, 10, "dnd;vip"),
        "profiles.csv",
        3,
        "flags",
        "unknown value 'vip'",
    ),
    "unknown channel preference": (
        _set("profiles", 1, 9, "web"),
        "profiles.csv",
        3,
        "channel_pref",
        "unknown value 'web'",
    ),
    "duplicate profile": (
        _set("profiles", 1, 0, "13900000001"),
        "profiles.csv",
        3,
        "msisdn",
        "duplicate",
    ),
    "wrong field count": (
        lambda rows: rows["profiles"].__setitem__(1, rows["profiles"][1][:-1]),
        "profiles.csv",
        3,
        "",
        "expected 11 fields, found 10",
    ),
    "score above 1": (_set("affinity", 1, 2, "1.5"), "affinity.csv", 3, "score", "[0, 1]"),
    "score below 0": (_set("affinity", 1, 2, "-0.1"), "affinity.csv", 3, "score", "[0, 1]"),
    "score not a number": (_set("affinity", 1, 2, "high"), "affinity.csv", 3, "score", "'high'"),
    "affinity for unknown msisdn": (
        _set("affinity", 1, 0, "13900000099"),
        "affinity.csv",
        3,
        "msisdn",
        "13900000099 is not in profiles.csv",
    ),
    "affinity for unknown offer": (
        _set("affinity", 1, 1, "free_lunch"),
        "affinity.csv",
        3,
        "offer_id",
        "unknown offer 'free_lunch'",
    ),
    "contact at without offset": (
        _append("contacts", ["13900000001", "outbound", "", "contacted", "2026-10-30T10:00:00"]),
        "contacts.csv",
        3,
        "at",
        "UTC offset",
    ),
    "contact at not a time": (
        _append("contacts", ["13900000001", "outbound", "", "contacted", "yesterday"]),
        "contacts.csv",
        3,
        "at",
        "ISO 8601",
    ),
    "contact unknown kind": (
        _append("contacts", ["13900000001", "outbound", "", "visited", "2026-10-30T10:00+08:00"]),
        "contacts.csv",
        3,
        "kind",
        "unknown kind 'visited'",
    ),
    "contact unknown channel": (
        _append("contacts", ["13900000001", "fax", "", "contacted", "2026-10-30T10:00+08:00"]),
        "contacts.csv",
        3,
        "channel",
        "unknown channel 'fax'",
    ),
}


@pytest.fixture
def sqlite_db(sqlite_settings: Settings) -> Iterator[Database]:
    database = Database(sqlite_settings)
    database.create_schema()
    try:
        yield database
    finally:
        database.dispose()


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_malformed_row_is_refused_naming_file_line_column(
    case: str, sqlite_db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    # Row validation is the same on every backend; the both-backend tests below cover storage.
    change, file, line, column, reason = BAD_ROWS[case]
    rows: Rows = {
        "profiles": copy.deepcopy(STANDARD_PROFILES),
        "affinity": copy.deepcopy(STANDARD_AFFINITY),
        "contacts": copy.deepcopy(STANDARD_CONTACTS),
    }
    change(rows)
    extract = write_extract(tmp_path / "bad", rows["profiles"], rows["affinity"], rows["contacts"])

    with pytest.raises(LoadError) as refused:
        load_extract(sqlite_db, extract, clock)

    (problem,) = refused.value.problems
    assert (problem.file, problem.line, problem.column) == (file, line, column)
    assert reason in problem.reason
    where = f"{file}:{line}: column {column}:" if column else f"{file}:{line}:"
    assert str(refused.value).startswith(where), str(refused.value)
    assert "active" not in _versions(sqlite_db).values()


def test_header_missing_a_column_is_refused(
    sqlite_db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY)
    (extract / "profiles.csv").write_text(
        "msisdn,segment,brand,region,store_id,handset,subscriptions,lifecycle,channel_pref,flags\n"
        "13900000001,fashionable_high_end,gotone,Nanjing,NJ-0001,mms,,,store,\n"
    )
    with pytest.raises(LoadError) as refused:
        load_extract(sqlite_db, extract, clock)
    (problem,) = refused.value.problems
    assert (problem.file, problem.line) == ("profiles.csv", 1)
    assert "header lacks column(s) arpu" in problem.reason


def test_empty_file_is_refused(sqlite_db: Database, clock: FixedClock, tmp_path: Path) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES)
    (extract / "contacts.csv").write_text("")
    with pytest.raises(LoadError, match=r"contacts\.csv:1: empty file"):
        load_extract(sqlite_db, extract, clock)


@pytest.mark.parametrize("name", ["profiles.csv", "affinity.csv", "contacts.csv"])
def test_missing_file_is_refused(
    name: str, sqlite_db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES)
    (extract / name).unlink()
    with pytest.raises(LoadError) as refused:
        load_extract(sqlite_db, extract, clock)
    (problem,) = refused.value.problems
    assert problem.file.endswith(name)
    assert problem.reason == "file is missing"
    assert _versions(sqlite_db) == {}  # refused before anything was written


def test_missing_directory_is_refused(
    sqlite_db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    with pytest.raises(LoadError, match="not a directory"):
        load_extract(sqlite_db, tmp_path / "nowhere", clock)


def test_broken_catalog_is_refused_with_its_line(
    sqlite_db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    lines = TEST_CATALOG.read_text(encoding="utf-8").splitlines()
    # Break the TOML on a known line: an unterminated string in the first offer's name.
    index = lines.index('name = "Ring-back tone, two songs free"')
    lines[index] = 'name = "Ring-back tone, two songs free'
    broken = tmp_path / "catalog.toml"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, catalog=broken)

    with pytest.raises(LoadError) as refused:
        load_extract(sqlite_db, extract, clock)

    (problem,) = refused.value.problems
    assert problem.file.endswith("catalog.toml")
    assert problem.line == index + 1
    assert "not valid TOML" in problem.reason
    assert f"catalog.toml:{index + 1}:" in str(refused.value)


def test_catalog_with_an_unknown_key_is_refused_with_its_line(
    sqlite_db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    lines = TEST_CATALOG.read_text(encoding="utf-8").splitlines()
    index = lines.index("decline_cooldown_days = 30")
    lines[index] = "decline_cooldown_dayz = 30"
    broken = tmp_path / "catalog.toml"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, catalog=broken)

    with pytest.raises(LoadError) as refused:
        load_extract(sqlite_db, extract, clock)

    (problem,) = refused.value.problems
    # The line of the table that holds the unknown key.
    assert problem.line == lines.index("[policy]") + 1
    assert "unknown field `decline_cooldown_dayz`" in problem.reason


def test_up_to_20_problems_are_reported(db: Database, clock: FixedClock, tmp_path: Path) -> None:
    bad = [
        [f"1390100{i:04d}", "nobody", "gotone", "", "", "1", "", "", "", "", ""] for i in range(25)
    ]
    extract = write_extract(tmp_path / "x", [*STANDARD_PROFILES, *bad])

    with pytest.raises(LoadError) as refused:
        load_extract(db, extract, clock)

    problems = refused.value.problems
    assert len(problems) == MAX_REPORTED == 20
    assert [p.line for p in problems] == list(range(6, 26))
    assert {(p.file, p.column) for p in problems} == {("profiles.csv", "segment")}
    assert str(refused.value).splitlines()[-1] == "... and 5 more problems"
    assert _versions(db) == {1: "failed"}
    assert _row_versions(db) == set()


# --- versions ---------------------------------------------------------------------------------


def _decide(db: Database, clock: FixedClock, msisdn: str) -> tuple[int | None, bool, list[str]]:
    service = DecisionService(db, _reader(db), clock)
    response = service.decide(CLERK, DecisionRequest(msisdn=msisdn, channel="store"))
    return response.data_version, response.known, [o.offer_id for o in response.offers]


def test_refused_load_leaves_the_previous_version_serving(
    db: Database, clock: FixedClock, standard_extract: Path, tmp_path: Path
) -> None:
    a = load_extract(db, standard_extract, clock)
    assert _decide(db, clock, "13900000001")[:2] == (a.version_id, True)

    # B: profiles load (a new subscriber 13900000009), then affinity.csv is refused.
    new = ["13900000009", "fashionable_high_end", "gotone", "", "", "99", "mms", "", "", "", ""]
    b_dir = write_extract(
        tmp_path / "b",
        [*STANDARD_PROFILES, new],
        [["13900000009", "crbt_open", "0.9"], ["13900000009", "no_such_offer", "0.5"]],
    )
    with pytest.raises(LoadError, match=r"affinity\.csv:3: column offer_id:"):
        load_extract(db, b_dir, clock)

    versions = _versions(db)
    assert versions[a.version_id] == "active"
    (b_id,) = [v for v, status in versions.items() if status == "failed"]
    # B's profiles were written before its affinities were refused: present, never served.
    assert _row_versions(db) == {a.version_id, b_id}
    assert _decide(db, clock, "13900000001")[:2] == (a.version_id, True)
    assert _decide(db, clock, "13900000009")[:2] == (a.version_id, False)

    # The next good load removes B's leftovers and retires A.
    c = load_extract(db, standard_extract, clock)
    assert _versions(db) == {a.version_id: "retired", c.version_id: "active"}
    assert _row_versions(db) == {c.version_id}
    assert [row_count(db, m) for m in WAREHOUSE] == [4, 6, 1]
    assert _decide(db, clock, "13900000001")[:2] == (c.version_id, True)


def test_second_good_load_swaps_versions_and_drops_old_rows(
    db: Database, clock: FixedClock, standard_extract: Path, tmp_path: Path
) -> None:
    a = load_extract(db, standard_extract, clock)
    reader = _reader(db)
    assert reader.customer(a.version_id, "13900000001").profile is not None

    clock.advance(days=1)
    only = ["13900000005", "careful_calculator", "mzone", "Wuxi", "WX-1", "30", "", "", "", "", ""]
    b = load_extract(db, write_extract(tmp_path / "b", [only], [], []), clock)

    assert b.version_id != a.version_id
    assert (b.profiles, b.affinities, b.contacts) == (1, 0, 0)
    assert _versions(db) == {a.version_id: "retired", b.version_id: "active"}
    assert _row_versions(db) == {b.version_id}
    assert [row_count(db, m) for m in WAREHOUSE] == [1, 0, 0]
    assert reader.active().id == b.version_id
    assert reader.active().loaded_at == clock.now()
    assert _decide(db, clock, "13900000001")[:2] == (b.version_id, False)
    assert _decide(db, clock, "13900000005")[:2] == (b.version_id, True)


def test_a_swap_never_turns_a_known_customer_into_an_unknown_one(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    # A server re-reads which version is active only every few seconds; in between, a load may
    # retire (and drop) the version it still believes active.
    reader = WarehouseReader(db, cache_size=100, version_check_seconds=3600.0)
    service = DecisionService(db, reader, clock)
    a = load_extract(db, standard_extract, clock)
    first = service.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    assert (first.data_version, first.known) == (a.version_id, True)

    b = load_extract(db, standard_extract, clock)

    # The do-not-disturb customer must not be mistaken for an unknown number (general offers).
    flagged = service.decide(CLERK, DecisionRequest(msisdn="13900000002", channel="outbound"))
    assert (flagged.data_version, flagged.known) == (b.version_id, True)
    assert flagged.offers == []
    assert flagged.notice is not None


def test_a_load_overtaken_by_another_never_leaves_nothing_active(
    db: Database, clock: FixedClock, standard_extract: Path, tmp_path: Path
) -> None:
    # Two loads overlap (a nightly job started twice): the second one starts, clears what it
    # takes for the leftovers of a failed load (the first, still running) and goes live.
    a = load_extract(db, standard_extract, clock)
    other = write_extract(tmp_path / "other", STANDARD_PROFILES[:1], [], [])
    finished: list[int] = []

    def meanwhile(step: str) -> None:
        if step == "contacts.csv" and not finished:
            finished.append(load_extract(db, other, clock).version_id)

    with pytest.raises(LoadError, match="another load"):
        load_extract(db, standard_extract, clock, progress=meanwhile)

    (b_id,) = finished
    assert _versions(db) == {a.version_id: "retired", b_id: "active"}
    assert _row_versions(db) == {b_id}
    assert _decide(db, clock, "13900000001")[:2] == (b_id, True)
