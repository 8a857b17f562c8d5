"""Alembic's environment: the models' metadata, and the connection to migrate.

``nextbest migrate`` hands over its own connection (config.attributes["connection"]); run from
the ``alembic`` command line instead, the database is NEXTBEST_DATABASE_URL.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from nextbest.migrations import include_name
from nextbest.storage import tables
from nextbest.storage.models import Base

assert tables.models is not None  # every table module registers its tables on import
config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """A column of one of our own types is written as the type it stores (UtcDateTime as
    DateTime(timezone=True)): a revision must not import code that may change later."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        return f"sa.{impl!r}"
    return False


OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "compare_type": True,
    "include_name": include_name,
    "render_item": render_item,
    # SQLite cannot ALTER most things: batch mode copies the table where it must.
    "render_as_batch": True,
}


def run(connection: Connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    from nextbest.settings import Settings

    context.configure(url=Settings.from_env().database_url, literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        run(given)
    else:
        from nextbest.settings import Settings
        from nextbest.storage.db import Database

        db = Database(Settings.from_env())
        try:
            with db.write_lock(), db.writer.connect() as connection:
                run(connection)
                connection.commit()
        finally:
            db.dispose()
