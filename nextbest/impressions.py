"""Impressions written in batches: one transaction for many decisions served.

Every decision stores what was served (its row, with the offers shown and the look-up trail's
key, and the report counts). Written in its own request, that is a write transaction per
decision, and on SQLite every one of them queues on the single writer: under load the queue,
not the work, sets the pace. Here requests hand their rows to one writer per process (the
event loop itself on SQLite, a thread elsewhere: ``ImpressionWriter``), which writes whatever
has gathered every ``impression_batch_ms`` in one transaction, summing the report counts of
the batch first (a batch of a hundred decisions touches each rollup row once).

What this trades: a decision's rows reach the database a few milliseconds after its answer,
and a process killed in that window loses those impressions (never an outcome: outcomes are
written in their request, durably). Anything that reads impressions in this process calls
``flush`` first; an outcome for a decision served by another node waits for it briefly
(nextbest/outcomes.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.orm import Session

from nextbest.rollups import ContactKey, contact_key, contact_rows_for, merged, upsert_with
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.queue_thread import QueueThread
from nextbest.storage.raw import as_stored, insert_values, pg_array_types

__all__ = ["DECISION_COLUMNS", "Impression", "ImpressionWriter", "write_impressions"]

log = logging.getLogger(__name__)

# A batch larger than this is split: one transaction should not hold the writer for long.
MAX_BATCH = 2000
# SQLite: the WAL is copied back into the database file at most this often, once it has grown
# past this size (SQLite's own automatic checkpoint is at 4 MB).
CHECKPOINT_SECONDS = 1.0
CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024

# The decision row's columns, in the order of ``Impression.decision``.
DECISION_COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "msisdn",
    "channel",
    "user_id",
    "role",
    "store_id",
    "known",
    "segment",
    "data_version",
    "catalog_hash",
    "events",
    "customer_flags",
    "customer_rule",
    "campaign_id",
    "experiment",
    "arm",
    "offers",
    "key_id",
    "team_id",
)
assert set(DECISION_COLUMNS) == {c.key for c in Decision.__table__.columns}, "decision columns"
_ID, _AT, _USER, _STORE, _CHANNEL, _SEGMENT = 0, 1, 4, 6, 3, 8
_CAMPAIGN, _EXPERIMENT, _ARM = 14, 15, 16

_INSERT_DECISION = f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)})"
_DECISION_TYPES = pg_array_types(Decision.__table__, DECISION_COLUMNS)  # type: ignore[arg-type]


class Impression(msgspec.Struct, frozen=True, gc=False):
    """What one decision adds, built in the request without touching the database: its row
    (with the offers shown and the look-up trail's key, nextbest/storage/shown.py), from which
    the writer also counts it in the reports."""

    decision: tuple[Any, ...]  # DECISION_COLUMNS; created_at an aware datetime


def _contact_key(decision: tuple[Any, ...], *, sqlite: bool) -> ContactKey:
    return contact_key(
        decision_id=decision[_ID],
        created_at=decision[_AT],
        user_id=decision[_USER],
        store_id=decision[_STORE],
        channel=decision[_CHANNEL],
        campaign_id=decision[_CAMPAIGN],
        segment=decision[_SEGMENT],
        experiment=decision[_EXPERIMENT],
        arm=decision[_ARM],
        sqlite=sqlite,
    )


def write_impressions(session: Session, batch: Sequence[Impression]) -> None:
    """Insert a batch of impressions in the caller's transaction."""
    cursor = session.connection().connection.cursor()
    try:
        write_rows(cursor, batch, sqlite=session.get_bind().dialect.name == "sqlite")
    finally:
        cursor.close()


def write_rows(cursor: Any, batch: Sequence[Impression], *, sqlite: bool) -> None:
    """Insert a batch of impressions on a DB-API cursor, in its transaction: one row per
    decision, and the report counts of the decisions that share their rollup key summed
    before the upsert (a batch touches each rollup row once)."""
    rows: list[tuple[Any, ...]] = []
    counts: Counter[ContactKey] = Counter()
    for impression in batch:
        row = impression.decision
        counts[_contact_key(row, sqlite=sqlite)] += 1
        rows.append((row[_ID], as_stored(row[_AT], sqlite=True), *row[2:]) if sqlite else row)
    insert_values(cursor, _INSERT_DECISION, rows, sqlite=sqlite, pg_types=_DECISION_TYPES)
    upsert_with(
        cursor,
        merged(row for key, n in counts.items() for row in contact_rows_for(key, n)),
        sqlite=sqlite,
    )


class ImpressionWriter(QueueThread):
    """One per process. ``interval`` 0: ``submit`` writes at once, in the caller's thread.

    Started on a running event loop with SQLite, the batches are written on the loop itself:
    a batch of a few decisions is a fraction of a millisecond of work, and a writer thread
    beside the loop made every GIL-releasing call of a request (each SQLite read) a hand-over
    between threads (measured: ~40% more CPU per decision). The loop never waits for another
    writer: if one holds SQLite's lock, it tries again a millisecond later; checkpoints run in
    a thread. Elsewhere (PostgreSQL, whose writes wait on the network; tests without a loop)
    a thread writes them.
    """

    thread_name = "impressions"

    def __init__(self, db: Database, interval: float) -> None:
        super().__init__()
        self.db = db
        self.interval = interval
        self._pending: list[Impression] = []
        self._submitted = 0  # impressions handed over so far
        self._done = 0  # of those, written (or given up on)
        self._urgent = False
        self.written = 0
        self.lost = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._armed = False  # a write is scheduled on the loop
        self._checkpointing = False
        self._next_checkpoint = 0.0
        self._failures = 0

    @property
    def batching(self) -> bool:
        return self.interval > 0 and (self._thread is not None or self._loop is not None)

    def start(self) -> None:
        if self.interval <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and self.db.is_sqlite:
            with self._cond:
                self._loop = loop
                self._loop_thread = threading.get_ident()
                self._stopping = False
            return
        super().start()

    def stop(self) -> None:
        """Write what is pending, then stop (graceful shutdown)."""
        if self._loop is None:
            super().stop()
            return
        with self._cond:
            self._stopping = True
        self._write_pending()
        with self._cond:
            self._loop = None

    def _accepting(self) -> bool:
        return (self._thread is not None or self._loop is not None) and not self._stopping

    def submit(self, impression: Impression) -> None:
        with self._cond:
            queued = self._accepting()
            if queued:
                self._pending.append(impression)
                self._submitted += 1
                if len(self._pending) == 1:  # the first of a batch wakes the idle writer
                    self._cond.notify_all()
                    if self._loop is not None:
                        self._arm_locked(self.interval)
        if not queued:
            with self.db.write(durable=False) as session:
                write_impressions(session, [impression])
            self.written += 1

    def _arm_locked(self, delay: float) -> None:
        """Schedule a write on the loop (call with ``_cond`` held)."""
        loop = self._loop
        if loop is None or self._armed:
            return
        self._armed = True
        if threading.get_ident() == self._loop_thread:
            loop.call_later(delay, self._write_due)
        else:
            loop.call_soon_threadsafe(loop.call_later, delay, self._write_due)

    def _write_due(self) -> None:
        """On the loop: write the batch, unless another writer holds SQLite's lock."""
        with self._cond:
            self._armed = False
            batch, self._pending = self._pending, []
        if not batch:
            return
        for start in range(0, len(batch), MAX_BATCH):
            part = batch[start : start + MAX_BATCH]
            if not self._try_write(part):
                with self._cond:  # not now: back in front of the queue, tried again soon
                    self._pending[:0] = batch[start:]
                    self._arm_locked(0.001 if self._failures == 0 else 0.05)
                return
            self._settled(len(part))
        self._checkpoint_soon()

    def _try_write(self, batch: list[Impression]) -> bool:
        """True once the batch is settled (written, or given up on); False: try again."""
        try:
            with self.db.try_raw_write() as cursor:
                if cursor is None:
                    return False
                write_rows(cursor, batch, sqlite=True)
        except Exception:  # the database is away: tried again, given up after a while
            self._failures += 1
            log.exception("writing %d impressions failed (attempt %d)", len(batch), self._failures)
            if self._failures < 5:
                return False
            self.lost += len(batch)
            log.error("gave up on %d impressions after 5 attempts", len(batch))
            self._failures = 0
            return True
        self._failures = 0
        self.written += len(batch)
        return True

    def _settled(self, count: int) -> None:
        with self._cond:
            self._done += count
            self._cond.notify_all()

    def _checkpoint_soon(self) -> None:
        loop = self._loop
        now = time.monotonic()
        if loop is None or self._checkpointing or now < self._next_checkpoint:
            return
        self._checkpointing = True
        self._next_checkpoint = now + CHECKPOINT_SECONDS

        def run() -> None:
            try:
                self.db.checkpoint(CHECKPOINT_WAL_BYTES)
            except Exception:
                log.exception("checkpoint failed")
            finally:
                self._checkpointing = False

        loop.run_in_executor(None, run)

    def _write_pending(self) -> None:
        """Write everything pending now, waiting for the lock if need be (a flush on the
        loop, or the stop)."""
        with self._cond:
            batch, self._pending = self._pending, []
        for start in range(0, len(batch), MAX_BATCH):
            self._write(batch[start : start + MAX_BATCH])
            self._settled(len(batch[start : start + MAX_BATCH]))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every impression submitted before this call is written; False if that
        took longer than ``timeout`` (the database is stuck)."""
        if not self.batching:
            return True
        if self._loop is not None and threading.get_ident() == self._loop_thread:
            self._write_pending()
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._urgent = True
            self._cond.notify_all()  # write now rather than at the end of the interval
            loop = self._loop
            if loop is not None and self._done < target:
                loop.call_soon_threadsafe(self._write_due)
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
                if self._loop is not None and self._done < target and not self._armed:
                    self._arm_locked(0.0)
        return True

    def pending(self) -> int:
        with self._cond:
            return self._submitted - self._done

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
            # Let the batch gather (a flush or a stop cuts the wait short).
            with self._cond:
                deadline = time.monotonic() + self.interval
                while not (self._urgent or self._stopping):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._urgent = False
                batch, self._pending = self._pending, []
            for start in range(0, len(batch), MAX_BATCH):
                self._write(batch[start : start + MAX_BATCH])
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[Impression]) -> None:
        for attempt in range(5):
            try:
                with self.db.write(durable=False) as session:
                    write_impressions(session, batch)
                self.written += len(batch)
                return
            except Exception:  # the database is away: try again, then give up on the batch
                log.exception("writing %d impressions failed (attempt %d)", len(batch), attempt)
                time.sleep(0.05 * 2**attempt)
        self.lost += len(batch)
        log.error("gave up on %d impressions after 5 attempts", len(batch))
