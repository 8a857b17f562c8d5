"""Schema migrations: `alembic upgrade head` on an empty database gives exactly the models'
schema, on SQLite and PostgreSQL; `nextbest migrate` adopts a database create_all made."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from nextbest.migrations import (
    config,
    current_revision,
    differences,
    head_revision,
    upgrade,
)
from nextbest.settings import Settings
from nextbest.storage.db import Database

FIX = (
    "the models and the migrations differ; run: nextbest migrate --autogenerate "
    "'what changed' (alembic revision --autogenerate), read the new file in "
    "nextbest/migrations/versions/, and commit it with the models. Differences:\n"
)


def test_upgrade_head_on_an_empty_database_gives_exactly_the_models(settings: Settings) -> None:
    db = Database(settings)
    try:
        with db.write_lock(), db.writer.connect() as connection:
            with connection.begin():
                command.upgrade(config(connection), "head")  # = alembic upgrade head
            found = differences(connection)
            assert current_revision(connection) == head_revision()
        assert not found, FIX + "\n".join(f"  {item}" for item in found)
    finally:
        db.dispose()


def test_downgrade_to_nothing_and_up_again(settings: Settings) -> None:
    db = Database(settings)
    try:
        upgrade(db)
        with db.write_lock(), db.writer.connect() as connection:
            with connection.begin():
                command.downgrade(config(connection), "base")
            left = set(inspect(connection).get_table_names()) - {"alembic_version"}
        assert left == set()
        assert upgrade(db) == (None, head_revision())
    finally:
        db.dispose()


def test_create_schema_stamps_a_new_database_so_migrate_has_nothing_to_do(
    settings: Settings,
) -> None:
    db = Database(settings)
    try:
        db.create_schema()
        assert upgrade(db) == (head_revision(), head_revision())
        with db.reader.connect() as connection:
            assert differences(connection) == []
    finally:
        db.dispose()


def test_migrate_adopts_a_database_made_before_migrations(settings: Settings) -> None:
    db = Database(settings)
    try:
        db.create_schema()
        # As an earlier release left it: no revision, and a table it did not have yet.
        with db.write_lock(), db.writer.connect() as connection, connection.begin():
            connection.execute(text("DROP TABLE alembic_version"))
            connection.execute(text("DROP TABLE web_sessions"))
        assert upgrade(db) == (None, head_revision())
        with db.reader.connect() as connection:
            assert inspect(connection).has_table("web_sessions")
            assert differences(connection) == []
    finally:
        db.dispose()


_AT = "2026-11-20 09:00:00"


def test_0002_moves_shown_offers_and_the_trail_into_the_decisions_and_back(
    settings: Settings,
) -> None:
    """A database at 0001 with decisions, their offers, an estimate before learning and the
    trail rows: after 0002 each decision carries them; downgraded, the tables hold them again."""
    db = Database(settings)
    at = _AT if db.is_sqlite else f"{_AT}+00"
    rows = [
        "INSERT INTO decisions (id, created_at, msisdn, channel, user_id, role, store_id, known, "
        "segment, data_version, catalog_hash, events, customer_flags) VALUES "
        f"('d1', '{at}', '13900000001', 'store', 'clerk-1', 'clerk', 'NJ-0001', true, 'seg', 1, "
        f"'h', '', ''), ('d2', '{at}', '13900000002', 'store', 'clerk-1', 'clerk', 'NJ-0001', "
        "false, NULL, 1, 'h', '', '')",
        "INSERT INTO decision_offers (decision_id, offer_id, rank, score, probability) VALUES "
        "('d1', 'crbt_open', 1, 2.5, 0.5), ('d1', 'sms_50', 2, 1.25, 0.25)",
        "INSERT INTO model_estimates (decision_id, offer_id, probability) VALUES "
        "('d1', 'sms_50', 0.4)",
        "INSERT INTO lookups (at, msisdn, channel, decision_id, known, key_id, user_id, role, "
        f"store_id, team_id) VALUES ('{at}', '13900000001', 'store', 'd1', true, 7, 'clerk-1', "
        f"'clerk', 'NJ-0001', 'T1'), ('{at}', '13900000002', 'store', 'd2', false, 7, "
        "'clerk-1', 'clerk', 'NJ-0001', 'T1')",
    ]
    try:
        with db.write_lock(), db.writer.connect() as connection:
            with connection.begin():
                command.upgrade(config(connection), "0001")
                for sql in rows:
                    connection.execute(text(sql))
                command.upgrade(config(connection), "0002")
                moved = connection.execute(
                    text("SELECT id, offers, key_id, team_id FROM decisions ORDER BY id")
                ).all()
            with connection.begin():
                command.downgrade(config(connection), "0001")
                back = [
                    connection.execute(text(sql)).all()
                    for sql in (
                        "SELECT decision_id, offer_id, rank, score, probability "
                        "FROM decision_offers ORDER BY offer_id",
                        "SELECT decision_id, offer_id, probability FROM model_estimates",
                        "SELECT decision_id, key_id, team_id FROM lookups ORDER BY decision_id",
                    )
                ]
    finally:
        db.dispose()
    from nextbest.storage.shown import ShownOffer, decode_offers

    assert [(r[0], decode_offers(r[1]), r[2], r[3]) for r in moved] == [
        (
            "d1",
            {"crbt_open": ShownOffer(1, 2.5, 0.5), "sms_50": ShownOffer(2, 1.25, 0.25, 0.4)},
            7,
            "T1",
        ),
        ("d2", {}, 7, "T1"),
    ]
    assert back == [
        [("d1", "crbt_open", 1, 2.5, 0.5), ("d1", "sms_50", 2, 1.25, 0.25)],
        [("d1", "sms_50", 0.4)],
        [("d1", 7, "T1"), ("d2", 7, "T1")],
    ]
