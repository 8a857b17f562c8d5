"""Impressions written in batches: one transaction for many decisions served.

Every decision stores what was served (the decision, the offers shown, the look-up trail row,
the report counts). Written in its own request, that is a write transaction per decision,
and on SQLite every one of them queues on the single writer: under load the queue, not the
work, sets the pace. Here requests hand their rows to one thread per process, which writes
whatever has gathered every ``impression_batch_ms`` in one transaction, summing the report
counts of the batch first (a batch of a hundred decisions touches each rollup row once).

What this trades: a decision's rows reach the database a few milliseconds after its answer,
and a process killed in that window loses those impressions (never an outcome: outcomes are
written in their request, durably). Anything that reads impressions in this process calls
``flush`` first; an outcome for a decision served by another node waits for it briefly
(nextbest/outcomes.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.orm import Session

from nextbest.rollups import add_contacts
from nextbest.storage.db import Database
from nextbest.storage.models import Decision, DecisionOffer
from nextbest.storage.queue_thread import QueueThread
from nextbest.storage.raw import insert_rows
from nextbest.storage.report_models import ModelEstimate
from nextbest.storage.security_models import Lookup

__all__ = ["Impression", "ImpressionWriter", "write_impressions"]

log = logging.getLogger(__name__)

# A batch larger than this is split: one transaction should not hold the writer for long.
MAX_BATCH = 2000


class Impression(msgspec.Struct, frozen=True):
    """The rows one decision adds, built in the request without touching the database."""

    decision: dict[str, Any]
    offers: list[dict[str, Any]]
    lookup: dict[str, Any]
    contacts: list[tuple[Any, ...]]  # rollup rows (nextbest.rollups.contact_rows)
    estimates: list[dict[str, Any]]


def write_impressions(session: Session, batch: Sequence[Impression]) -> None:
    """Insert a batch of impressions in the caller's transaction (parents before children)."""
    insert_rows(session, Decision.__table__, [i.decision for i in batch])  # type: ignore[arg-type]
    insert_rows(
        session,
        DecisionOffer.__table__,  # type: ignore[arg-type]
        [row for i in batch for row in i.offers],
    )
    insert_rows(session, Lookup.__table__, [i.lookup for i in batch])  # type: ignore[arg-type]
    add_contacts(session, (row for i in batch for row in i.contacts))
    insert_rows(
        session,
        ModelEstimate.__table__,  # type: ignore[arg-type]
        [row for i in batch for row in i.estimates],
    )


class ImpressionWriter(QueueThread):
    """One per process. ``interval`` 0: ``submit`` writes at once, in the caller's thread."""

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

    @property
    def batching(self) -> bool:
        return self.interval > 0 and self._thread is not None

    def start(self) -> None:
        if self.interval > 0:
            super().start()

    def submit(self, impression: Impression) -> None:
        with self._cond:
            queued = self._accepting()
            if queued:
                self._pending.append(impression)
                self._submitted += 1
                if len(self._pending) == 1:  # the first of a batch wakes the idle writer
                    self._cond.notify_all()
        if not queued:
            with self.db.write(durable=False) as session:
                write_impressions(session, [impression])
            self.written += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every impression submitted before this call is written; False if that
        took longer than ``timeout`` (the database is stuck)."""
        if not self.batching:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._urgent = True
            self._cond.notify_all()  # write now rather than at the end of the interval
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
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
