"""Load a nightly warehouse extract (CSV or Parquet files plus the catalog) as a new version.

Rows are validated as they stream in and written in large batches on one connection of the
loader's own, under a new data version with status ``loading``, invisible to decisions; only
when every file has loaded does one short transaction make it ``active`` and retire the
previous one. The retired version stays readable for a grace period (decisions in flight on
other nodes may still read it), then its rows are dropped. A failed or interrupted load (even
SIGKILL) leaves the previous version serving; its rows are removed by the next load.

Memory stays flat with the size of the extract: files are streamed (extract_files.py), at most
one batch is held, and the checks that need the whole file (an affinity's subscriber must be in
the profiles, no duplicate subscriber or score) are asked of the database, batch by batch,
instead of a set of every number in memory.

Rejected rows: up to ``max_rejects`` malformed rows are skipped and listed in the report; one
more and the whole load is refused (the default, 0, refuses the first malformed row).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import msgspec
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from nextbest.audit import run_audit
from nextbest.catalog import Catalog, CatalogError, load_catalog
from nextbest.clock import Clock
from nextbest.extract_files import ExtractFileError, RowSource, find_file, open_source
from nextbest.msisdn import InvalidMsisdn, normalize
from nextbest.records import CHANNELS, CONTACT_KINDS, FLAGS, STAGES
from nextbest.storage.db import Database
from nextbest.storage.models import DataVersion, Subscription

__all__ = [
    "AFFINITY_COLUMNS",
    "CONTACT_CHANNELS",
    "CONTACT_COLUMNS",
    "MAX_REPORTED",
    "PROFILE_COLUMNS",
    "SALES_COLUMNS",
    "LoadError",
    "LoadProgress",
    "LoadReport",
    "Problem",
    "drop_expired_versions",
    "load_extract",
    "pending_drop",
]

PROFILE_COLUMNS = (
    "msisdn",
    "segment",
    "brand",
    "region",
    "store_id",
    "arpu",
    "handset",
    "subscriptions",
    "lifecycle",
    "channel_pref",
    "flags",
)
AFFINITY_COLUMNS = ("msisdn", "offer_id", "score")
CONTACT_COLUMNS = ("msisdn", "channel", "offer_id", "kind", "at")
# Optional: the warehouse's later word on sales made here (retention, billing audit).
SALES_COLUMNS = ("subscription_id", "status", "billed", "cancelled_at")
# The warehouse also knows SMS, a channel nextbest does not serve but whose contacts count.
CONTACT_CHANNELS = (*CHANNELS, "sms")
MAX_REPORTED = 20
# Rows per write transaction. On SQLite a batch holds the single write lock, so decisions'
# impressions wait for it: ~50 ms at these sizes, measured (docs/performance.md, Loads).
WRITE_ROWS = {"profiles": 10_000, "affinities": 25_000, "warehouse_contacts": 25_000}
# Rows deleted per transaction when a version is dropped (same reason).
DELETE_ROWS = {True: 50_000, False: 200_000}  # keyed by is_sqlite
# How often the progress callback hears from a running load.
TICK_SECONDS = 0.25

_TOKEN = re.compile(r"[a-z0-9][a-z0-9_\-]*")
_TABLE_COLUMNS = {
    "profiles": ("version_id", *PROFILE_COLUMNS),
    "affinities": ("version_id", *AFFINITY_COLUMNS),
    "warehouse_contacts": ("version_id", *CONTACT_COLUMNS),
}
_VERSIONED_TABLES = ("profiles", "affinities", "warehouse_contacts")


class Problem(msgspec.Struct, frozen=True):
    file: str
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        column = f" column {self.column}:" if self.column else ""
        return f"{self.file}:{self.line}:{column} {self.reason}"


class LoadError(ValueError):
    """The extract was refused; nothing of it is served. ``problems`` lists up to 20."""

    def __init__(self, problems: list[Problem], more: int = 0) -> None:
        self.problems = problems
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"... and {more} more problems")
        super().__init__("\n".join(lines))


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    version_id: int
    catalog_version: str
    profiles: int
    affinities: int
    contacts: int
    seconds: float
    ignored_columns: list[str] = []
    sales_updated: int = 0
    audit_flags: dict[str, int] = {}
    # Rows skipped as malformed (at most max_rejects), and the first MAX_REPORTED of them.
    rejected: int = 0
    rejects: list[str] = []
    # The files read, e.g. ["profiles.parquet", "affinity.csv", "contacts.csv"].
    files: list[str] = []
    # The version this load retired (still readable for the grace period), if any.
    retired: int | None = None
    # Versions whose rows this load dropped (their grace period was over).
    dropped: list[int] = []


class LoadProgress(msgspec.Struct, frozen=True, kw_only=True):
    """What a running load has done so far in the file it is reading."""

    file: str
    rows: int
    rejected: int
    seconds: float
    # How far through the file (bytes for CSV, rows for Parquet); None if unknown.
    fraction: float | None
    done: bool = False


class _Refused(Exception):
    """More rejected rows than allowed, or a file that cannot be read: stop and report."""


class _Problems:
    def __init__(self, max_rejects: int, sink: TextIO | None) -> None:
        self.items: list[Problem] = []
        self.count = 0
        self.max_rejects = max_rejects
        self.fatal = False
        self._sink = sink

    def add(self, file: str, line: int, column: str, reason: str) -> None:
        self.count += 1
        problem = Problem(file, line, column, reason)
        if len(self.items) < MAX_REPORTED:
            self.items.append(problem)
        if self._sink is not None:
            self._sink.write(f"{problem}\n")

    def reject_row(self, file: str, line: int, reason: str) -> None:
        self.add(file, line, "", reason)

    @property
    def over(self) -> bool:
        """Refused: a file could not be read, or more rows were rejected than allowed."""
        return self.fatal or self.count > self.max_rejects

    def raise_if_over(self) -> None:
        if self.over:
            raise LoadError(self.items, self.count - len(self.items))


class _Reject(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason


def load_extract(
    db: Database,
    directory: str | Path,
    clock: Clock,
    progress: Callable[[str], None] | None = None,
    *,
    max_rejects: int = 0,
    grace_seconds: float = 0.0,
    meter: Callable[[LoadProgress], None] | None = None,
    rejects_to: TextIO | None = None,
) -> LoadReport:
    """Load ``directory`` as the new active data version and return what was loaded.

    ``progress`` hears the name of each file as its loading starts; ``meter`` hears how far
    the current file got, a few times a second. ``max_rejects``: malformed rows that may be
    skipped (listed in the report, and every one written to ``rejects_to``) before the load
    is refused. ``grace_seconds``: how long a retired version stays readable before a load
    drops its rows (0: the version this load retires is dropped at once).
    """
    started = time.perf_counter()
    directory = Path(directory)
    say = progress or (lambda _msg: None)
    if max_rejects < 0:
        raise ValueError("max_rejects must be 0 or more")
    if not directory.is_dir():
        raise LoadError([Problem(str(directory), 0, "", "not a directory")])
    catalog_path = directory / "catalog.toml"
    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as exc:
        raise LoadError([Problem(exc.file, exc.line or 0, "", exc.message)]) from None
    paths: dict[str, Path] = {}
    for stem in ("profiles", "affinity", "contacts"):
        found = find_file(directory, stem)
        if found is None:
            raise LoadError([Problem(str(directory / f"{stem}.csv"), 0, "", "file is missing")])
        paths[stem] = found
    sales_path = find_file(directory, "sales")

    db.create_schema()
    _drop_unfinished(db)
    dropped = drop_expired_versions(db, clock.now(), grace_seconds)
    with db.write() as session:
        version = DataVersion(
            status="loading",
            source=str(directory.resolve()),
            catalog_version=catalog.version,
            catalog_hash=catalog.hash,
            catalog_toml=catalog_path.read_bytes(),
            created_at=clock.now(),
        )
        session.add(version)
        session.flush()
        version_id = version.id
    problems = _Problems(max_rejects, rejects_to)
    rows = _RowChecks(catalog, version_id)
    ignored: list[str] = []
    try:
        with _open_store(db) as store:
            loaded: dict[str, int] = {}
            profiles_file = paths["profiles"].name
            for stem, table, columns, parse, subscribers_in in (
                ("profiles", "profiles", PROFILE_COLUMNS, rows.profile, None),
                ("affinity", "affinities", AFFINITY_COLUMNS, rows.affinity, profiles_file),
                ("contacts", "warehouse_contacts", CONTACT_COLUMNS, rows.contact, None),
            ):
                say(paths[stem].name)
                loaded[table] = _load_file(
                    store, paths[stem], table, columns, parse, problems, ignored, meter,
                    subscribers_in,
                )  # fmt: skip
                problems.raise_if_over()
            sales: list[dict[str, Any]] = []
            if sales_path is not None:
                say(sales_path.name)
                sales = _read_sales(db, sales_path, problems, ignored)
                problems.raise_if_over()
            store.analyze()
        retired = _swap(db, clock, version_id, sales, loaded)
    except _Overtaken:
        _delete_version_rows(db, version_id)
        raise LoadError(
            [Problem(str(directory), 0, "", "another load started while this one ran; it wins")]
        ) from None
    except BaseException:
        _mark_failed(db, version_id)
        raise
    dropped += drop_expired_versions(db, clock.now(), grace_seconds)
    audit = run_audit(db, catalog, version_id, clock.now())
    files = [paths[s].name for s in ("profiles", "affinity", "contacts")]
    return LoadReport(
        version_id=version_id,
        catalog_version=catalog.version,
        profiles=loaded["profiles"],
        affinities=loaded["affinities"],
        contacts=loaded["warehouse_contacts"],
        seconds=round(time.perf_counter() - started, 2),
        ignored_columns=ignored,
        sales_updated=len(sales),
        audit_flags=audit.new_flags,
        rejected=problems.count,
        rejects=[str(p) for p in problems.items],
        files=[*files, sales_path.name] if sales_path is not None else files,
        retired=retired,
        dropped=sorted(set(dropped)),
    )


class _Overtaken(Exception):
    pass


def _swap(
    db: Database,
    clock: Clock,
    version_id: int,
    sales: list[dict[str, Any]],
    loaded: dict[str, int],
) -> int | None:
    """The single point where decisions move to the new version. Returns the retired one."""
    with db.write() as session:
        # Another load that started meanwhile took this one for a failed one and cleared it.
        mine = session.scalar(
            select(DataVersion.status).where(DataVersion.id == version_id).with_for_update()
        )
        if mine != "loading":
            raise _Overtaken()
        _apply_sales(session, sales)
        previous = session.scalar(select(DataVersion.id).where(DataVersion.status == "active"))
        session.execute(
            update(DataVersion).where(DataVersion.status == "active").values(status="retired")
        )
        session.execute(
            update(DataVersion)
            .where(DataVersion.id == version_id)
            .values(
                status="active",
                activated_at=clock.now(),
                profiles=loaded["profiles"],
                affinities=loaded["affinities"],
                contacts=loaded["warehouse_contacts"],
            )
        )
    return previous


# --- reading and checking rows ----------------------------------------------------------------

Parse = Callable[[tuple[str, ...]], tuple[Any, ...]]


def _load_file(
    store: _Store,
    path: Path,
    table: str,
    columns: tuple[str, ...],
    parse: Parse,
    problems: _Problems,
    ignored: list[str],
    meter: Callable[[LoadProgress], None] | None,
    subscribers_in: str | None = None,
) -> int:
    """Stream one file into ``table``; returns the rows written. After the reject threshold is
    crossed nothing more is written, but the rest of the file is still checked, so the
    refusal counts every problem in it. ``subscribers_in``: the profiles file each row's
    subscriber must be in (affinities)."""
    source = open_source(path, columns, problems.reject_row)
    file = source.name
    written = 0
    pending: list[tuple[Any, ...]] = []
    pending_lines: list[int] = []
    flush_at = WRITE_ROWS[table]
    started = time.perf_counter()
    last_tick = started

    def flush() -> None:
        nonlocal written, pending, pending_lines
        if pending and not problems.over:
            duplicates = store.write(table, pending)
            for index in duplicates:
                problems.add(file, pending_lines[index], *_duplicate(table, pending[index]))
            written += len(pending) - len(duplicates)
        pending, pending_lines = [], []

    def tick(done: bool = False) -> None:
        if meter is not None:
            meter(
                LoadProgress(
                    file=file,
                    rows=written + len(pending),
                    rejected=problems.count,
                    seconds=time.perf_counter() - started,
                    fraction=1.0 if done else source.fraction(),
                    done=done,
                )
            )

    try:
        for batch in source.batches():
            good: list[tuple[int, tuple[Any, ...]]] = []
            keep = good.append
            for line, values in batch:
                try:
                    keep((line, parse(values)))
                except _Reject as exc:
                    problems.add(file, line, exc.column, exc.reason)
            if subscribers_in is not None and good:
                good = _with_known_subscribers(store, good, file, problems, subscribers_in)
            if good:
                lines, records = zip(*good, strict=True)
                pending_lines.extend(lines)
                pending.extend(records)
            if len(pending) >= flush_at:
                flush()
            now = time.perf_counter()
            if now - last_tick >= TICK_SECONDS:
                last_tick = now
                tick()
        flush()
    except ExtractFileError as exc:
        problems.add(exc.file, exc.line, "", exc.reason)
        problems.fatal = True
    finally:
        source.close()
    ignored.extend(source.ignored)
    tick(done=True)
    return written


def _with_known_subscribers(
    store: _Store,
    good: list[tuple[int, tuple[Any, ...]]],
    file: str,
    problems: _Problems,
    where: str,
) -> list[tuple[int, tuple[Any, ...]]]:
    """Affinity rows whose subscriber is in this version's profiles; the others rejected."""
    version_id = good[0][1][0]
    wanted = list({record[1] for _, record in good})
    known = store.known_msisdns(version_id, wanted)
    if len(known) == len(wanted):
        return good
    kept = []
    for line, record in good:
        if record[1] in known:
            kept.append((line, record))
        else:
            problems.add(file, line, "msisdn", f"{record[1]} is not in {where}")
    return kept


def _duplicate(table: str, record: tuple[Any, ...]) -> tuple[str, str]:
    if table == "profiles":
        return "msisdn", f"duplicate subscriber {record[1]}"
    return "offer_id", f"duplicate score for {record[1]} and {record[2]}"


class _RowChecks:
    """The checks of one row of each file, turning its text into the row to store.

    Values of list columns repeat a great deal (``mms;data``, ``crbt:silent``); each distinct
    text is checked once and remembered (a bounded memo, so memory stays flat)."""

    MEMO_LIMIT = 50_000

    def __init__(self, catalog: Catalog, version_id: int) -> None:
        self.version_id = version_id
        self.segments = frozenset(s.code for s in catalog.segments)
        self.brands = frozenset(b.code for b in catalog.brands)
        self.offers = frozenset(o.id for o in catalog.offers)
        self._memo: dict[tuple[str, str], str] = {}

    # profiles.csv
    def profile(self, values: tuple[str, ...]) -> tuple[Any, ...]:
        (msisdn, segment, brand, region, store_id, arpu_text, handset, subs, lifecycle, prefs,
         flags) = values  # fmt: skip
        msisdn = _msisdn(msisdn)
        if segment not in self.segments:
            raise _Reject("segment", f"unknown segment {segment!r} (not in the catalog)")
        if brand not in self.brands:
            raise _Reject("brand", f"unknown brand {brand!r} (not in the catalog)")
        try:
            arpu = float(arpu_text or "0")
        except ValueError:
            raise _Reject("arpu", f"expected a number, got {arpu_text!r}") from None
        if not 0 <= arpu < math.inf:
            raise _Reject("arpu", f"must be a finite number, not negative, got {arpu_text!r}")
        lifecycle = self._list("lifecycle", lifecycle)
        return (
            self.version_id,
            msisdn,
            segment,
            brand,
            region[:60],
            store_id[:40],
            arpu,
            self._list("handset", handset),
            self._list("subscriptions", subs),
            lifecycle,
            self._list("channel_pref", prefs),
            self._list("flags", flags),
        )

    def _list(self, column: str, value: str) -> str:
        if not value:
            return ""
        key = (column, value)
        known = self._memo.get(key)
        if known is not None:
            return known
        parts = [part.strip() for part in value.split(";") if part.strip()]
        if column == "lifecycle":
            for pair in parts:
                service, sep, stage = pair.partition(":")
                if not sep or not _TOKEN.fullmatch(service):
                    raise _Reject("lifecycle", f"expected service:stage, got {pair!r}")
                if stage not in STAGES or stage == "none":
                    raise _Reject("lifecycle", f"unknown stage {stage!r} in {pair!r}")
        else:
            allowed = _ALLOWED.get(column)
            for part in parts:
                if allowed is not None and part not in allowed:
                    raise _Reject(
                        column, f"unknown value {part!r}; expected one of {', '.join(allowed)}"
                    )
                if allowed is None and not _TOKEN.fullmatch(part):
                    raise _Reject(
                        column, f"{part!r} is not a code (lower-case letters, digits, _ -)"
                    )
        normal = ";".join(parts)
        if len(self._memo) >= self.MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = normal
        return normal

    # affinity.csv (the subscriber is checked against the profiles per batch, and a duplicate
    # by the table's primary key)
    def affinity(self, values: tuple[str, ...]) -> tuple[Any, ...]:
        msisdn, offer_id, score_text = values
        msisdn = _msisdn(msisdn)
        if offer_id not in self.offers:
            raise _Reject("offer_id", f"unknown offer {offer_id!r} (not in the catalog)")
        try:
            score = float(score_text)
        except ValueError:
            raise _Reject("score", f"expected a number in [0, 1], got {score_text!r}") from None
        if not 0.0 <= score <= 1.0:
            raise _Reject("score", f"must be within [0, 1], got {score_text!r}")
        return (self.version_id, msisdn, offer_id, score)

    # contacts.csv
    def contact(self, values: tuple[str, ...]) -> tuple[Any, ...]:
        msisdn, channel, offer_text, kind, at_text = values
        msisdn = _msisdn(msisdn)
        if channel not in CONTACT_CHANNELS:
            raise _Reject("channel", f"unknown channel {channel!r}; expected {CONTACT_CHANNELS}")
        if kind not in CONTACT_KINDS:
            raise _Reject("kind", f"unknown kind {kind!r}; expected one of {CONTACT_KINDS}")
        offer_id = offer_text or None
        if offer_id is not None and not _TOKEN.fullmatch(offer_id):
            raise _Reject("offer_id", f"{offer_id!r} is not an offer code")
        if kind == "cancelled" and offer_id is None:
            raise _Reject("offer_id", "a cancellation needs the offer (or service) cancelled")
        return (self.version_id, msisdn, channel, offer_id, kind, _time("at", at_text))


_ALLOWED: dict[str, tuple[str, ...]] = {"channel_pref": CONTACT_CHANNELS, "flags": FLAGS}
_MOBILE_PREFIXES = frozenset(["13", "14", "15", "16", "17", "18", "19"])


def _msisdn(value: str) -> str:
    # The usual case, checked without a regular expression: 11 ASCII digits, 13-19.
    if len(value) == 11 and value.isascii() and value.isdigit() and value[:2] in _MOBILE_PREFIXES:
        return value
    try:
        return normalize(value)
    except InvalidMsisdn as exc:
        raise _Reject("msisdn", str(exc)) from None


def _time(column: str, value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject(column, f"expected an ISO 8601 time, got {value!r}") from None
    if at.tzinfo is None:
        raise _Reject(column, f"needs a UTC offset (e.g. +08:00), got {value!r}")
    return at.astimezone(UTC)


# --- the loader's connection ------------------------------------------------------------------


class _Store:
    """The loader's own connection: bulk writes and the checks asked of the database."""

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> list[int]:
        """Write ``rows`` in one transaction; returns the indexes of the rows refused as
        duplicates of a row already written (those are skipped, the rest written)."""
        raise NotImplementedError

    def known_msisdns(self, version_id: int, msisdns: list[str]) -> set[str]:
        raise NotImplementedError

    def analyze(self) -> None:
        """Refresh the planner's statistics of the tables just written."""


@contextmanager
def _open_store(db: Database) -> Iterator[_Store]:
    # A connection of its own, outside the pool: the settings below must not leak into the
    # serving connections, so it is closed, not returned, at the end.
    pooled = db.writer.raw_connection()
    connection = pooled.driver_connection
    pooled.detach()
    try:
        store: _Store = _SqliteStore(db, connection) if db.is_sqlite else _PostgresStore(connection)
        yield store
    finally:
        pooled.close()


def _insert_sql(table: str, conflict: bool = False, mark: str = "?") -> str:
    columns = _TABLE_COLUMNS[table]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)})"
    return sql + " ON CONFLICT DO NOTHING" if conflict else sql


class _SqliteStore(_Store):
    def __init__(self, db: Database, connection: Any) -> None:
        import sqlite3

        self._integrity = sqlite3.IntegrityError
        self._db = db
        self._conn = connection
        # Loading rows are invisible until the swap, which commits with the serving settings
        # (synchronous=FULL): here a power cut may lose the last batches but cannot corrupt
        # (WAL), and the next load clears them anyway.
        for pragma in (
            "PRAGMA synchronous=NORMAL",
            "PRAGMA cache_size=-65536",
            "PRAGMA temp_store=MEMORY",
            "PRAGMA wal_autocheckpoint=8192",
        ):
            self._conn.execute(pragma)

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> list[int]:
        if table == "warehouse_contacts":
            rows = [(*row[:5], _sqlite_time(row[5])) for row in rows]
        conn = self._conn
        with self._db.write_lock():
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_insert_sql(table), rows)
            except self._integrity:
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
                return []
            # A duplicate in the batch: again row by row, keeping the first of each key.
            duplicates = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                sql = _insert_sql(table, conflict=True)
                for index, row in enumerate(rows):
                    if conn.execute(sql, row).rowcount == 0:
                        duplicates.append(index)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return duplicates

    def known_msisdns(self, version_id: int, msisdns: list[str]) -> set[str]:
        cursor = self._conn.execute(
            "SELECT msisdn FROM profiles WHERE version_id = ? "
            "AND msisdn IN (SELECT value FROM json_each(?))",
            (version_id, json.dumps(msisdns)),
        )
        return {row[0] for row in cursor}


# COPY's text format, built here: a few times faster than psycopg's write_row per row. Codes,
# numbers and times need no escaping (the row checks guarantee it); free text does.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_free_text(value: str) -> str:
    # Tabs, newlines and backslashes would break the format; everything else goes as is.
    if value.isprintable() and "\\" not in value:
        return value
    return value.translate(_COPY_ESCAPES)


_COPY_NULL = "\\N"


def _copy_profiles(rows: list[tuple[Any, ...]]) -> str:
    free = _copy_free_text
    return "".join(
        f"{v}\t{m}\t{seg}\t{brand}\t{free(region)}\t{free(store)}\t{arpu!r}\t"
        f"{h}\t{s}\t{lc}\t{cp}\t{f}\n"
        for v, m, seg, brand, region, store, arpu, h, s, lc, cp, f in rows
    )


def _copy_affinities(rows: list[tuple[Any, ...]]) -> str:
    return "".join(f"{v}\t{m}\t{o}\t{score!r}\n" for v, m, o, score in rows)


def _copy_contacts(rows: list[tuple[Any, ...]]) -> str:
    null = _COPY_NULL
    return "".join(
        f"{v}\t{m}\t{ch}\t{null if o is None else o}\t{k}\t{at.isoformat()}\n"
        for v, m, ch, o, k, at in rows
    )


_COPY_TEXT: dict[str, Callable[[list[tuple[Any, ...]]], str]] = {
    "profiles": _copy_profiles,
    "affinities": _copy_affinities,
    "warehouse_contacts": _copy_contacts,
}


def _sqlite_time(value: datetime) -> str:
    # As UtcDateTime stores it on SQLite: naive UTC text.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


class _PostgresStore(_Store):
    def __init__(self, connection: Any) -> None:
        import psycopg

        self._unique = psycopg.errors.UniqueViolation
        self._conn = connection
        # As on SQLite: rows of a loading version need not wait for the disk at each batch.
        self._conn.execute("SET synchronous_commit TO OFF")
        self._conn.commit()

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> list[int]:
        conn = self._conn
        copy_sql = f"COPY {table} ({', '.join(_TABLE_COLUMNS[table])}) FROM STDIN"
        try:
            with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.write(_COPY_TEXT[table](rows))
            conn.commit()
            return []
        except self._unique:
            conn.rollback()
        duplicates = []
        sql = _insert_sql(table, conflict=True, mark="%s")
        try:
            with conn.cursor() as cursor:
                for index, row in enumerate(rows):
                    cursor.execute(sql, row)
                    if cursor.rowcount == 0:
                        duplicates.append(index)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return duplicates

    def known_msisdns(self, version_id: int, msisdns: list[str]) -> set[str]:
        with self._conn.cursor() as cursor:
            cursor.execute(
                "SELECT msisdn FROM profiles WHERE version_id = %s AND msisdn = ANY(%s)",
                (version_id, msisdns),
            )
            found = {row[0] for row in cursor}
        self._conn.commit()
        return found

    def analyze(self) -> None:
        # The tables just grew by a whole version: plan the decision path's queries on
        # statistics that know it (autovacuum would, but only later).
        for table in _VERSIONED_TABLES:
            self._conn.execute(f"ANALYZE {table}")
        self._conn.commit()


# --- versions: leftovers, grace period, dropping ----------------------------------------------


def _drop_unfinished(db: Database) -> None:
    """Rows of loads that failed or were killed are invisible; remove them before a new one.

    A load still running counts as killed: marked failed first, it can no longer go live."""
    with db.write() as session:
        session.execute(
            update(DataVersion).where(DataVersion.status == "loading").values(status="failed")
        )
        stale = list(session.scalars(select(DataVersion.id).where(DataVersion.status == "failed")))
    for version_id in stale:
        _delete_version_rows(db, version_id)
        with db.write() as session:
            session.execute(delete(DataVersion).where(DataVersion.id == version_id))


def pending_drop(db: Database, grace_seconds: float) -> dict[int, datetime]:
    """Retired versions that may still have rows, and when each may be dropped: its grace
    period runs from the moment the version after it went live."""
    with db.read() as session:
        versions = list(
            session.execute(
                select(DataVersion.id, DataVersion.status, DataVersion.activated_at).order_by(
                    DataVersion.id
                )
            )
        )
    due: dict[int, datetime] = {}
    for index, (version_id, status, activated_at) in enumerate(versions):
        if status != "retired":
            continue
        later = [at for _, _, at in versions[index + 1 :] if at is not None]
        retired_at = min(later) if later else activated_at
        if retired_at is None:
            continue
        due[version_id] = retired_at + timedelta(seconds=grace_seconds)
    return due


def drop_expired_versions(db: Database, now: datetime, grace_seconds: float) -> list[int]:
    """Drop the rows of retired versions whose grace period is over; returns those versions
    that still had rows. Their ``data_versions`` row stays (decisions refer to it)."""
    dropped = []
    for version_id, due in pending_drop(db, grace_seconds).items():
        if due <= now and _delete_version_rows(db, version_id):
            dropped.append(version_id)
    return dropped


def _delete_version_rows(db: Database, version_id: int) -> int:
    """Delete a version's rows in chunks of short transactions (on SQLite each holds the
    single write lock: decisions' writes must not wait for ten million deletions)."""
    chunk = DELETE_ROWS[db.is_sqlite]
    deleted = 0
    for table in _VERSIONED_TABLES:
        low = ""
        while True:
            # Walk the (version_id, msisdn) index from where the last chunk ended: the rows
            # before it are gone (on PostgreSQL, dead until vacuumed, so never rescanned).
            with db.write() as session:
                high = session.scalar(
                    text(
                        f"SELECT msisdn FROM {table} WHERE version_id = :v AND msisdn >= :low "
                        "ORDER BY msisdn LIMIT 1 OFFSET :n"
                    ),
                    {"v": version_id, "low": low, "n": chunk},
                )
                if high is not None and high == low:  # one subscriber has more rows than that
                    high = session.scalar(
                        text(
                            f"SELECT MIN(msisdn) FROM {table} "
                            "WHERE version_id = :v AND msisdn > :low"
                        ),
                        {"v": version_id, "low": low},
                    )
                where = "version_id = :v AND msisdn >= :low"
                params: dict[str, Any] = {"v": version_id, "low": low}
                if high is not None:
                    where += " AND msisdn < :high"
                    params["high"] = high
                result = session.execute(text(f"DELETE FROM {table} WHERE {where}"), params)
                deleted += max(result.rowcount, 0)  # type: ignore[attr-defined]
            if high is None:
                break
            low = high
    return deleted


def _mark_failed(db: Database, version_id: int) -> None:
    try:
        with db.write() as session:
            session.execute(
                update(DataVersion).where(DataVersion.id == version_id).values(status="failed")
            )
    except Exception:  # the original error matters more; the next load cleans up anyway
        pass


# --- sales ------------------------------------------------------------------------------------

_BOOLEAN = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def _read_sales(
    db: Database, path: Path, problems: _Problems, ignored: list[str]
) -> list[dict[str, Any]]:
    """Check the sales file whole (it is small: sales made here); the updates are applied in
    the swap transaction. Rejected rows count against the same threshold."""
    source: RowSource = open_source(path, SALES_COLUMNS, problems.reject_row)
    file = source.name
    parsed: list[tuple[int, dict[str, Any]]] = []
    try:
        for batch in source.batches():
            for line, values in batch:
                try:
                    parsed.append((line, _sale(values)))
                except _Reject as exc:
                    problems.add(file, line, exc.column, exc.reason)
    except ExtractFileError as exc:
        problems.add(exc.file, exc.line, "", exc.reason)
        problems.fatal = True
    finally:
        source.close()
    ignored.extend(source.ignored)
    ids = [record["id"] for _, record in parsed]
    known: set[int] = set()
    with db.read() as session:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            known.update(session.scalars(select(Subscription.id).where(Subscription.id.in_(chunk))))
    kept = []
    for line, record in parsed:
        if record["id"] in known:
            kept.append(record)
        else:
            problems.add(file, line, "subscription_id", f"no sale {record['id']} was recorded here")
    return kept


def _sale(values: tuple[str, ...]) -> dict[str, Any]:
    subscription_text, status, billed, cancelled_text = values
    try:
        subscription_id = int(subscription_text)
    except ValueError:
        raise _Reject(
            "subscription_id", f"expected a whole number, got {subscription_text!r}"
        ) from None
    if status not in ("active", "cancelled"):
        raise _Reject("status", f"expected active or cancelled, got {status!r}")
    billed_text = billed.lower()
    if billed_text and billed_text not in _BOOLEAN:
        raise _Reject("billed", f"expected yes or no, got {billed!r}")
    cancelled_at: datetime | None = None
    if cancelled_text:
        try:
            cancelled_at = datetime.fromisoformat(cancelled_text)
        except ValueError:
            raise _Reject(
                "cancelled_at", f"expected an ISO 8601 time, got {cancelled_text!r}"
            ) from None
        if cancelled_at.tzinfo is None:
            raise _Reject("cancelled_at", "needs a UTC offset (e.g. +08:00)")
        cancelled_at = cancelled_at.astimezone(UTC)
    if status == "cancelled" and cancelled_at is None:
        raise _Reject("cancelled_at", "required when status is cancelled")
    return {
        "id": subscription_id,
        "status": status,
        "billed": _BOOLEAN.get(billed_text),
        "cancelled_at": cancelled_at,
    }


def _apply_sales(session: Session, sales: list[dict[str, Any]]) -> None:
    for sale in sales:
        row = session.get(Subscription, sale["id"])
        if row is None:
            continue
        if sale["billed"] is not None:
            row.billed = sale["billed"]
        if sale["status"] == "cancelled" and row.status in ("active", "pending"):
            row.status = "cancelled"
            row.cancelled_at = sale["cancelled_at"]
            row.status_reason = "cancelled (warehouse)"
