"""SQLite group commit: many threads' writes commit together, each write's failure stays its
own (rolled back to its savepoint, raised in its thread), and nothing is answered before the
commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from helpers import row_count
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nextbest.settings import Settings
from nextbest.storage.campaign_models import DndNumber
from nextbest.storage.db import Database
from nextbest.storage.group_commit import GroupCommitter, _Write

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _add(number: str) -> object:
    def write(session: Session) -> str:
        session.add(DndNumber(msisdn=number, added_at=AT, added_by="test", source="test"))
        session.flush()
        return number

    return write


@pytest.fixture
def sqlite_db(sqlite_settings: Settings) -> Database:
    db = Database(sqlite_settings)
    db.create_schema()
    return db


def test_forty_threads_commit_in_fewer_transactions_and_failures_stay_their_own(
    sqlite_db: Database,
) -> None:
    committer = GroupCommitter(sqlite_db)
    committer.start()
    results: dict[int, object] = {}
    barrier = threading.Barrier(40)

    def work(i: int) -> None:
        barrier.wait()
        # Every fifth thread writes a number another thread also writes: one of the two fails.
        number = f"1390000{(i + 1 if i % 5 == 0 else i):04d}"
        try:
            results[i] = committer.run(_add(number))  # type: ignore[arg-type]
        except IntegrityError as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.stop()
    failed = [i for i, r in results.items() if isinstance(r, IntegrityError)]
    stored = row_count(sqlite_db, DndNumber)
    assert len(results) == 40
    assert len(failed) == 8  # one of each duplicated pair
    assert stored == 32 == 40 - len(failed)
    assert committer.writes == 40
    assert committer.batches < 40  # writes waiting together were committed together
    sqlite_db.dispose()


def test_not_started_it_writes_in_the_callers_transaction(sqlite_db: Database) -> None:
    committer = GroupCommitter(sqlite_db)
    assert committer.run(_add("13900000001")) == "13900000001"  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        committer.run(_add("13900000001"))  # type: ignore[arg-type]
    assert row_count(sqlite_db, DndNumber) == 1
    assert committer.batches == 0
    sqlite_db.dispose()


def test_a_write_that_breaks_the_transaction_is_not_acknowledged_and_the_next_commits(
    sqlite_db: Database,
) -> None:
    committer = GroupCommitter(sqlite_db)
    committer.start()

    def fails_at_commit(session: Session) -> str:
        # Ends the batch's transaction under the committer: neither its savepoint nor the
        # commit can complete, so the caller must get an error, not this result.
        session.connection().exec_driver_sql("ROLLBACK")
        return "never acknowledged"

    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises at commit
        committer.run(fails_at_commit)
    assert committer.run(_add("13900000002")) == "13900000002"  # type: ignore[arg-type]
    committer.stop()
    assert row_count(sqlite_db, DndNumber) == 1
    sqlite_db.dispose()


def test_deferred_rows_are_summed_for_the_batch_and_dropped_with_a_failed_write(
    sqlite_db: Database,
) -> None:
    """What writes defer (the report counts) is written once for the batch, before its
    commit; a write rolled back to its savepoint takes its deferred rows with it."""
    flushed: list[list[int]] = []

    def flush(session: Session, rows: list[int]) -> None:
        flushed.append(list(rows))

    def write(number: str, counts: list[int], fail: bool = False) -> object:
        def run(session: Session) -> str:
            GroupCommitter.defer(session, flush, counts)
            _add(number)(session)  # type: ignore[operator]
            if fail:
                raise ValueError("refused after deferring")
            return number

        return run

    committer = GroupCommitter(sqlite_db)
    # Outside a batch (not started): written at once, in the caller's transaction.
    committer.run(write("13900000001", [1]))  # type: ignore[arg-type]
    assert flushed == [[1]]
    flushed.clear()
    # One batch of three writes, the second of which fails after deferring its rows.
    batch: list[_Write[object]] = [
        _Write(write("13900000002", [2, 3])),
        _Write(write("13900000003", [40], fail=True)),
        _Write(write("13900000004", [5])),
    ]
    committer._commit(batch)
    assert flushed == [[2, 3, 5]]  # one flush for the batch, without the failed write's rows
    assert isinstance(batch[1].error, ValueError)
    assert [w.result for w in (batch[0], batch[2])] == ["13900000002", "13900000004"]
    assert row_count(sqlite_db, DndNumber) == 3
