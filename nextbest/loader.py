"""Load a nightly warehouse extract (a folder of CSV files plus the catalog) as a new version.

Rows are validated as they stream in. Everything is written under a new data version with
status ``loading``, invisible to decisions; only when every file has loaded does one short
transaction make it ``active`` and retire the previous one. A failed or interrupted load leaves
the previous version serving and its own rows are removed by the next load.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from nextbest.audit import run_audit
from nextbest.catalog import Catalog, CatalogError, load_catalog
from nextbest.clock import Clock
from nextbest.msisdn import InvalidMsisdn, normalize
from nextbest.records import CHANNELS, CONTACT_KINDS, FLAGS, STAGES
from nextbest.storage.db import Database
from nextbest.storage.models import (
    Affinity,
    DataVersion,
    ProfileRow,
    Subscription,
    WarehouseContact,
)

__all__ = [
    "AFFINITY_COLUMNS",
    "CONTACT_CHANNELS",
    "CONTACT_COLUMNS",
    "PROFILE_COLUMNS",
    "SALES_COLUMNS",
    "LoadError",
    "LoadReport",
    "load_extract",
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
BATCH = 5000
MAX_REPORTED = 20

_TOKEN = re.compile(r"[a-z0-9][a-z0-9_\-]*")


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


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.count = 0

    def add(self, file: str, line: int, column: str, reason: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(Problem(file, line, column, reason))

    def raise_if_any(self) -> None:
        if self.count:
            raise LoadError(self.items, self.count - len(self.items))


def load_extract(
    db: Database,
    directory: str | Path,
    clock: Clock,
    progress: Callable[[str], None] | None = None,
) -> LoadReport:
    started = time.perf_counter()
    directory = Path(directory)
    say = progress or (lambda _msg: None)
    if not directory.is_dir():
        raise LoadError([Problem(str(directory), 0, "", "not a directory")])
    catalog_path = directory / "catalog.toml"
    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as exc:
        raise LoadError([Problem(exc.file, exc.line or 0, "", exc.message)]) from None
    for name in ("profiles.csv", "affinity.csv", "contacts.csv"):
        if not (directory / name).is_file():
            raise LoadError([Problem(str(directory / name), 0, "", "file is missing")])

    db.create_schema()
    _drop_unfinished(db)
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
    try:
        problems = _Problems()
        ignored: list[str] = []
        say("profiles.csv")
        msisdns: set[str] = set()
        profiles = _load_file(
            db,
            directory / "profiles.csv",
            PROFILE_COLUMNS,
            ProfileRow,
            lambda row, line, file: _profile(row, line, file, catalog, version_id, msisdns),
            problems,
            ignored,
        )
        problems.raise_if_any()
        say("affinity.csv")
        seen_pairs: set[tuple[str, str]] = set()
        affinities = _load_file(
            db,
            directory / "affinity.csv",
            AFFINITY_COLUMNS,
            Affinity,
            lambda row, line, file: _affinity(
                row, line, file, catalog, version_id, msisdns, seen_pairs
            ),
            problems,
            ignored,
        )
        problems.raise_if_any()
        say("contacts.csv")
        contacts = _load_file(
            db,
            directory / "contacts.csv",
            CONTACT_COLUMNS,
            WarehouseContact,
            lambda row, line, file: _contact(row, line, file, version_id),
            problems,
            ignored,
        )
        problems.raise_if_any()
        sales: list[dict[str, Any]] = []
        if (directory / "sales.csv").is_file():
            say("sales.csv")
            sales = _read_sales(db, directory / "sales.csv", problems)
            problems.raise_if_any()
        with db.write() as session:
            # Another load that started meanwhile took this one for a failed one and cleared it.
            mine = session.scalar(
                select(DataVersion.status).where(DataVersion.id == version_id).with_for_update()
            )
            if mine != "loading":
                raise _Overtaken(str(directory))
            _apply_sales(session, sales)
            session.execute(
                update(DataVersion).where(DataVersion.status == "active").values(status="retired")
            )
            session.execute(
                update(DataVersion)
                .where(DataVersion.id == version_id)
                .values(
                    status="active",
                    activated_at=clock.now(),
                    profiles=profiles,
                    affinities=affinities,
                    contacts=contacts,
                )
            )
    except _Overtaken:
        _delete_version_rows(db, version_id)
        raise LoadError(
            [Problem(str(directory), 0, "", "another load started while this one ran; it wins")]
        ) from None
    except BaseException:
        _mark_failed(db, version_id)
        raise
    _drop_retired(db)
    audit = run_audit(db, catalog, version_id, clock.now())
    return LoadReport(
        version_id=version_id,
        catalog_version=catalog.version,
        profiles=profiles,
        affinities=affinities,
        contacts=contacts,
        seconds=round(time.perf_counter() - started, 2),
        ignored_columns=ignored,
        sales_updated=len(sales),
        audit_flags=audit.new_flags,
    )


class _Overtaken(Exception):
    pass


class _Reject(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason


Parser = Callable[[dict[str, str], int, str], dict[str, Any] | None]


def _load_file(
    db: Database,
    path: Path,
    columns: tuple[str, ...],
    model: Any,
    parse: Parser,
    problems: _Problems,
    ignored: list[str],
) -> int:
    file = path.name
    count = 0
    batch: list[dict[str, Any]] = []
    table = model.__table__
    with path.open(newline="", encoding="utf-8") as handle:
        try:
            rows = _rows(handle, file, columns, problems, ignored)
            for line, row in rows:
                try:
                    record = parse(row, line, file)
                except _Reject as exc:
                    problems.add(file, line, exc.column, exc.reason)
                    continue
                if record is None or problems.count:
                    continue  # keep validating, stop writing
                batch.append(record)
                count += 1
                if len(batch) >= BATCH:
                    _insert(db, table, batch)
                    batch = []
        except UnicodeDecodeError as exc:
            problems.add(file, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    if batch and not problems.count:
        _insert(db, table, batch)
    return count


def _rows(
    handle: Any, file: str, columns: tuple[str, ...], problems: _Problems, ignored: list[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        problems.add(file, 1, "", "empty file: expected a header row")
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        problems.add(file, 1, "", f"header lacks column(s) {', '.join(missing)}")
        return
    ignored.extend(f"{file}:{h}" for h in header if h not in columns)
    index = [(c, header.index(c)) for c in columns]
    width = len(header)
    try:
        for values in reader:
            line = reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) != width:
                problems.add(file, line, "", f"expected {width} fields, found {len(values)}")
                continue
            yield line, {c: values[i].strip() for c, i in index}
    except csv.Error as exc:
        problems.add(file, reader.line_num, "", f"malformed CSV: {exc}")


def _insert(db: Database, table: Any, batch: list[dict[str, Any]]) -> None:
    with db.write() as session:
        session.execute(insert(table), batch)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _tokens(row: dict[str, str], column: str, allowed: tuple[str, ...] | None = None) -> str:
    parts = _split(row[column])
    for part in parts:
        if allowed is not None and part not in allowed:
            raise _Reject(column, f"unknown value {part!r}; expected one of {', '.join(allowed)}")
        if allowed is None and not _TOKEN.fullmatch(part):
            raise _Reject(column, f"{part!r} is not a code (lower-case letters, digits, _ -)")
    return ";".join(parts)


def _msisdn(row: dict[str, str]) -> str:
    try:
        return normalize(row["msisdn"])
    except InvalidMsisdn as exc:
        raise _Reject("msisdn", str(exc)) from None


def _profile(
    row: dict[str, str],
    line: int,
    file: str,
    catalog: Catalog,
    version_id: int,
    seen: set[str],
) -> dict[str, Any]:
    msisdn = _msisdn(row)
    if msisdn in seen:
        raise _Reject("msisdn", f"duplicate subscriber {msisdn}")
    if catalog.segment(row["segment"]) is None:
        raise _Reject("segment", f"unknown segment {row['segment']!r} (not in the catalog)")
    if catalog.brand(row["brand"]) is None:
        raise _Reject("brand", f"unknown brand {row['brand']!r} (not in the catalog)")
    try:
        arpu = float(row["arpu"] or "0")
    except ValueError:
        raise _Reject("arpu", f"expected a number, got {row['arpu']!r}") from None
    if not arpu >= 0:
        raise _Reject("arpu", f"must not be negative, got {row['arpu']!r}")
    lifecycle = _split(row["lifecycle"])
    for pair in lifecycle:
        service, sep, stage = pair.partition(":")
        if not sep or not _TOKEN.fullmatch(service):
            raise _Reject("lifecycle", f"expected service:stage, got {pair!r}")
        if stage not in STAGES or stage == "none":
            raise _Reject("lifecycle", f"unknown stage {stage!r} in {pair!r}")
    seen.add(msisdn)
    return {
        "version_id": version_id,
        "msisdn": msisdn,
        "segment": row["segment"],
        "brand": row["brand"],
        "region": row["region"][:60],
        "store_id": row["store_id"][:40],
        "arpu": arpu,
        "handset": _tokens(row, "handset"),
        "subscriptions": _tokens(row, "subscriptions"),
        "lifecycle": ";".join(lifecycle),
        "channel_pref": _tokens(row, "channel_pref", CONTACT_CHANNELS),
        "flags": _tokens(row, "flags", FLAGS),
    }


def _affinity(
    row: dict[str, str],
    line: int,
    file: str,
    catalog: Catalog,
    version_id: int,
    msisdns: set[str],
    seen: set[tuple[str, str]],
) -> dict[str, Any]:
    msisdn = _msisdn(row)
    if msisdn not in msisdns:
        raise _Reject("msisdn", f"{msisdn} is not in profiles.csv")
    offer_id = row["offer_id"]
    if catalog.offer(offer_id) is None:
        raise _Reject("offer_id", f"unknown offer {offer_id!r} (not in the catalog)")
    try:
        score = float(row["score"])
    except ValueError:
        raise _Reject("score", f"expected a number in [0, 1], got {row['score']!r}") from None
    if not 0.0 <= score <= 1.0:
        raise _Reject("score", f"must be within [0, 1], got {row['score']!r}")
    if (msisdn, offer_id) in seen:
        raise _Reject("offer_id", f"duplicate score for {msisdn} and {offer_id}")
    seen.add((msisdn, offer_id))
    return {"version_id": version_id, "msisdn": msisdn, "offer_id": offer_id, "score": score}


def _contact(row: dict[str, str], line: int, file: str, version_id: int) -> dict[str, Any]:
    msisdn = _msisdn(row)
    channel = row["channel"]
    if channel not in CONTACT_CHANNELS:
        raise _Reject("channel", f"unknown channel {channel!r}; expected {CONTACT_CHANNELS}")
    kind = row["kind"]
    if kind not in CONTACT_KINDS:
        raise _Reject("kind", f"unknown kind {kind!r}; expected one of {CONTACT_KINDS}")
    offer_id = row["offer_id"] or None
    if offer_id is not None and not _TOKEN.fullmatch(offer_id):
        raise _Reject("offer_id", f"{offer_id!r} is not an offer code")
    if kind == "cancelled" and offer_id is None:
        raise _Reject("offer_id", "a cancellation needs the offer (or service) cancelled")
    try:
        at = datetime.fromisoformat(row["at"])
    except ValueError:
        raise _Reject("at", f"expected an ISO 8601 time, got {row['at']!r}") from None
    if at.tzinfo is None:
        raise _Reject("at", f"needs a UTC offset (e.g. +08:00), got {row['at']!r}")
    return {
        "version_id": version_id,
        "msisdn": msisdn,
        "channel": channel,
        "offer_id": offer_id,
        "kind": kind,
        "at": at.astimezone(UTC),
    }


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


def _drop_retired(db: Database) -> None:
    with db.read() as session:
        retired = list(
            session.scalars(select(DataVersion.id).where(DataVersion.status == "retired"))
        )
    for version_id in retired:
        _delete_version_rows(db, version_id)


def _delete_version_rows(db: Database, version_id: int) -> None:
    for model in (ProfileRow, Affinity, WarehouseContact):
        with db.write() as session:
            session.execute(delete(model).where(model.version_id == version_id))


def _mark_failed(db: Database, version_id: int) -> None:
    try:
        with db.write() as session:
            session.execute(
                update(DataVersion).where(DataVersion.id == version_id).values(status="failed")
            )
    except Exception:  # the original error matters more; the next load cleans up anyway
        pass


_BOOLEAN = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def _read_sales(db: Database, path: Path, problems: _Problems) -> list[dict[str, Any]]:
    """Validate sales.csv whole; the updates are applied in the swap transaction."""
    file = path.name
    parsed: list[tuple[int, dict[str, Any]]] = []
    ignored: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in _rows(handle, file, SALES_COLUMNS, problems, ignored):
            try:
                parsed.append((line, _sale(row)))
            except _Reject as exc:
                problems.add(file, line, exc.column, exc.reason)
    ids = [record["id"] for _, record in parsed]
    known: set[int] = set()
    with db.read() as session:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            known.update(session.scalars(select(Subscription.id).where(Subscription.id.in_(chunk))))
    for line, record in parsed:
        if record["id"] not in known:
            problems.add(file, line, "subscription_id", f"no sale {record['id']} was recorded here")
    return [record for _, record in parsed]


def _sale(row: dict[str, str]) -> dict[str, Any]:
    try:
        subscription_id = int(row["subscription_id"])
    except ValueError:
        raise _Reject(
            "subscription_id", f"expected a whole number, got {row['subscription_id']!r}"
        ) from None
    status = row["status"]
    if status not in ("active", "cancelled"):
        raise _Reject("status", f"expected active or cancelled, got {status!r}")
    billed_text = row["billed"].lower()
    if billed_text and billed_text not in _BOOLEAN:
        raise _Reject("billed", f"expected yes or no, got {row['billed']!r}")
    cancelled_at: datetime | None = None
    if row["cancelled_at"]:
        try:
            cancelled_at = datetime.fromisoformat(row["cancelled_at"])
        except ValueError:
            raise _Reject(
                "cancelled_at", f"expected an ISO 8601 time, got {row['cancelled_at']!r}"
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
