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

__all__ = ["fetch", "insert_rows", "utc"]

_SQL_CACHE: dict[tuple[str, str], str] = {}


def _dialect_sql(session: Session, sql: str) -> tuple[str, bool]:
    name = session.get_bind().dialect.name
    key = (name, sql)
    converted = _SQL_CACHE.get(key)
    if converted is None:
        converted = sql if name == "sqlite" else sql.replace("?", "%s")
        _SQL_CACHE[key] = converted
    return converted, name == "sqlite"


def fetch(session: Session, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (written with ``?`` placeholders) in the session's transaction."""
    statement, _ = _dialect_sql(session, sql)
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


_INSERT_CACHE: dict[tuple[str, str, tuple[str, ...]], str] = {}


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts keyed by column name, all with the same keys) into ``table`` in
    the session's transaction, in one executemany. Values are converted as the ORM would store
    them on SQLite (aware datetimes as naive UTC text)."""
    if not rows:
        return
    name = session.get_bind().dialect.name
    columns = tuple(rows[0])
    key = (name, table.name, columns)
    sql = _INSERT_CACHE.get(key)
    if sql is None:
        marks = ", ".join("?" if name == "sqlite" else "%s" for _ in columns)
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
        _INSERT_CACHE[key] = sql
    sqlite = name == "sqlite"
    values = [tuple(_value(row[c], sqlite) for c in columns) for row in rows]
    cursor = session.connection().connection.cursor()
    try:
        cursor.executemany(sql, values)
    finally:
        cursor.close()


def _value(value: Any, sqlite: bool) -> Any:
    if sqlite and isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
