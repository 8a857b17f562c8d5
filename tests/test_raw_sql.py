"""The plain-SQL insert of the batched writers on PostgreSQL: rows sent as one array per column
(``unnest``) land exactly as a VALUES list would put them, and a value too long for its column
is refused, not cut to fit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import select

from nextbest.impressions import DECISION_COLUMNS
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.raw import insert_values, pg_array_types

pytestmark = pytest.mark.postgres
AT = datetime(2026, 11, 24, 2, 30, 15, 123456, tzinfo=UTC)
HEAD = f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)})"
TYPES = pg_array_types(Decision.__table__, DECISION_COLUMNS)  # type: ignore[arg-type]


def _row(decision_id: str, **values: object) -> tuple[object, ...]:
    row: dict[str, object] = {
        "id": decision_id,
        "created_at": AT,
        "msisdn": "13900000001",
        "channel": "store",
        "user_id": "clerk-ana",
        "role": "clerk",
        "store_id": None,
        "known": True,
        "segment": "youth",
        "data_version": 3,
        "catalog_hash": "abc",
        "events": "",
        "customer_flags": "",
        "customer_rule": None,
        "campaign_id": None,
        "experiment": None,
        "arm": None,
        "offers": '{"crbt_open": [1, 0.5, 0.2, null]}',
        "key_id": 7,
        "team_id": None,
        **values,
    }
    return tuple(row[c] for c in DECISION_COLUMNS)


def _stored(db: Database) -> list[tuple[object, ...]]:
    with db.read() as session:
        rows = session.scalars(select(Decision).order_by(Decision.id)).all()
        return [tuple(getattr(r, c) for c in DECISION_COLUMNS) for r in rows]


@pytest.fixture
def pg(pg_database: str) -> Iterator[Database]:
    db = Database(Settings(database_url=pg_database))
    db.create_schema()
    yield db
    db.dispose()


def test_arrays_store_what_a_values_list_stores(pg: Database) -> None:
    rows = [
        _row("a1"),
        _row("a2", created_at=AT + timedelta(seconds=1), known=False, store_id="NJ-0001"),
        _row("a3", segment=None, data_version=None, key_id=None, team_id="team-1"),
    ]
    with pg.write() as session, session.connection().connection.cursor() as cursor:
        insert_values(cursor, HEAD, rows, sqlite=False, pg_types=TYPES)
    by_arrays = _stored(pg)
    with pg.write() as session:
        session.execute(Decision.__table__.delete())
        with session.connection().connection.cursor() as cursor:
            insert_values(cursor, HEAD, rows, sqlite=False)  # a VALUES list
    assert by_arrays == _stored(pg) == [tuple(r) for r in rows]


def test_a_value_too_long_for_its_column_is_refused_not_cut(pg: Database) -> None:
    rows = [_row("b1"), _row("b2", channel="x" * 17)]  # channel is VARCHAR(16)
    with (
        pytest.raises(psycopg.errors.StringDataRightTruncation),
        pg.write() as session,
        session.connection().connection.cursor() as cursor,
    ):
        insert_values(cursor, HEAD, rows, sqlite=False, pg_types=TYPES)
    assert _stored(pg) == []  # nothing of the batch
