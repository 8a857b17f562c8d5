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
            connection.execute(text("DROP TABLE model_estimates"))
        assert upgrade(db) == (None, head_revision())
        with db.reader.connect() as connection:
            assert inspect(connection).has_table("model_estimates")
            assert differences(connection) == []
    finally:
        db.dispose()
