"""Impressions written in batches (NEXTBEST_IMPRESSION_BATCH_MS): the same rows as one
transaction per decision, an outcome right after its decision still finds it (on this node and
on another), reports and the look-up trail count every decision served, and a stop writes what
is pending."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import api, row_count
from sqlalchemy import delete, select

from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.impressions import Impression, ImpressionWriter
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.group_commit import GroupCommitter
from nextbest.storage.models import Decision
from nextbest.storage.report_models import ReportRollup
from nextbest.storage.shown import decode_offers
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

NUMBERS = [f"139000000{i:02d}" for i in range(1, 13)] + ["13912345678"]  # the last is unknown
CLERKS = [
    Actor(key_id=1, user_id="clerk-1", role="clerk", store_id="NJ-0001"),
    Actor(key_id=2, user_id="clerk-2", role="clerk", store_id="NJ-0002"),
    Actor(key_id=3, user_id="agent-1", role="agent"),
]


def _service(db: Database, clock: FixedClock, writer: ImpressionWriter) -> DecisionService:
    reader = WarehouseReader(db, cache_size=100, version_check_seconds=0)
    return DecisionService(db, reader, clock, impressions=writer)


def _rollups(db: Database) -> list[tuple[Any, ...]]:
    """The report counts, summed over shards (PostgreSQL spreads a hot row over several)."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    with db.read() as session:
        for r in session.scalars(select(ReportRollup)):
            key = (r.grain, str(r.day), r.k1, r.k2, r.k3, r.experiment, r.arm)
            counts = sums.setdefault(key, [0, 0])
            counts[0] += r.decisions
            counts[1] += r.contacts_presented
    return sorted((*key, *counts) for key, counts in sums.items())


def _serve(service: DecisionService, rounds: int) -> list[str]:
    ids = []
    for i in range(rounds):
        for n, msisdn in enumerate(NUMBERS):
            channel = ("store", "inbound", "outbound")[(i + n) % 3]
            actor = CLERKS[(i + n) % 3]
            ids.append(
                service.decide(actor, DecisionRequest(msisdn=msisdn, channel=channel)).decision_id
            )
    return ids


def test_a_batch_writes_what_one_transaction_per_decision_writes(
    db: Database, standard_extract: Path, clock: FixedClock
) -> None:
    """On both databases: the same rows whether each decision is written in a transaction of
    its own or the decisions in one batch."""
    load_extract(db, standard_extract, clock)
    stored: dict[str, Any] = {}
    # Batched with a long interval: nothing is written until the flush below asks for it.
    for mode, interval in (("one by one", 0.0), ("batched", 30.0)):
        with db.write() as session:
            session.execute(delete(Decision))
            session.execute(delete(ReportRollup))
        writer = ImpressionWriter(db, interval)
        writer.start()
        assert writer.batching == (interval > 0)
        ids = _serve(_service(db, clock, writer), rounds=6)
        if writer.batching:
            # Nothing waited for the disk: the whole batch is still in memory.
            assert row_count(db, Decision) == 0
            assert writer.pending() == len(ids)
            assert writer.flush()
            assert writer.pending() == 0
        assert row_count(db, Decision) == len(ids) == 6 * len(NUMBERS)
        with db.read() as session:
            assert set(session.scalars(select(Decision.id))) == set(ids)
            # Each row is on the look-up trail (its key) and carries the offers it showed.
            trail = set(session.scalars(select(Decision.id).where(Decision.key_id.is_not(None))))
            assert trail == set(ids)
            shown = sum(len(decode_offers(o)) for o in session.scalars(select(Decision.offers)))
        stored[mode] = (shown, len(trail), _rollups(db))
        writer.stop()
    assert stored["batched"] == stored["one by one"]
    offers, lookups, rollups = stored["batched"]
    assert offers > 0 and lookups == 6 * len(NUMBERS)
    # Every decision counted once per contact grain, summed over the batch.
    totals: dict[str, int] = {}
    for row in rollups:
        totals[row[0]] = totals.get(row[0], 0) + row[7]
    assert set(totals.values()) == {6 * len(NUMBERS)}


def test_a_batch_is_written_whole_or_not_at_all(
    db: Database, standard_extract: Path, clock: FixedClock
) -> None:
    """A batch is one transaction: a decision id already stored (a unique violation in the
    decision rows) leaves the other decisions and every report count of the batch unwritten,
    not half of them; after its retries the batch is counted as lost."""
    load_extract(db, standard_extract, clock)
    first = ImpressionWriter(db, 0.0)  # one by one: the row the batch will collide with
    served = _service(db, clock, first).decide(
        CLERKS[0], DecisionRequest(msisdn="13900000001", channel="store")
    )
    before = (row_count(db, Decision), _rollups(db))
    writer = ImpressionWriter(db, 30.0)
    writer.start()
    service = _service(db, clock, writer)
    ids = _serve(service, rounds=1)
    again = writer._pending[0].decision  # resubmit a stored decision in the same batch
    writer.submit(Impression((served.decision_id, *again[1:])))
    assert writer.flush(timeout=30)
    writer.stop()
    assert writer.lost == len(ids) + 1 and writer.written == 0
    assert (row_count(db, Decision), _rollups(db)) == before


def test_concurrent_decisions_all_land_and_stop_drains_the_rest(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    load_extract(db, standard_extract, clock)
    writer = ImpressionWriter(db, 0.02)
    writer.start()
    service = _service(db, clock, writer)
    ids: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = _serve(service, rounds=3)
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.stop()  # no flush: stopping writes whatever is pending
    assert row_count(db, Decision) == len(set(ids)) == 4 * 3 * len(NUMBERS)
    assert writer.written == len(ids) and writer.lost == 0


@pytest.fixture
def batched(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, impression_batch_ms=200.0)


def test_outcome_reports_and_trail_right_after_a_batched_decision(
    batched: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(batched, db, clock, standard_extract) as env:
        first = env.decide()
        offer = first["offers"][0]["offer_id"]
        # Answered 200 ms before the batch is due: the outcome waits for its decision.
        declined = env.outcome(first["decision_id"], offer, "declined", reason="not now")
        assert declined.status_code == 201, declined.text
        following = env.decide()
        assert offer not in [o["offer_id"] for o in following["offers"]]
        trail = env.client.get(
            "/v1/lookups?msisdn=13900000001", headers=env.headers("admin")
        ).json()
        assert {r["decision_id"] for r in trail} >= {
            first["decision_id"],
            following["decision_id"],
        }
        report = env.client.get(
            "/v1/reports/conversion?by=agent", headers=env.headers("supervisor")
        ).json()
        (row,) = report["rows"]
        assert (row["agent"], row["presented"], row["accepted"]) == ("clerk-1", 1, 0)
        # An unknown decision is still a plain 404 (after the short wait).
        assert env.outcome("0" * 32, offer, "declined").status_code == 404


@pytest.mark.parametrize("group_commit", [False, True], ids=["in a thread", "group commit"])
def test_an_outcome_on_another_node_waits_for_the_decision(
    settings: Settings, standard_extract: Path, clock: FixedClock, group_commit: bool
) -> None:
    node_a, node_b = Database(settings), Database(settings)
    node_a.create_schema()
    load_extract(node_a, standard_extract, clock)
    # Node A writes its batch half a second after the decision; node B waits up to 0.2 s plus
    # four of its own intervals (2.2 s) for a decision it does not know yet.
    writer_a, writer_b = ImpressionWriter(node_a, 0.5), ImpressionWriter(node_b, 0.5)
    committer_b = GroupCommitter(node_b)
    writer_a.start()
    writer_b.start()
    try:
        served = _service(node_a, clock, writer_a).decide(
            CLERKS[0], DecisionRequest(msisdn="13900000001", channel="store")
        )
        with node_b.read() as session:  # not there yet: node A's batch is 500 ms away
            assert session.get(Decision, served.decision_id) is None
        reader_b = WarehouseReader(node_b, cache_size=10, version_check_seconds=0)
        service_b = OutcomeService(node_b, reader_b, clock, writer_b, committer_b)
        request = OutcomeRequest(offer_id=served.offers[0].offer_id, outcome="considering")
        if group_commit:  # on the event loop, as the API records it
            committer_b.start()
            recorded = asyncio.run(service_b.record_async(CLERKS[0], served.decision_id, request))
        else:
            recorded = service_b.record(CLERKS[0], served.decision_id, request)
        assert recorded.status_code == 201
        assert recorded.response.decision_id == served.decision_id
    finally:
        committer_b.stop()
        writer_a.stop()
        writer_b.stop()
        node_a.dispose()
        node_b.dispose()


def test_the_setting_is_checked(tmp_path: Path) -> None:
    from nextbest.settings import SettingsError

    with pytest.raises(SettingsError, match="NEXTBEST_IMPRESSION_BATCH_MS"):
        Settings.from_env({"NEXTBEST_IMPRESSION_BATCH_MS": "-1"})
    assert Settings.from_env({"NEXTBEST_IMPRESSION_BATCH_MS": "5"}).impression_batch_ms == 5.0
