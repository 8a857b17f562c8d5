"""The database handle: engines, SQLite pragmas, and read/write sessions.

SQLite serves many readers and one writer: write transactions start with BEGIN IMMEDIATE so
two writers queue on the lock instead of failing half-way; reads never block in WAL mode.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from nextbest.settings import Settings
from nextbest.storage import tables
from nextbest.storage.models import Base
from nextbest.storage.raw import RawReader

__all__ = ["Database"]


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        if self.is_sqlite:
            path = settings.sqlite_path()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.reader = self._sqlite_engine(settings, immediate=False)
            self.writer = self._sqlite_engine(settings, immediate=True)
            # Impressions (decisions served) need not wait for an fsync: WAL keeps them
            # through a process crash; the next durable commit syncs them too.
            self.fast_writer = self._sqlite_engine(settings, immediate=True, synchronous="NORMAL")
        else:
            url = self.url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            recycle = settings.db_pool_recycle_seconds
            self.reader = create_engine(
                url,
                echo=settings.sql_echo,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_timeout=settings.db_pool_timeout_seconds,
                pool_recycle=int(recycle) if recycle > 0 else -1,
                # A ping before every checkout is a round trip per read; off by default: a
                # connection found dead fails its request and SQLAlchemy renews the pool.
                pool_pre_ping=settings.db_pre_ping,
                # Names the node's connections in pg_stat_activity.
                connect_args={"application_name": "nextbest"},
            )
            self.writer = self.reader
            self.fast_writer = self.reader
        sqlite_path = settings.sqlite_path() if self.is_sqlite else None
        self._lock_path = f"{sqlite_path}.writelock" if sqlite_path is not None else None
        self._thread_lock = threading.Lock()
        self._read = sessionmaker(self.reader, expire_on_commit=False)
        self._write = sessionmaker(self.writer, expire_on_commit=False)
        self._fast_write = sessionmaker(self.fast_writer, expire_on_commit=False)

    @staticmethod
    def _sqlite_engine(
        settings: Settings, *, immediate: bool, synchronous: str | None = None
    ) -> Engine:
        engine = (
            create_engine(
                settings.database_url,
                echo=settings.sql_echo,
                # One connection per thread, kept: opening a SQLite file is cheap but not free.
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size * 2,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            if settings.sqlite_path() is not None
            else create_engine(settings.database_url, poolclass=NullPool)
        )
        synchronous = synchronous or settings.sqlite_synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA mmap_size=1073741824")
            cursor.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    def create_schema(self) -> None:
        """Tests, the demo, single-node starts: create the tables straight from the models.

        A database created here from nothing is stamped with the migrations' head, so
        ``nextbest migrate`` takes it from there; one the migrations manage is left to them
        (refused with "run nextbest migrate" if it is behind). See nextbest/migrations.
        """
        assert tables.models is not None  # every table module is imported
        assert Base.metadata is not None
        from nextbest.migrations import prepare_schema

        prepare_schema(self)

    def has_schema(self) -> bool:
        return inspect(self.reader).has_table("data_versions")

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def raw_read(self) -> Iterator[RawReader]:
        """Reads on a pooled connection without a Session (see ``RawReader``)."""
        connection = self.reader.raw_connection()
        if self.is_sqlite:  # reads run outside a transaction already (isolation_level None)
            try:
                yield RawReader(connection, sqlite=True)
            finally:
                connection.close()  # back to the pool
            return
        # PostgreSQL: in autocommit each read is its own statement, so returning the connection
        # needs no ROLLBACK round trip (a third of a cached decision's round trips). Setting
        # the flag is client-side; it is cleared before the pool hands the connection to a
        # Session, which needs real transactions.
        driver = connection.driver_connection
        try:
            driver.autocommit = True  # type: ignore[union-attr]
            yield RawReader(connection, sqlite=False)
        finally:
            try:
                driver.autocommit = False  # type: ignore[union-attr]
            except Exception:  # the connection broke mid-read: the pool must not keep it
                connection.invalidate()
            connection.close()

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Session]:
        """One transaction: committed on normal exit, rolled back on any exception.

        ``durable=False`` is for records whose loss in a power cut (not a process crash) is
        acceptable, such as the impression of a decision: the commit does not wait for the
        disk (SQLite synchronous=NORMAL in WAL mode, PostgreSQL synchronous_commit=off).
        Anything a person was told was recorded (an outcome) is written durably.
        """
        factory = self._write if durable else self._fast_write
        with self.write_lock(), factory() as session, session.begin():
            if not durable and not self.is_sqlite:
                session.connection().exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield session

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """SQLite: queue writers on a lock that wakes the next one at once.

        SQLite's own busy handler makes a waiting writer sleep 1, 2, 5, 10... ms between
        tries; under concurrent requests those sleeps dominate. Writers of this process queue
        on a thread lock and writers of other processes on an flock of a side file, both of
        which hand over immediately, so BEGIN IMMEDIATE finds the database free.
        PostgreSQL needs none of this.
        """
        if self._lock_path is None:
            yield
            return
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def dispose(self) -> None:
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()
        if self.fast_writer is not self.reader:
            self.fast_writer.dispose()

    def sqlite_file(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.url.split(":///", 1)[1])
