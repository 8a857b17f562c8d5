"""Plain SQL on the session's own DBAPI connection, for the few queries on the decision path.

The ORM costs a few hundred microseconds a query; a decision makes several. These helpers run
inside the caller's transaction (same connection), return tuples, and turn SQLite's stored
timestamps back into aware UTC datetimes, as the ORM's UtcDateTime does.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

__all__ = [
    "RawReader",
    "ReadPool",
    "Reads",
    "as_stored",
    "fetch",
    "insert_rows",
    "insert_values",
    "is_sqlite",
    "pg_array_types",
    "utc",
]

_PG_SQL: dict[str, str] = {}


def _for(sql: str, *, sqlite: bool) -> str:
    """``sql`` written with ``?`` placeholders, as the backend's driver takes it."""
    if sqlite:
        return sql
    converted = _PG_SQL.get(sql)
    if converted is None:
        converted = _PG_SQL[sql] = sql.replace("?", "%s")
    return converted


class RawReader:
    """A DB-API connection for the decision path's reads, without a Session or an explicit
    transaction (``Database.raw_read``): the ORM session's begin/commit cost more than the
    indexed reads themselves. Both SQLite and PostgreSQL run each statement in autocommit
    here, so nothing is left to roll back when the connection goes back to its pool. Only for
    reads that need no snapshot shared between statements (one statement is one snapshot)."""

    def __init__(self, connection: Any, *, sqlite: bool) -> None:
        self.connection = connection
        self.sqlite = sqlite
        # One cursor for the connection's life: both drivers re-execute a cursor, and making
        # one per read is a measurable share of a read that takes a few microseconds.
        self._cursor = connection.cursor()

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self._cursor
        cursor.execute(_for(sql, sqlite=self.sqlite), params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def fetch_many(
        self, queries: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """Several reads in one round trip: PostgreSQL's pipeline mode sends them together and
        runs them in order; SQLite (in-process, no round trips) runs them one by one."""
        if self.sqlite:
            return [self.fetch(sql, params) for sql, params in queries]
        connection = getattr(self.connection, "driver_connection", self.connection)
        cursors = []
        try:
            with connection.pipeline():
                for sql, params in queries:
                    cursor = connection.cursor()
                    cursors.append(cursor)
                    cursor.execute(_for(sql, sqlite=False), tuple(params))
            return [list(cursor.fetchall()) for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()


class ReadPool:
    """Open DB-API connections for ``Database.raw_read``, outside SQLAlchemy's pool.

    A checkout from SQLAlchemy's pool (its connection proxy, events and reset-on-return)
    measured ~20 us, more than the indexed reads it served; the decision path makes two per
    request (the key check, the customer's data). Here a checkout pops a deque. Connections
    are opened on demand, at most ``limit`` in use at once (a caller past that waits up to
    ``timeout`` seconds), and at most ``keep`` kept idle. A connection that failed mid-read
    (the server restarted, the network broke) is closed, not put back.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        sqlite: bool,
        keep: int,
        limit: int | None,
        timeout: float,
        broken: tuple[type[BaseException], ...] = (),
        ping: bool = False,
    ) -> None:
        self._connect = connect
        self._ping = ping
        self.sqlite = sqlite
        self._keep = keep
        self._timeout = timeout
        self._broken = broken
        self._idle: deque[RawReader] = deque()
        # A server's connections are counted (threading's semaphore costs a few us a
        # checkout); local SQLite files are not.
        self._slots = threading.BoundedSemaphore(limit) if limit is not None else None

    @contextmanager
    def reader(self) -> Iterator[RawReader]:
        slots = self._slots
        if slots is not None and not slots.acquire(timeout=self._timeout):
            raise TimeoutError(
                f"no database connection free for {self._timeout:g} s "
                "(NEXTBEST_DB_POOL_SIZE + NEXTBEST_DB_MAX_OVERFLOW in use)"
            )
        try:
            reader = self._checkout()
            try:
                yield reader
            except self._broken:
                _close_quietly(reader)
                raise
            except BaseException:  # the caller's own error: the connection is fine
                self._give_back(reader)
                raise
            self._give_back(reader)
        finally:
            if slots is not None:
                slots.release()

    def _checkout(self) -> RawReader:
        try:
            reader = self._idle.pop()
        except IndexError:
            return RawReader(self._connect(), sqlite=self.sqlite)
        if self._ping:  # NEXTBEST_DB_PRE_PING: a round trip now rather than a failed read
            try:
                reader.fetch("SELECT 1", ())
            except self._broken:
                _close_quietly(reader)
                return RawReader(self._connect(), sqlite=self.sqlite)
        return reader

    def _give_back(self, reader: RawReader) -> None:
        if len(self._idle) >= self._keep or _is_broken(reader):
            _close_quietly(reader)
        else:
            self._idle.append(reader)

    def dispose(self) -> None:
        """Close the idle connections; the next read opens a new one (as SQLAlchemy's
        ``Engine.dispose`` leaves the engine usable)."""
        while self._idle:
            try:
                _close_quietly(self._idle.pop())
            except IndexError:  # taken by a reader meanwhile
                break


def _is_broken(reader: RawReader) -> bool:
    connection = reader.connection
    return bool(getattr(connection, "broken", False) or getattr(connection, "closed", False))


def _close_quietly(reader: RawReader) -> None:
    with suppress(Exception):  # already broken: nothing more to release
        reader.connection.close()


Reads = Session | RawReader


def is_sqlite(reads: Reads) -> bool:
    if isinstance(reads, RawReader):
        return reads.sqlite
    return reads.get_bind().dialect.name == "sqlite"


def fetch(session: Reads, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (written with ``?`` placeholders) in the session's transaction (or on
    a ``RawReader``'s connection)."""
    if isinstance(session, RawReader):
        return session.fetch(sql, params)
    statement = _for(sql, sqlite=is_sqlite(session))
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(statement, tuple(params))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def utc(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime, whichever backend stored it."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts keyed by column name, all with the same keys) into ``table`` in
    the session's transaction, in one executemany. Values are converted as the ORM would store
    them on SQLite (aware datetimes as naive UTC text)."""
    if not rows:
        return
    sqlite = is_sqlite(session)
    columns = tuple(rows[0])
    sql = _insert_sql(table.name, columns, sqlite=sqlite)
    values = [tuple(as_stored(row[c], sqlite=sqlite) for c in columns) for row in rows]
    connection = session.connection().connection
    cursor = connection.cursor()
    try:
        cursor.executemany(sql, values)
    except connection.dbapi_connection.IntegrityError as exc:  # type: ignore[union-attr]
        raise _as_integrity_error(sql, values, exc) from exc
    finally:
        cursor.close()


def _as_integrity_error(sql: str, params: Any, exc: Exception) -> IntegrityError:
    """The driver's unique or foreign-key violation as SQLAlchemy raises it from the ORM, so
    callers catch one type whichever path wrote the row."""
    return IntegrityError(sql, params, exc)


_INSERT_CACHE: dict[tuple[str, tuple[str, ...], bool], str] = {}


def _insert_sql(table: str, columns: tuple[str, ...], *, sqlite: bool) -> str:
    key = (table, columns, sqlite)
    sql = _INSERT_CACHE.get(key)
    if sql is None:
        marks = ", ".join("?" for _ in columns)
        sql = _for(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", sqlite=sqlite)
        _INSERT_CACHE[key] = sql
    return sql


def as_stored(value: Any, *, sqlite: bool) -> Any:
    """A value as the ORM stores it, to bind in plain SQL: on SQLite an aware datetime becomes
    naive UTC text (UtcDateTime), which is also how to compare against one."""
    if sqlite and isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


# Rows per statement for ``insert_values`` on PostgreSQL without column types (the server
# takes at most 65,535 parameters).
_VALUES_ROWS = 500
_UNNEST_SQL: dict[tuple[str, str, tuple[str, ...]], str] = {}


def pg_array_types(table: Table, columns: Sequence[str]) -> tuple[str, ...]:
    """PostgreSQL's type of each of ``columns`` of ``table``, as ``insert_values`` takes them:
    text for a VARCHAR(n), since a cast to VARCHAR(n) would cut a longer value short where
    the insert itself refuses it."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    types = (table.columns[c].type.compile(dialect=dialect) for c in columns)
    return tuple("TEXT" if t.startswith("VARCHAR") else t for t in types)


def insert_values(
    cursor: Any,
    head: str,
    rows: Sequence[Sequence[Any]],
    tail: str = "",
    *,
    sqlite: bool,
    pg_types: Sequence[str] | None = None,
) -> None:
    """``head VALUES (...) tail`` for every row, on a DB-API cursor. SQLite, in-process: an
    executemany. PostgreSQL with the columns' types (``pg_array_types``): one statement that
    inserts from one array per column (``unnest``), of the same text whatever the number of
    rows, so psycopg parses it once and the server prepares it once; a VALUES list of a
    placeholder per value was parsed anew in Python for every batch (psycopg caches only
    statements of up to 4,096 characters and 50 parameters): 15% of an outcome batch's time.
    Without types: a multi-row VALUES statement per 500 rows (psycopg's executemany sends a
    statement per row)."""
    if not rows:
        return
    width = len(rows[0])
    if sqlite:
        marks = f"({', '.join('?' for _ in range(width))})"
        sql = f"{head} VALUES {marks} {tail}"
        try:
            cursor.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise _as_integrity_error(sql, None, exc) from exc
        return
    import psycopg

    try:
        if pg_types is not None:
            key = (head, tail, tuple(pg_types))
            cached = _UNNEST_SQL.get(key)
            if cached is None:
                arrays = ", ".join(f"%s::{t}[]" for t in pg_types)
                cached = _UNNEST_SQL[key] = f"{head} SELECT * FROM unnest({arrays}) {tail}"
            sql = cached
            cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
            return
        marks = f"({', '.join('%s' for _ in range(width))})"
        for start in range(0, len(rows), _VALUES_ROWS):
            part = rows[start : start + _VALUES_ROWS]
            params = [value for row in part for value in row]
            sql = f"{head} VALUES {', '.join(marks for _ in part)} {tail}"
            cursor.execute(sql, params)
    except psycopg.IntegrityError as exc:  # as the ORM raises it: callers catch one type
        raise _as_integrity_error(sql, None, exc) from exc
