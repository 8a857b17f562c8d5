"""Plain SQL on the session's own DBAPI connection, for the few queries on the decision path.

The ORM costs a few hundred microseconds a query; a decision makes several. These helpers run
inside the caller's transaction (same connection), return tuples, and turn SQLite's stored
timestamps back into aware UTC datetimes, as the ORM's UtcDateTime does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

__all__ = ["RawReader", "Reads", "fetch", "insert_returning_id", "insert_rows", "is_sqlite", "utc"]

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
    """A pooled DB-API connection for the decision path's reads, without a Session or an
    explicit transaction (``Database.raw_read``): the ORM session's begin/commit cost more
    than the indexed reads themselves. Both SQLite and PostgreSQL run each statement in
    autocommit here, so nothing is left to roll back when the connection returns to the pool.
    Only for reads that need no snapshot shared between statements."""

    def __init__(self, connection: Any, *, sqlite: bool) -> None:
        self.connection = connection
        self.sqlite = sqlite

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        statement = _for(sql, sqlite=self.sqlite)
        cursor = self.connection.cursor()
        try:
            cursor.execute(statement, tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

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
    values = [tuple(_value(row[c], sqlite) for c in columns) for row in rows]
    cursor = session.connection().connection.cursor()
    try:
        cursor.executemany(sql, values)
    finally:
        cursor.close()


def insert_returning_id(session: Session, table: Table, row: dict[str, Any]) -> int:
    """INSERT one row as ``insert_rows`` does; its generated ``id`` (SQLite 3.35+ and
    PostgreSQL both take RETURNING)."""
    sqlite = is_sqlite(session)
    columns = tuple(row)
    sql = _insert_sql(table.name, columns, sqlite=sqlite) + " RETURNING id"
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql, tuple(_value(row[c], sqlite) for c in columns))
        generated = cursor.fetchone()
        assert generated is not None  # RETURNING always answers a row
        return int(generated[0])
    finally:
        cursor.close()


_INSERT_CACHE: dict[tuple[str, tuple[str, ...], bool], str] = {}


def _insert_sql(table: str, columns: tuple[str, ...], *, sqlite: bool) -> str:
    key = (table, columns, sqlite)
    sql = _INSERT_CACHE.get(key)
    if sql is None:
        marks = ", ".join("?" for _ in columns)
        sql = _for(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", sqlite=sqlite)
        _INSERT_CACHE[key] = sql
    return sql


def _value(value: Any, sqlite: bool) -> Any:
    if sqlite and isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
