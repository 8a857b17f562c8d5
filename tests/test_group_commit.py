"""Group commit: many threads' writes commit together, each write's failure stays its own
(rolled back to its savepoint, raised in its thread), and nothing is answered before the
commit; a batch runs its writes in one order and reads for all of them once, so outcomes from
two nodes at once neither deadlock nor miscount (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from conftest import STANDARD_AFFINITY, STANDARD_CONTACTS, STANDARD_PROFILES, write_extract
from helpers import row_count
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nextbest.clock import SystemClock
from nextbest.decisions import DecisionService
from nextbest.errors import Unprocessable
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService, Recorded
from nextbest.rollups import rebuild
from nextbest.settings import Settings
from nextbest.storage.campaign_models import DndNumber
from nextbest.storage.db import Database
from nextbest.storage.group_commit import GroupCommitter, _Write
from nextbest.storage.models import IdempotencyRecord, Outcome, Subscription
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, DecisionResponse, OutcomeRequest

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
    db: Database,
) -> None:
    committer = GroupCommitter(db)
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
    stored = row_count(db, DndNumber)
    assert len(results) == 40
    assert len(failed) == 8  # one of each duplicated pair
    assert stored == 32 == 40 - len(failed)
    assert committer.writes == 40
    assert committer.batches < 40  # writes waiting together were committed together


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


def test_a_batch_runs_one_prelude_for_all_its_writes_first(sqlite_db: Database) -> None:
    committer = GroupCommitter(sqlite_db)
    committer.start()
    ran: list[str] = []
    preludes: list[list[str]] = []
    holding, release = threading.Event(), threading.Event()

    def hold(session: Session) -> None:
        holding.set()
        release.wait(10)

    def note(key: str) -> object:
        def write(session: Session) -> str:
            ran.append(key)
            return key

        return write

    def prelude(session: Session, keys: list[str]) -> None:
        ran.append("prelude")
        preludes.append(list(keys))

    first = committer.submit(hold)
    assert holding.wait(10)
    # Queued while the first batch is being written: together, the next batch.
    futures = [committer.submit(note(k), k, prelude) for k in ("d3", "d1", "d2", "d1")]  # type: ignore[arg-type]
    release.set()
    first.result(10)
    assert [f.result(10) for f in futures] == ["d3", "d1", "d2", "d1"]
    committer.stop()
    assert ran == ["prelude", "d3", "d1", "d2", "d1"]
    assert preludes == [["d3", "d1", "d2", "d1"]]


ANA = Actor(key_id=1, user_id="ana", role="clerk", store_id="NJ-0001")


class _Nodes(msgspec.Struct):
    """Two nodes on one database (each its own Database, committer and outcome service) and
    what the first one decided for each number."""

    dbs: list[Database]
    committers: list[GroupCommitter]
    services: list[OutcomeService]
    served: list[DecisionResponse]


def _two_nodes(settings: Settings, tmp_path: Path, numbers: list[str]) -> _Nodes:
    clock = SystemClock()
    dbs = [Database(settings), Database(settings)]
    dbs[0].create_schema()
    extract = write_extract(
        tmp_path / "extract", STANDARD_PROFILES, STANDARD_AFFINITY, STANDARD_CONTACTS
    )
    load_extract(dbs[0], extract, clock)
    reader = WarehouseReader(dbs[0], cache_size=10, version_check_seconds=0)
    decide = DecisionService(dbs[0], reader, clock).decide
    served = [decide(ANA, DecisionRequest(msisdn=n, channel="store")) for n in numbers]
    committers = [GroupCommitter(db) for db in dbs]
    services = [
        OutcomeService(
            db,
            WarehouseReader(db, cache_size=10, version_check_seconds=0),
            clock,
            committer=committer,
        )
        for db, committer in zip(dbs, committers, strict=True)
    ]
    for committer in committers:
        committer.start()
    return _Nodes(dbs, committers, services, served)


def test_outcomes_from_two_nodes_at_once_neither_deadlock_nor_miscount(
    settings: Settings, tmp_path: Path
) -> None:
    """Two nodes (each its own committer) record outcomes on the same decisions at the same
    time, one walking them up and the other down: on PostgreSQL a batch holds the locks of
    its decisions until its commit, so two batches taking them write by write would wait on
    each other (seen here: DeadlockDetected). Every outcome is stored and the report counts
    equal a recount from the ledgers."""
    two = _two_nodes(settings, tmp_path, [f"1390100{i:04d}" for i in range(8)])
    nodes, committers, services = two.dbs, two.committers, two.services
    pairs = [(a.decision_id, offer.offer_id) for a in two.served for offer in a.offers]
    kinds = ("presented", "declined", "considering", "no_answer")
    errors: list[BaseException] = []
    recorded: list[int] = []
    threads_per_node = 8
    barrier = threading.Barrier(2 * threads_per_node)

    def work(node: int, seed: int) -> None:
        mine = sorted(pairs, reverse=node == 1) * 3
        rng = random.Random(seed)
        barrier.wait()
        for decision_id, offer_id in mine:
            try:
                answer = services[node].record(
                    ANA, decision_id, OutcomeRequest(offer_id=offer_id, outcome=rng.choice(kinds))
                )
                recorded.append(answer.response.outcome_id)
            except BaseException as exc:  # every failure is the test's finding
                errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(node, node * 100 + i))
        for node in (0, 1)
        for i in range(threads_per_node)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for committer in committers:
        committer.stop()
    assert errors == []
    assert len(recorded) == len(set(recorded)) == 2 * threads_per_node * 3 * len(pairs)
    assert row_count(nodes[0], Outcome) == len(recorded)
    assert sum(c.batches for c in committers) < len(recorded)  # batched
    assert rebuild(nodes[0], check=True).differences == 0
    for node in nodes:
        node.dispose()


def test_one_batch_replays_a_retry_and_keeps_a_refusal_and_a_sale_apart(
    settings: Settings, tmp_path: Path
) -> None:
    """Outcomes queued together form one batch: their rows are written at its end, yet a
    retry with the same Idempotency-Key inside the batch replays the first answer, a second
    outcome on the same decision counts the first as prior, a refused one leaves no trace,
    and a sale is written in its own savepoint."""
    clock = SystemClock()
    db = Database(settings)
    db.create_schema()
    load_extract(
        db, write_extract(tmp_path / "extract", STANDARD_PROFILES, STANDARD_AFFINITY), clock
    )
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    decisions = DecisionService(db, reader, clock)
    one = decisions.decide(ANA, DecisionRequest(msisdn="13901000001", channel="store"))
    two = decisions.decide(ANA, DecisionRequest(msisdn="13901000002", channel="store"))
    first, second = one.offers[0].offer_id, one.offers[1].offer_id
    committer = GroupCommitter(db)
    service = OutcomeService(db, reader, clock, committer=committer)
    committer.start()
    holding, release = threading.Event(), threading.Event()

    def hold(session: Session) -> None:
        holding.set()
        release.wait(10)

    held = committer.submit(hold)
    assert holding.wait(10)
    calls = [
        (one.decision_id, OutcomeRequest(offer_id=first, outcome="presented"), "k1"),
        (one.decision_id, OutcomeRequest(offer_id=first, outcome="presented"), "k1"),  # retry
        (one.decision_id, OutcomeRequest(offer_id=first, outcome="declined"), "k1"),  # misuse
        (one.decision_id, OutcomeRequest(offer_id=second, outcome="accepted"), "k2"),  # a sale
        (one.decision_id, OutcomeRequest(offer_id="no_such", outcome="presented"), None),
        (
            two.decision_id,
            OutcomeRequest(offer_id=two.offers[0].offer_id, outcome="declined"),
            None,
        ),
        (
            two.decision_id,
            OutcomeRequest(offer_id=two.offers[0].offer_id, outcome="declined"),
            None,
        ),
    ]
    results: dict[int, object] = {}

    def call(i: int) -> None:
        decision_id, request, key = calls[i]
        try:
            results[i] = service.record(ANA, decision_id, request, key)
        except Exception as exc:  # the refusals are part of what is checked
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for i, thread in enumerate(threads):  # queued in this order
        thread.start()
        while len(committer._queue) < i + 1:
            time.sleep(0.001)
    batches = committer.batches
    release.set()
    for thread in threads:
        thread.join(10)
    held.result(10)
    committer.stop()
    assert committer.batches == batches + 2  # the held write, then all seven together
    recorded = {i: r for i, r in results.items() if isinstance(r, Recorded)}
    assert sorted(recorded) == [0, 1, 3, 5, 6]
    assert recorded[1].replayed and recorded[1].response == recorded[0].response
    assert isinstance(results[2], Unprocessable) and results[2].field == "Idempotency-Key"
    assert isinstance(results[4], Unprocessable) and results[4].field == "offer_id"
    assert recorded[3].response.subscription is not None
    ids = [recorded[i].response.outcome_id for i in (0, 3, 5, 6)]
    with db.read() as session:
        stored = {
            o.id: (o.decision_id, o.offer_id, o.outcome) for o in session.scalars(select(Outcome))
        }
        replies = session.scalars(select(IdempotencyRecord.key)).all()
    assert sorted(stored) == sorted(ids)
    assert stored[ids[0]] == (one.decision_id, first, "presented")
    assert sorted(replies) == ["k1", "k2"]
    assert row_count(db, Subscription) == 1
    # Decision two's second decline is not a second contact presented: a recount agrees.
    assert rebuild(db, check=True).differences == 0
    db.dispose()


def test_a_lazy_write_failing_outside_a_savepoint_acknowledges_nothing_it_broke(
    db: Database,
) -> None:
    """A lazy write whose statement fails before it opened its savepoint: on PostgreSQL the
    failure ended the batch's transaction (whose COMMIT would roll back without an error), so
    no write of the batch may be acknowledged; SQLite's transaction survives the error."""
    committer = GroupCommitter(db)

    def broken(session: Session) -> None:
        session.connection().exec_driver_sql("SELECT * FROM no_such_table")

    batch: list[_Write[object]] = [
        _Write(_add("13900000001")),  # type: ignore[arg-type]
        _Write(broken, lazy=True),
        _Write(_add("13900000002")),  # type: ignore[arg-type]
    ]
    committer._commit(batch)
    acknowledged = [w for w in (batch[0], batch[2]) if w.error is None]
    assert batch[1].error is not None
    assert row_count(db, DndNumber) == len(acknowledged)
    if not db.is_sqlite:
        assert acknowledged == []


def test_the_same_key_on_two_nodes_at_once_is_recorded_once(
    settings: Settings, tmp_path: Path
) -> None:
    """A double click that reaches two nodes (a): the second node's batch waits for the
    first's lock on the decision, then finds its answer and replays it. The same key for
    other decisions at the same moment (b): both batches read no answer for it; on
    PostgreSQL the second one's insert of it fails at its end (the unique index), the whole
    batch is tried again, and the retry refuses the reuse; the batch's other outcome (c) is
    recorded on the retry."""
    two = _two_nodes(settings, tmp_path, [f"1390100000{i}" for i in (1, 2, 3)])
    nodes, committers, services, served = two.dbs, two.committers, two.services, two.served
    results: dict[str, object] = {}

    def race(calls: list[tuple[str, int, int, int, str]]) -> None:
        """Each node's committer held in a batch while the calls queue up (SQLite's one
        write lock lets only the first node hold one), then both let go at once."""
        release = threading.Event()
        held = committers if not nodes[0].is_sqlite else committers[:1]
        for committer in held:
            holding = threading.Event()

            def hold(session: Session, holding: threading.Event = holding) -> None:
                holding.set()
                release.wait(10)

            committer.submit(hold)
            assert holding.wait(10)

        def call(name: str, node: int, decision: int, offer: int, key: str) -> None:
            answer = served[decision]
            request = OutcomeRequest(offer_id=answer.offers[offer].offer_id, outcome="presented")
            try:
                results[name] = services[node].record(ANA, answer.decision_id, request, key)
            except Unprocessable as exc:
                results[name] = exc

        threads = [threading.Thread(target=call, args=c) for c in calls]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 1  # SQLite: node 1 may have taken some already
        while sum(len(c._queue) for c in committers) < len(calls):
            if nodes[0].is_sqlite and time.monotonic() > deadline:
                break
            time.sleep(0.001)
        release.set()
        for thread in threads:
            thread.join(20)

    race([("a0", 0, 0, 0, "click-1"), ("a1", 1, 0, 0, "click-1")])
    race([("b0", 0, 1, 0, "key-2"), ("b1", 1, 2, 0, "key-2"), ("c1", 1, 2, 1, "key-3")])
    for committer in committers:
        committer.stop()
    a0, a1, b0, b1, c1 = (results[n] for n in ("a0", "a1", "b0", "b1", "c1"))
    assert isinstance(a0, Recorded) and isinstance(a1, Recorded)
    assert a0.response == a1.response and [a0.replayed, a1.replayed].count(True) == 1
    assert sorted(type(r).__name__ for r in (b0, b1)) == ["Recorded", "Unprocessable"]
    assert isinstance(c1, Recorded) and c1.status_code == 201
    with nodes[0].read() as session:
        stored = session.scalars(select(Outcome.id)).all()
        keys = session.scalars(select(IdempotencyRecord.key)).all()
    assert len(stored) == 3  # click-1 once, key-2 once, key-3
    assert sorted(keys) == ["click-1", "key-2", "key-3"]
    for node in nodes:
        node.dispose()
