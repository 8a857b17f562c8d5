"""Plain SQL on the session's own DBAPI connection, for the few queries on the decision path.

The ORM costs a few hundred microseconds a query; a decision makes several. These helpers run
inside the caller's transaction (same connection), return tuples, and turn SQLite's stored
timestamps back into aware UTC datetimes, as the ORM's UtcDateTime does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

__all__ = ["fetch", "utc"]

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
