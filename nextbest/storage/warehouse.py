"""Reads of the active warehouse version: catalog, profile, affinities, contacts.

A version never changes once active, so everything read from it is cached under its id (a swap
can never serve a mix of versions); which version is active is re-read every few seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import msgspec
from cachetools import LRUCache
from sqlalchemy import select, text

from nextbest.catalog import Catalog, parse_catalog
from nextbest.records import ContactEvent, Profile
from nextbest.storage.db import Database
from nextbest.storage.models import DataVersion, ProfileRow
from nextbest.storage.raw import RawReader, Reads, as_stored, fetch, is_sqlite, utc

__all__ = [
    "ACTIVE_VERSION",
    "ActiveVersion",
    "CustomerData",
    "LiveHistory",
    "NoDataLoaded",
    "VersionRetired",
    "WarehouseReader",
    "live_history",
]


class NoDataLoaded(RuntimeError):
    """No extract has been loaded yet: run ``nextbest load DIR``."""


class VersionRetired(RuntimeError):
    """The version asked for was swapped out (and its rows dropped) since it was read as
    active; ask ``active()`` again, which now re-reads it."""


class ActiveVersion(msgspec.Struct, frozen=True):
    id: int
    catalog: Catalog
    loaded_at: datetime | None


class CustomerData(msgspec.Struct, frozen=True, gc=False):
    """What the cache keeps per subscriber; untracked by the collector, as Profile."""

    profile: Profile | None
    affinities: dict[str, float]
    contacts: tuple[ContactEvent, ...]


def _split(value: str) -> tuple[str, ...]:
    return tuple(value.split(";")) if value else ()


_PROFILE_SQL = (
    "SELECT msisdn, segment, brand, region, store_id, arpu, handset, subscriptions, lifecycle, "
    "channel_pref, flags FROM profiles WHERE version_id = ? AND msisdn = ?"
)
_AFFINITY_SQL = "SELECT offer_id, score FROM affinities WHERE version_id = ? AND msisdn = ?"
_CONTACTS_SQL = (
    "SELECT channel, kind, at, offer_id FROM warehouse_contacts WHERE version_id = ? AND msisdn = ?"
)
_STATUS_SQL = "SELECT status FROM data_versions WHERE id = ?"

# Everything a decision reads, in one statement: one snapshot (the version's status vouches
# for its rows, read at the same instant) and one round trip on PostgreSQL. Each part is a row
# kind (the first column) in twelve columns: kind, nine texts, a number, a timestamp.
_T9 = ", NULL" * 9
# PostgreSQL types a UNION's untyped NULLs pairwise, left to right: a NULL column in the first
# two parts would be text by the time the contacts' timestamps come (SQLite ignores the cast).
_NO_TIME = "CAST(NULL AS TIMESTAMP WITH TIME ZONE)"
_PART_PROFILE = (
    "SELECT 0, segment, brand, region, store_id, handset, subscriptions, lifecycle, "
    f"channel_pref, flags, arpu, {_NO_TIME} FROM profiles WHERE version_id = ? AND msisdn = ?"
)
_PART_AFFINITY = (
    f"SELECT 1, offer_id{', NULL' * 8}, score, NULL FROM affinities "
    "WHERE version_id = ? AND msisdn = ?"
)
_PART_CONTACT = (
    f"SELECT 2, channel, kind, offer_id{', NULL' * 6}, NULL, at FROM warehouse_contacts "
    "WHERE version_id = ? AND msisdn = ?"
)
_PART_STATUS = f"SELECT 3, status{', NULL' * 8}, NULL, NULL FROM data_versions WHERE id = ?"
_PART_OUTCOME = (
    f"SELECT 4, channel, outcome, offer_id{', NULL' * 6}, NULL, created_at FROM outcomes "
    "WHERE msisdn = ? AND created_at >= ?"
)
_PART_HELD = (
    f"SELECT 4, channel, 'accepted', offer_id{', NULL' * 6}, NULL, created_at "
    "FROM subscriptions WHERE msisdn = ? AND status IN ('pending', 'active')"
)
_PART_DND = f"SELECT 5{_T9}, NULL, NULL FROM dnd_numbers WHERE msisdn = ?"
_HISTORY_SQL = " UNION ALL ".join((_PART_OUTCOME, _PART_HELD, _PART_DND))
_CUSTOMER_AND_HISTORY_SQL = " UNION ALL ".join(
    (_PART_PROFILE, _PART_AFFINITY, _PART_CONTACT, _PART_STATUS, _HISTORY_SQL)
)
# Written out, not bound: SQLite uses the partial index one_active_version only for a literal
# 'active' (tests/test_explain.py).
ACTIVE_VERSION = text("data_versions.status = 'active'")


def profile_from_values(values: tuple[Any, ...]) -> Profile:
    """A profile from a profiles row's columns, in _PROFILE_SQL's order."""
    msisdn, segment, brand, region, store_id, arpu, handset, subs, lifecycle, prefs, flags = values
    return Profile(
        msisdn=msisdn,
        segment=segment,
        brand=brand,
        region=region,
        store_id=store_id,
        arpu=arpu,
        handset=_split(handset),
        subscriptions=_split(subs),
        lifecycle=dict(pair.split(":", 1) for pair in _split(lifecycle)),
        channel_pref=_split(prefs),
        flags=_split(flags),
    )


def profile_from_row(row: ProfileRow) -> Profile:
    lifecycle = dict(pair.split(":", 1) for pair in _split(row.lifecycle))
    return Profile(
        msisdn=row.msisdn,
        segment=row.segment,
        brand=row.brand,
        region=row.region,
        store_id=row.store_id,
        arpu=row.arpu,
        handset=_split(row.handset),
        subscriptions=_split(row.subscriptions),
        lifecycle=lifecycle,
        channel_pref=_split(row.channel_pref),
        flags=_split(row.flags),
    )


class LiveHistory(msgspec.Struct, frozen=True):
    """What happened here to one number: outcomes since a time, live subscriptions (as
    ``accepted``), and whether it is on the do-not-call list."""

    events: list[ContactEvent]
    on_dnd_list: bool


def live_history(reads: Reads, msisdn: str, since: datetime) -> LiveHistory:
    """What happened here to ``msisdn``: outcomes recorded since ``since``, every live
    subscription (held for good), the do-not-call list; in a session's transaction or on a
    ``RawReader``."""
    bound = as_stored(since, sqlite=is_sqlite(reads))
    return _history(fetch(reads, _HISTORY_SQL, (msisdn, bound, msisdn, msisdn)))


def _history(rows: list[tuple[Any, ...]]) -> LiveHistory:
    events: list[ContactEvent] = []
    on_list = False
    for row in rows:
        kind = row[0]
        if kind == 4:
            events.append(
                ContactEvent(
                    channel=row[1], kind=row[2], at=utc(row[11]), offer_id=row[3], source="nextbest"
                )
            )
        elif kind == 5:
            on_list = True
    return LiveHistory(events, on_list)


class WarehouseReader:
    def __init__(self, db: Database, *, cache_size: int, version_check_seconds: float) -> None:
        self.db = db
        self._check_every = version_check_seconds
        self._lock = threading.Lock()
        self._active: ActiveVersion | None = None
        self._checked_at = 0.0
        self._catalogs: dict[int, Catalog] = {}
        self._customers: LRUCache[tuple[int, str], CustomerData] = LRUCache(maxsize=cache_size)
        self.hits = 0
        self.misses = 0

    def active(self) -> ActiveVersion:
        now = time.monotonic()
        active = self._active
        if active is not None and now - self._checked_at < self._check_every:
            return active
        with self.db.read() as session:
            row = session.execute(
                select(DataVersion.id, DataVersion.activated_at).where(ACTIVE_VERSION)
            ).first()
            if row is None:
                raise NoDataLoaded("no warehouse extract is loaded: run `nextbest load DIR`")
            version_id, activated_at = row
            catalog = self._catalogs.get(version_id)
            if catalog is None:
                toml = session.scalar(
                    select(DataVersion.catalog_toml).where(DataVersion.id == version_id)
                )
                assert toml is not None
                catalog = parse_catalog(toml, f"catalog of data version {version_id}")
        with self._lock:
            self._catalogs = {version_id: catalog}
            self._active = ActiveVersion(version_id, catalog, activated_at)
            self._checked_at = now
            return self._active

    def customer_and_history(
        self, version_id: int, msisdn: str, since: datetime, reads: RawReader
    ) -> tuple[CustomerData, LiveHistory]:
        """The customer's warehouse data (cached per version) and what happened here since
        ``since`` (never cached), in one statement: the decision path's only read."""
        key = (version_id, msisdn)
        cached = self._customers.get(key)
        if cached is not None:
            self.hits += 1
            return cached, live_history(reads, msisdn, since)
        self.misses += 1
        v, m, bound = version_id, msisdn, as_stored(since, sqlite=reads.sqlite)
        # profile, affinities, contacts, status; outcomes, subscriptions, do-not-call list
        rows = reads.fetch(_CUSTOMER_AND_HISTORY_SQL, (v, m, v, m, v, m, v, m, bound, m, m))
        profile: Profile | None = None
        affinities: dict[str, float] = {}
        contacts: list[ContactEvent] = []
        status = None
        for row in rows:
            kind = row[0]
            if kind == 1:
                affinities[row[1]] = row[10]
            elif kind == 0:
                # In _PROFILE_SQL's order (arpu sits in the parts' number column).
                profile = profile_from_values((msisdn, *row[1:5], row[10], *row[5:10]))
            elif kind == 2:
                contacts.append(
                    ContactEvent(channel=row[1], kind=row[2], at=utc(row[11]), offer_id=row[3])
                )
            elif kind == 3:
                status = row[1]
        if status != "active":
            self._retired(version_id)
        data = CustomerData(profile, affinities, tuple(contacts))
        with self._lock:
            self._customers[key] = data
        return data, _history(rows)

    def _retired(self, version_id: int) -> None:
        with self._lock:
            if self._active is not None and self._active.id == version_id:
                self._active = None
        raise VersionRetired(f"data version {version_id} is no longer active")

    def customer(
        self, version_id: int, msisdn: str, reads: RawReader | None = None
    ) -> CustomerData:
        """``reads``: the caller's connection, when it has more to read (one pool checkout and,
        on PostgreSQL, one rollback round trip fewer than a connection of its own)."""
        key = (version_id, msisdn)
        cached = self._customers.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        # No shared snapshot needed: a version's status only goes from active to retired, and
        # its rows are dropped only after that, so the status read last vouches for the rest.
        queries: list[tuple[str, tuple[Any, ...]]] = [
            (_PROFILE_SQL, (version_id, msisdn)),
            (_AFFINITY_SQL, (version_id, msisdn)),
            (_CONTACTS_SQL, (version_id, msisdn)),
            (_STATUS_SQL, (version_id,)),  # read last (see above)
        ]
        if reads is None:
            with self.db.raw_read() as own:
                rows, affinity_rows, contact_rows, status_rows = own.fetch_many(queries)
        else:
            rows, affinity_rows, contact_rows, status_rows = reads.fetch_many(queries)
        profile = profile_from_values(rows[0]) if rows else None
        affinities = dict(affinity_rows)
        contacts = tuple(
            ContactEvent(channel=channel, kind=kind, at=utc(at), offer_id=offer_id)
            for channel, kind, at, offer_id in contact_rows
        )
        status = status_rows[0][0] if status_rows else None
        if status != "active":
            with self._lock:
                if self._active is not None and self._active.id == version_id:
                    self._active = None
            raise VersionRetired(f"data version {version_id} is no longer active")
        data = CustomerData(profile, affinities, contacts)
        with self._lock:
            self._customers[key] = data
        return data
