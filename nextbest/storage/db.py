"""The database handle: engines, SQLite pragmas, and read/write sessions.

SQLite serves many readers and one writer: write transactions start with BEGIN IMMEDIATE so
two writers queue on the lock instead of failing half-way; reads never block in WAL mode.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
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
from nextbest.storage.raw import RawReader, ReadPool

__all__ = ["Database"]

# Every SQLite connection of a process: wait for a busy database rather than fail, and a page
# cache of 64 MB.
_CONNECTION_PRAGMAS = (
    "PRAGMA busy_timeout=30000",
    "PRAGMA cache_size=-65536",
)
# The ORM's readers (reports, screens, loads) also map the file into memory: long scans
# without a copy. Not the decision path's reads and the writers: a connection unmaps the whole
# file at the start of every transaction after another connection wrote (SQLite's pager), and
# under load that is every transaction: munmap was 14% of the decision's read (py-spy
# --native), and without the mapping one worker serves 5-8% more decisions/s.
_MMAP_PRAGMA = "PRAGMA mmap_size=1073741824"
# Impressions: committed without waiting for the disk, the WAL left to the checkpointer.
_FAST_WRITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA wal_autocheckpoint=0",
)
# ``raw_read``'s connections only read: SQLite refuses a write on them.
_READ_PRAGMAS = (*_CONNECTION_PRAGMAS, "PRAGMA query_only=ON")


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
            # Its commits leave the WAL to the checkpointer (``checkpoint``): an automatic
            # checkpoint would fsync inside the commit, and the batches are committed on the
            # event loop (nextbest/impressions.py).
            self.fast_writer = self._sqlite_engine(
                settings, immediate=True, synchronous="NORMAL", checkpoint=False
            )
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
        self._raw = self._read_pool(settings)
        self._lock_path = f"{sqlite_path}.writelock" if sqlite_path is not None else None
        self._thread_lock = threading.Lock()
        self._lock_file: tuple[int, int] | None = None  # (process id, descriptor)
        self._raw_write_connection: sqlite3.Connection | None = None
        self._read = sessionmaker(self.reader, expire_on_commit=False)
        self._write = sessionmaker(self.writer, expire_on_commit=False)
        self._fast_write = sessionmaker(self.fast_writer, expire_on_commit=False)

    def _read_pool(self, settings: Settings) -> ReadPool:
        """Connections for ``raw_read``: SQLite files opened read-only for queries (the same
        pragmas as the engine's), PostgreSQL in autocommit; anything else (an in-memory
        SQLite database) borrows the engine's connections."""
        limit = settings.db_pool_size + settings.db_max_overflow
        timeout = settings.db_pool_timeout_seconds
        path = settings.sqlite_path()
        if self.is_sqlite and path is not None:

            def connect_sqlite() -> sqlite3.Connection:
                connection = sqlite3.connect(
                    path, timeout=30, isolation_level=None, check_same_thread=False
                )
                for pragma in _READ_PRAGMAS:
                    connection.execute(pragma)
                return connection

            return ReadPool(
                connect_sqlite,
                sqlite=True,
                keep=settings.db_pool_size,
                limit=None,  # a local file: no server's connections to spare
                timeout=timeout,
                broken=(sqlite3.OperationalError, sqlite3.InterfaceError, sqlite3.ProgrammingError),
            )
        if not self.is_sqlite:
            import psycopg

            conninfo = "postgresql://" + self.url.split("://", 1)[1]

            def connect_pg() -> psycopg.Connection[tuple[object, ...]]:
                return psycopg.connect(
                    conninfo,
                    autocommit=True,
                    application_name="nextbest",
                    # Only reads: the server refuses a write on these connections.
                    options="-c default_transaction_read_only=on",
                )

            return ReadPool(
                connect_pg,
                sqlite=False,
                keep=settings.db_pool_size,
                limit=limit,
                timeout=timeout,
                broken=(psycopg.OperationalError, psycopg.InterfaceError),
                ping=settings.db_pre_ping,
            )
        return ReadPool(
            self.reader.raw_connection, sqlite=True, keep=0, limit=None, timeout=timeout
        )

    @staticmethod
    def _sqlite_engine(
        settings: Settings,
        *,
        immediate: bool,
        synchronous: str | None = None,
        checkpoint: bool = True,
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
            for pragma in _CONNECTION_PRAGMAS:
                cursor.execute(pragma)
            if not immediate:
                cursor.execute(_MMAP_PRAGMA)
            if not checkpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
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
        """Reads on a connection of their own pool, without a Session (see ``RawReader`` and
        ``ReadPool``). Each statement runs in autocommit: SQLite outside any transaction,
        PostgreSQL with no ROLLBACK round trip when the connection goes back."""
        with self._raw.reader() as reader:
            yield reader

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Session]:
        """One transaction: committed on normal exit, rolled back on any exception.

        ``durable=False`` is for records whose loss in a power cut (not a process crash) is
        acceptable, such as the impression of a decision: the commit does not wait for the
        disk (SQLite synchronous=NORMAL in WAL mode, PostgreSQL synchronous_commit=off).
        Anything a person was told was recorded (an outcome) is written durably.
        """
        with self.write_lock(), self._transaction(durable) as session:
            yield session

    @contextmanager
    def try_write(self, *, durable: bool = True) -> Iterator[Session | None]:
        """``write``, or None at once if another writer holds SQLite's write lock (a caller
        on the event loop must not wait for it: it tries again a moment later)."""
        if not self._try_write_lock():
            yield None
            return
        try:
            with self._transaction(durable) as session:
                yield session
        finally:
            self._write_unlock()

    @contextmanager
    def try_raw_write(self) -> Iterator[sqlite3.Cursor | None]:
        """SQLite: ``try_write(durable=False)`` on a DB-API cursor of this process's own
        connection, without an ORM session (whose begin and commit cost more than a small
        batch of inserts). None at once if another writer holds the lock."""
        assert self.is_sqlite, "SQLite only"
        if not self._try_write_lock():
            yield None
            return
        try:
            connection = self._raw_writer()
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                if connection.in_transaction:
                    connection.rollback()
                raise
            cursor.execute("COMMIT")
        finally:
            self._write_unlock()

    def _raw_writer(self) -> sqlite3.Connection:
        connection = self._raw_write_connection
        if connection is None:
            path = self.sqlite_file()
            assert path is not None
            connection = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            for pragma in (*_CONNECTION_PRAGMAS, *_FAST_WRITE_PRAGMAS):
                connection.execute(pragma)
            self._raw_write_connection = connection
        return connection

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[Session]:
        factory = self._write if durable else self._fast_write
        with factory() as session, session.begin():
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
            fcntl.flock(self._lock_fd(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd(), fcntl.LOCK_UN)

    def _try_write_lock(self) -> bool:
        if self._lock_path is None:
            return True
        if not self._thread_lock.acquire(blocking=False):
            return False
        try:
            fcntl.flock(self._lock_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._thread_lock.release()
            return False
        return True

    def _write_unlock(self) -> None:
        if self._lock_path is not None:
            fcntl.flock(self._lock_fd(), fcntl.LOCK_UN)
            self._thread_lock.release()

    def _lock_fd(self) -> int:
        """The lock file, opened once per process (under the thread lock): an flock belongs to
        the open file, so every writer of this process shares it, queued by the thread lock.
        Reopened in a forked child, which must not share its parent's."""
        pid = os.getpid()
        if self._lock_file is None or self._lock_file[0] != pid:
            assert self._lock_path is not None
            self._lock_file = (pid, os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644))
        return self._lock_file[1]

    def checkpoint(self, min_wal_bytes: int = 0) -> bool:
        """SQLite: copy the WAL back into the database file (PASSIVE: never waits for readers
        or writers) if it has grown past ``min_wal_bytes``; True if one ran. The writers of
        impressions leave this to a thread (``Checkpointer``)."""
        path = self.sqlite_file()
        if path is None:
            return False
        try:
            size = os.path.getsize(f"{path}-wal")
        except OSError:
            return False
        if size <= min_wal_bytes:
            return False
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()
        return True

    def dispose(self) -> None:
        self._raw.dispose()
        if self._raw_write_connection is not None:
            self._raw_write_connection.close()
            self._raw_write_connection = None
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()
        if self.fast_writer is not self.reader:
            self.fast_writer.dispose()

    def sqlite_file(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.url.split(":///", 1)[1])
