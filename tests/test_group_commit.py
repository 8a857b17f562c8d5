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
from nextbest.storage.group_commit import GroupCommitter

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
