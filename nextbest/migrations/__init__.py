"""Schema migrations (Alembic), run by ``nextbest migrate`` on PostgreSQL and SQLite alike.

The revisions live in ``versions/``; ``env.py`` compares against every table registered in
nextbest/storage/tables.py. A change to the models needs a revision:

    nextbest migrate --autogenerate "what changed"   # = alembic revision --autogenerate

which upgrades a scratch SQLite database to the current head, compares it with the models and
writes the difference as a new revision (read it before committing it). tests/test_migrations.py
fails while the models and the revisions disagree.

``Database.create_schema()`` (tests, the demo) still creates tables straight from the models
and stamps a database it created from nothing with the head revision, so ``nextbest migrate``
can take any database from there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from nextbest.storage import tables
from nextbest.storage.models import Base

__all__ = [
    "HERE",
    "SchemaBehind",
    "autogenerate",
    "config",
    "current_revision",
    "differences",
    "head_revision",
    "include_name",
    "prepare_schema",
    "run_command",
    "upgrade",
]

HERE = Path(__file__).resolve().parent
_HEAD: list[str | None] = []
# Tables that are not the models' (Alembic's own is skipped by Alembic itself).
_NOT_OURS = re.compile(r"^sqlite_")


class SchemaBehind(RuntimeError):
    """The database is at an older revision than this release: run ``nextbest migrate``."""


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision in ``versions/`` (read once per process)."""
    if not _HEAD:
        _HEAD.append(ScriptDirectory.from_config(config()).get_current_head())
    return _HEAD[0]


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """What the comparison looks at: the models' tables, not the database's own."""
    return not (type_ == "table" and name is not None and _NOT_OURS.match(name))


def differences(connection: Connection) -> list[Any]:
    """What would have to change for the database to match the models (empty: nothing)."""
    assert tables.models is not None  # every table module is imported
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "include_name": include_name, "render_as_batch": True},
    )
    return list(compare_metadata(context, Base.metadata))


@contextmanager
def _connection(db: Any) -> Iterator[Connection]:
    """One transaction on ``db``'s writer (on SQLite, holding the write lock)."""
    with db.write_lock(), db.writer.connect() as connection, connection.begin():
        yield connection


def upgrade(db: Any, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring ``db`` to ``revision``; returns (before, after).

    A database made before migrations existed (tables, no revision: ``create_schema``'s
    create_all of an earlier release) first gets what create_all adds to it, then is stamped
    as head: it has this release's tables, and the migrations take it from there.
    """
    with _connection(db) as connection:
        before = current_revision(connection)
        legacy = before is None and inspect(connection).has_table("data_versions")
        if legacy:
            assert tables.models is not None
            Base.metadata.create_all(connection)
            command.stamp(config(connection), "head")
        else:
            command.upgrade(config(connection), revision)
        after = current_revision(connection)
    return before, after


def prepare_schema(db: Any) -> None:
    """``Database.create_schema()``: create_all on a database migrations do not manage yet
    (a new one is then stamped as head); leave one they manage alone, and refuse one that is
    behind this release (its nodes would fail on missing columns): run ``nextbest migrate``."""
    with _connection(db) as connection:
        revision = current_revision(connection)
        if revision is None:
            fresh = not inspect(connection).has_table("data_versions")
            assert tables.models is not None
            Base.metadata.create_all(connection)
            if fresh and head_revision() is not None:
                MigrationContext.configure(connection).stamp(
                    ScriptDirectory.from_config(config()), "head"
                )
            return
        head = head_revision()
        if revision == head:
            return
        script = ScriptDirectory.from_config(config())
        try:
            known = script.get_revision(revision) is not None
        except Exception:  # alembic raises on an id it does not know
            known = False
        if known:
            raise SchemaBehind(
                f"the database schema is at revision {revision}, this release needs {head}: "
                "run `nextbest migrate`"
            )
        # A newer release migrated it (a rolling upgrade): its schema is a superset of ours.


def autogenerate(message: str) -> Path:
    """Write a new revision with what the models have and the migrations lack; returns it.

    Compared on a scratch SQLite database brought to the current head."""
    from nextbest.settings import Settings
    from nextbest.storage.db import Database

    versions = HERE / "versions"
    numbers = [
        int(m.group(1)) for p in versions.glob("*.py") if (m := re.match(r"(\d{4})_", p.name))
    ]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(Settings(database_url=f"sqlite:///{scratch}/scratch.db"))
        try:
            with _connection(db) as connection:
                command.upgrade(config(connection), "head")
            with db.writer.connect() as connection:
                script = command.revision(
                    config(connection), message=message, autogenerate=True, rev_id=rev_id
                )
        finally:
            db.dispose()
    scripts = script if isinstance(script, list) else [script]
    assert scripts and scripts[0] is not None
    path = Path(scripts[0].path)
    beside = Path(sys.executable).parent / "ruff"
    ruff = str(beside) if beside.is_file() else shutil.which("ruff")
    if ruff is not None:  # the revision follows the project's style like any other module
        for step in (["format"], ["check", "--fix"], ["format"]):
            subprocess.run([ruff, *step, "--quiet", str(path)], check=False, capture_output=True)
    _HEAD.clear()
    return path


def run_command(settings: Any, *, check: bool = False, autogenerate: str | None = None) -> int:
    """``nextbest migrate``: upgrade to head; ``--check``: compare only; ``--autogenerate``."""
    from nextbest.storage.db import Database

    if autogenerate is not None:
        path = globals()["autogenerate"](autogenerate)
        print(f"wrote {path}: read it, then commit it with the models' change")
        return 0
    db = Database(settings)
    try:
        if check:
            with db.reader.connect() as connection:
                found = differences(connection)
                revision = current_revision(connection)
            if found:
                print(f"the database (revision {revision}) differs from the models:")
                for item in found:
                    print(f"  {item}")
                return 1
            print(f"the database (revision {revision}) matches the models")
            return 0
        before, after = upgrade(db)
    finally:
        db.dispose()
    if before == after:
        print(f"schema is up to date (revision {after})")
    elif before is None:
        print(f"schema created or adopted at revision {after}")
    else:
        print(f"schema upgraded from revision {before} to {after}")
    return 0
