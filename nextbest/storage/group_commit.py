"""Group commit: many requests' durable writes in one transaction.

SQLite has one writer. With a transaction per request, every request thread queues on the
write lock and, once it has it, competes for the GIL with the threads queued behind it: the
lock is held for the work, the fsync and every GIL hand-over in between. Here request threads
hand their write (a function of the session) to one thread per process, which runs whatever
has queued up in one transaction, each write in its own savepoint, commits once, and only then
answers each request. A write that fails rolls back to its savepoint and raises in its own
request; the others still commit. If the commit itself fails, every request of the batch gets
the error: nothing is acknowledged that is not on disk.

On PostgreSQL the cost of a small write is its round trips; a batch makes them for all its
writes at once: a prelude reads (and locks) what they need, and rows they defer are written
in one statement each at the end, so a write that only defers needs no savepoint (``lazy``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from nextbest.storage.db import Database
from nextbest.storage.queue_thread import QueueThread

__all__ = ["GroupCommitter"]

T = TypeVar("T")
R = TypeVar("R")
_DEFERRED = "nextbest.group_commit.deferred"
_SAVEPOINT = "nextbest.group_commit.savepoint"
# Reads for all the writes of a batch that name it, with each write's key (``submit``).
Prelude = Callable[[Session, list[Any]], None]

# Writes per transaction at most: a long batch would hold the lock (and the answers) longer.
MAX_BATCH = 64


class _Write(Generic[T]):
    __slots__ = ("error", "fn", "future", "key", "lazy", "prelude", "result")

    def __init__(
        self,
        fn: Callable[[Session], T],
        key: Any = None,
        prelude: Prelude | None = None,
        lazy: bool = False,
    ) -> None:
        self.fn = fn
        self.key = key
        self.prelude = prelude
        self.lazy = lazy
        self.future: Future[T] = Future()
        self.result: T | None = None
        self.error: BaseException | None = None


class _Savepoint:
    """A write's savepoint in its batch, opened at once or, for a lazy write, by ``writing``."""

    __slots__ = ("_nested", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._nested: Any = None

    def open(self) -> None:
        if self._nested is None:
            self._nested = self._session.begin_nested()

    def release(self) -> None:
        if self._nested is not None:
            self._nested.commit()

    def rollback(self) -> None:
        if self._nested is not None:
            self._nested.rollback()
        else:  # a lazy write that failed before its first change: nothing to undo
            _refuse_if_aborted(self._session)


def _refuse_if_aborted(session: Session) -> None:
    """PostgreSQL ends a transaction at the first failed statement, and a COMMIT then rolls it
    back without an error: a batch in that state must fail, not be acknowledged."""
    if session.get_bind().dialect.name == "sqlite":
        return
    import psycopg

    connection: Any = session.connection().connection.driver_connection
    if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        raise RuntimeError("a write failed outside its savepoint: the batch is rolled back")


class GroupCommitter(QueueThread):
    """One per process. Not started (tests, ``NEXTBEST_GROUP_COMMIT=false``): ``run`` writes
    in the caller's own transaction, as ``db.write()`` would."""

    thread_name = "group-commit"

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self._queue: list[_Write[Any]] = []
        self.batches = 0
        self.writes = 0

    def run(
        self,
        fn: Callable[[Session], T],
        key: Any = None,
        prelude: Prelude | None = None,
        *,
        lazy: bool = False,
    ) -> T:
        """``fn(session)`` committed durably; its result, or its exception re-raised."""
        return self.submit(fn, key, prelude, lazy=lazy).result()

    def submit(
        self,
        fn: Callable[[Session], T],
        key: Any = None,
        prelude: Prelude | None = None,
        *,
        lazy: bool = False,
    ) -> Future[T]:
        """``fn(session)`` queued for the next batch: its result (or exception) once the batch
        is committed. Not started: written now, in the caller's own transaction, after its
        prelude.

        ``prelude(session, keys)``, if given, runs once per batch before its writes, with the
        ``key`` of every write of the batch that named it: what the writes would each read
        (and lock) is read for all of them in one statement (on PostgreSQL a round trip is
        most of a small write's cost), and locked in one order (a batch holds its locks until
        its commit: batches of other processes taking them one write at a time, each in its
        own order, could wait on each other). Its failure fails the batch.

        ``lazy``: the write calls ``writing(session)`` before its first statement that changes
        the database, and its savepoint is opened only then; a write that only defers rows
        (``defer``) needs none, two round trips fewer on PostgreSQL."""
        write: _Write[T] = _Write(fn, key, prelude, lazy)
        with self._cond:
            queued = self._accepting()
            if queued:
                self._queue.append(write)
                self._cond.notify()
        if not queued:
            try:
                with self.db.write() as session:
                    if prelude is not None:  # a batch of one: the write reads as in any batch
                        prelude(session, [key])
                    write.future.set_result(fn(session))
            except BaseException as exc:
                write.future.set_exception(exc)
        return write.future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._commit(batch)

    @staticmethod
    def writing(session: Session) -> None:
        """A lazy write is about to change the database: its savepoint, if in a batch."""
        savepoint: _Savepoint | None = session.info.get(_SAVEPOINT)
        if savepoint is not None:
            savepoint.open()

    @staticmethod
    def defer(session: Session, flush: Callable[[Session, list[R]], None], rows: list[R]) -> None:
        """Rows the writes of one batch may combine before the commit (counters: a batch of
        outcomes adds to each rollup row once). ``flush(session, rows)`` writes them: for the
        whole batch just before its commit, or at once outside a batch."""
        deferred: dict[Any, list[Any]] | None = session.info.get(_DEFERRED)
        if deferred is None:
            flush(session, rows)
        else:
            deferred.setdefault(flush, []).extend(rows)

    def _commit(self, batch: list[_Write[Any]]) -> None:
        try:
            with self.db.write() as session:
                deferred: dict[Any, list[Any]] = {}
                session.info[_DEFERRED] = deferred
                preludes: dict[Prelude, list[Any]] = {}
                for write in batch:
                    if write.prelude is not None:
                        preludes.setdefault(write.prelude, []).append(write.key)
                for prelude, keys in preludes.items():
                    prelude(session, keys)
                for write in batch:
                    kept = {flush: len(rows) for flush, rows in deferred.items()}
                    savepoint = session.info[_SAVEPOINT] = _Savepoint(session)
                    if not write.lazy:
                        savepoint.open()
                    try:
                        write.result = write.fn(session)
                        savepoint.release()
                    except Exception as exc:  # this write only: rolled back to its savepoint
                        savepoint.rollback()
                        write.error = exc
                        for flush, rows in deferred.items():  # and so are its deferred rows
                            del rows[kept.get(flush, 0) :]
                del session.info[_SAVEPOINT]
                del session.info[_DEFERRED]
                for flush, rows in deferred.items():
                    if rows:
                        flush(session, rows)
                _refuse_if_aborted(session)
        except Exception as exc:  # the commit failed: no write of the batch stands
            for write in batch:
                if write.error is None:
                    write.error = exc
                    write.result = None
        self.batches += 1
        self.writes += len(batch)
        for write in batch:  # answered only now, the batch on disk (or failed)
            if write.error is not None:
                write.future.set_exception(write.error)
            else:
                write.future.set_result(write.result)
