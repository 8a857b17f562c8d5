"""Group commit for SQLite: many requests' durable writes in one transaction.

SQLite has one writer. With a transaction per request, every request thread queues on the
write lock and, once it has it, competes for the GIL with the threads queued behind it: the
lock is held for the work, the fsync and every GIL hand-over in between. Here request threads
hand their write (a function of the session) to one thread per process, which runs whatever
has queued up in one transaction, each write in its own savepoint, commits once, and only then
answers each request. A write that fails rolls back to its savepoint and raises in its own
request; the others still commit. If the commit itself fails, every request of the batch gets
the error: nothing is acknowledged that is not on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from nextbest.storage.db import Database
from nextbest.storage.queue_thread import QueueThread

__all__ = ["GroupCommitter"]

T = TypeVar("T")

# Writes per transaction at most: a long batch would hold the lock (and the answers) longer.
MAX_BATCH = 64


class _Write(Generic[T]):
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Session], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommitter(QueueThread):
    """One per process. Not started (tests, PostgreSQL): ``run`` writes in the caller's own
    transaction, as ``db.write()`` would."""

    thread_name = "group-commit"

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self._queue: list[_Write[Any]] = []
        self.batches = 0
        self.writes = 0

    def run(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` committed durably; its result, or its exception re-raised."""
        write: _Write[T] = _Write(fn)
        with self._cond:
            queued = self._accepting()
            if queued:
                self._queue.append(write)
                self._cond.notify()
        if not queued:
            with self.db.write() as session:
                return fn(session)
        write.done.wait()
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._commit(batch)

    def _commit(self, batch: list[_Write[Any]]) -> None:
        try:
            with self.db.write() as session:
                for write in batch:
                    try:
                        with session.begin_nested():
                            write.result = write.fn(session)
                    except Exception as exc:  # this write only: rolled back to its savepoint
                        write.error = exc
        except Exception as exc:  # the commit failed: no write of the batch stands
            for write in batch:
                if write.error is None:
                    write.error = exc
                    write.result = None
        self.batches += 1
        self.writes += len(batch)
        for write in batch:
            write.done.set()
