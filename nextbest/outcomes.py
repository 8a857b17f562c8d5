"""The outcome service: record what the customer said, once, durably.

Everything one outcome changes (the outcome row, the pending subscription, the idempotency
record) is written in one transaction, committed before the answer goes out. A retry with the
same Idempotency-Key, or a second click on the same offer of the same decision, gets the first
answer back and writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nextbest.catalog import Catalog
from nextbest.clock import Clock
from nextbest.errors import BadInput, Conflict, NotFound, Unavailable, Unprocessable
from nextbest.impressions import ImpressionWriter
from nextbest.keys import Actor
from nextbest.policy import screen
from nextbest.rollups import outcome_rows, upsert_rollups
from nextbest.storage.db import Database
from nextbest.storage.group_commit import GroupCommitter
from nextbest.storage.models import (
    Decision,
    IdempotencyRecord,
    Outcome,
    ProvisioningJob,
    Subscription,
)
from nextbest.storage.raw import (
    as_stored,
    fetch,
    insert_values,
    is_sqlite,
    pg_array_types,
    utc,
)
from nextbest.storage.shown import ShownOffer, decode_offers, expected
from nextbest.storage.warehouse import (
    CustomerData,
    NoDataLoaded,
    VersionRetired,
    WarehouseReader,
    live_history,
)
from nextbest.wire import OutcomeRequest, OutcomeResponse, SubscriptionOut

__all__ = ["OutcomeService", "Recorded"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(OutcomeResponse).decode
MAX_IDEMPOTENCY_KEY = 200


class ShownDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The decision's columns an outcome needs (its counts are attributed to them)."""

    id: str
    created_at: datetime
    msisdn: str
    channel: str
    user_id: str
    store_id: str | None
    campaign_id: str | None
    segment: str | None
    experiment: str | None
    arm: str | None


_DECISION_COLUMNS = tuple(f.name for f in msgspec.structs.fields(ShownDecision))
# Everything an outcome reads, in one statement for all the decisions of a batch (plain SQL:
# the ORM's get and objects cost more than the reads): each decision with the offers it showed
# (kind 0), and its earlier outcomes (1) in the decision's columns (PostgreSQL wants one type
# per column: texts where it has texts). The ids come as one array (PostgreSQL) or one JSON
# list (SQLite), so the statement's text is the same for any number of them.
_NULLS = ", NULL" * (len(_DECISION_COLUMNS) - 3)
_READ_PARTS = (
    f"SELECT 0, id, {', '.join(_DECISION_COLUMNS)}, offers FROM decisions WHERE id {{ids}} "
    f"UNION ALL SELECT 1, decision_id, offer_id, NULL, outcome{_NULLS}, NULL FROM outcomes "
    "WHERE decision_id {ids}"
)
_READ_SQLITE = _READ_PARTS.format(ids="IN (SELECT value FROM json_each(?))")
_READ_PG = _READ_PARTS.format(ids="= ANY(?)")
# Outcomes of one decision are counted one after the other (rollups.py; SQLite has a single
# writer), and a batch locks its decisions in one order (no deadlock between batches). NO KEY
# UPDATE: an outcome's foreign key holds KEY SHARE on the row, which a plain FOR UPDATE would
# wait on (two would deadlock). A statement of its own, before the read: a read in the same
# statement would see the database as it was before waiting for a lock.
_LOCK_PG = "SELECT id FROM decisions WHERE id = ANY(?) ORDER BY id FOR NO KEY UPDATE"
# session.info of a batch of outcomes: what its prelude read for all of its writes (_Batch).
_BATCH = "nextbest.outcomes.batch"
_IDS_PG = "SELECT nextval(pg_get_serial_sequence('outcomes', 'id')) FROM generate_series(1, ?)"
_MAX_ID_SQLITE = "SELECT coalesce(max(id), 0) FROM outcomes"
_REPLIES_PG = (
    "SELECT user_id, key, request_hash, status_code, body FROM idempotency "
    "WHERE user_id = ANY(?) AND key = ANY(?)"
)
_REPLIES_SQLITE = (
    "SELECT user_id, key, request_hash, status_code, body FROM idempotency "
    "WHERE user_id IN (SELECT value FROM json_each(?)) AND key IN (SELECT value FROM json_each(?))"
)
_OUTCOME_COLUMNS = (
    "decision_id",
    "offer_id",
    "msisdn",
    "channel",
    "outcome",
    "reason",
    "callback_at",
    "user_id",
    "store_id",
    "created_at",
)


_REPLY_COLUMNS = ("user_id", "key", "request_hash", "status_code", "body", "created_at")
_INSERT_REPLY = f"INSERT INTO idempotency ({', '.join(_REPLY_COLUMNS)})"
_REPLY_TYPES = pg_array_types(IdempotencyRecord.__table__, _REPLY_COLUMNS)  # type: ignore[arg-type]
_INSERT_OUTCOME = f"INSERT INTO outcomes (id, {', '.join(_OUTCOME_COLUMNS)})"
_OUTCOME_TYPES = pg_array_types(
    Outcome.__table__,  # type: ignore[arg-type]
    ("id", *_OUTCOME_COLUMNS),
)


class _Read(msgspec.Struct, frozen=True):
    decision: ShownDecision | None
    shown: bool
    estimate: float | None  # before learning, else as served
    prior: list[tuple[str, str]]  # the decision's outcomes so far: (offer id, kind)


class _Batch:
    """What a batch's prelude read for all of its outcomes (a batch of one when group commit is
    off), kept current as each succeeds: a later outcome of the batch on the same decision, or
    with the same Idempotency-Key, sees the earlier one although its rows are written only at
    the end of the batch."""

    __slots__ = ("ids", "reads", "replies")

    def __init__(
        self,
        reads: dict[str, list[tuple[Any, ...]]],
        replies: dict[tuple[str, str], tuple[str, int, bytes]],
        ids: list[int],
    ) -> None:
        self.reads = reads
        self.replies = replies
        self.ids = ids  # outcome ids drawn for the batch, one per write


# A write's key for the prelude: (decision id, user id, Idempotency-Key or None).
_Key = tuple[str, str, str | None]


def _read_batch(session: Session, keys: list[_Key]) -> None:
    """The prelude of a batch of outcomes (group_commit.py): its decisions locked and read,
    the answers to its Idempotency-Keys, and an outcome id per write, for all at once."""
    sqlite = is_sqlite(session)
    ids = sorted({decision_id for decision_id, _, _ in keys})
    reads: dict[str, list[tuple[Any, ...]]] = {i: [] for i in ids}
    if sqlite:
        listed = _encode(ids).decode()
        rows = fetch(session, _READ_SQLITE, (listed, listed))
    else:
        fetch(session, _LOCK_PG, (ids,))
        rows = fetch(session, _READ_PG, (ids, ids))
    for row in rows:
        reads[row[1]].append(row)
    wanted = {(user, key) for _, user, key in keys if key is not None}
    replies: dict[tuple[str, str], tuple[str, int, bytes]] = {}
    if wanted:
        users = sorted({user for user, _ in wanted})
        idem = sorted({key for _, key in wanted})
        if sqlite:
            params: tuple[Any, ...] = (_encode(users).decode(), _encode(idem).decode())
        else:
            params = (users, idem)
        for user, key, request_hash, status_code, body in fetch(
            session, _REPLIES_SQLITE if sqlite else _REPLIES_PG, params
        ):
            if (user, key) in wanted:
                replies[(user, key)] = (request_hash, status_code, bytes(body))
    if sqlite:  # the batch holds SQLite's one write lock: nobody else takes an id meanwhile
        (top,) = fetch(session, _MAX_ID_SQLITE, ())[0]
        drawn = list(range(int(top) + len(keys), int(top), -1))
    else:
        drawn = [row[0] for row in fetch(session, _IDS_PG, (len(keys),))][::-1]
    session.info[_BATCH] = _Batch(reads, replies, drawn)


def _insert_outcomes(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """The outcome rows of a batch (``id`` and _OUTCOME_COLUMNS), in one statement."""
    _insert(session, _INSERT_OUTCOME, _OUTCOME_TYPES, rows)


def _insert_replies(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """The answers to remember for Idempotency-Keys (_REPLY_COLUMNS), in one statement."""
    _insert(session, _INSERT_REPLY, _REPLY_TYPES, rows)


def _insert(
    session: Session, head: str, types: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    sqlite = is_sqlite(session)
    if sqlite:
        rows = [tuple(as_stored(v, sqlite=True) for v in row) for row in rows]
    cursor = session.connection().connection.cursor()
    try:
        insert_values(cursor, head, rows, sqlite=sqlite, pg_types=types)
    finally:
        cursor.close()


def _read(batch: _Batch, decision_id: str, offer_id: str) -> _Read:
    rows = batch.reads[decision_id]
    decision: ShownDecision | None = None
    shown: ShownOffer | None = None
    prior: list[tuple[str, str]] = []
    for kind, _id, *values in rows:
        if kind == 0:
            fields = dict(zip(_DECISION_COLUMNS, values[:-1], strict=True))
            fields["created_at"] = utc(fields["created_at"])
            decision = ShownDecision(**fields)
            shown = decode_offers(values[-1]).get(offer_id)
        else:
            prior.append((values[0], values[2]))
    estimate = expected(shown) if shown is not None else None
    return _Read(decision, shown is not None, estimate, prior)


class Recorded(msgspec.Struct, frozen=True):
    status_code: int  # 201 written now; 200 a second click on an accepted offer
    response: OutcomeResponse
    replayed: bool = False  # the first answer to the same Idempotency-Key, nothing written


class _Pending:
    """One outcome on its way to the database: what was checked, and the write to run."""

    def __init__(
        self,
        service: OutcomeService,
        version_id: int,
        catalog: Catalog,
        actor: Actor,
        decision_id: str,
        request: OutcomeRequest,
    ) -> None:
        self.service = service
        self.version_id = version_id
        self.catalog = catalog
        self.actor = actor
        self.decision_id = decision_id
        self.request = request
        self.idempotency_key: str | None = None
        self.request_hash = ""
        self.customer: CustomerData | None = None
        self.wait_until: float | None = None  # monotonic deadline for the decision to land

    @property
    def key(self) -> _Key:
        """What the batch's prelude reads for this outcome."""
        return (self.decision_id, self.actor.user_id, self.idempotency_key)

    def run(self, session: Session) -> Recorded:
        return self.service._record(
            session,
            self.catalog,
            self.customer,
            self.actor,
            self.decision_id,
            self.request,
            self.idempotency_key,
            self.request_hash,
        )


class OutcomeService:
    def __init__(
        self,
        db: Database,
        reader: WarehouseReader,
        clock: Clock,
        impressions: ImpressionWriter | None = None,
        committer: GroupCommitter | None = None,
    ) -> None:
        """``impressions``: this process's batched decision writer, if any: an outcome waits
        for its decision to be written (nextbest/impressions.py). ``committer``: this
        process's group commit, if started (nextbest/storage/group_commit.py)."""
        self.db = db
        self.reader = reader
        self.clock = clock
        self.impressions = impressions
        self.committer = committer or GroupCommitter(db)

    def record(
        self,
        actor: Actor,
        decision_id: str,
        request: OutcomeRequest,
        idempotency_key: str | None = None,
    ) -> Recorded:
        """Record the outcome, waiting in this thread for its decision and its commit.

        No read ahead of the write to see whether the decision is stored yet: the write finds
        out itself (on PostgreSQL a round trip fewer of the seven an outcome makes), and a
        decision another node has not written yet is waited for by trying again."""
        write = self._prepare(actor, decision_id, request, idempotency_key)
        write.customer = self._customer_of(write)
        conflicts = 0
        while True:
            try:
                return self.committer.run(write.run, write.key, _read_batch, lazy=True)
            except IntegrityError:
                # Concurrent writers on PostgreSQL may race to the unique indexes; the loser
                # retries and then finds the winner's rows.
                conflicts += 1
                if conflicts == 3:
                    raise
            except NotFound as exc:
                if exc.field != "decision_id" or not self._still_waiting(write):
                    raise
                time.sleep(0.01)
                write.customer = self._customer_of(write)

    async def record_async(
        self,
        actor: Actor,
        decision_id: str,
        request: OutcomeRequest,
        idempotency_key: str | None = None,
    ) -> Recorded:
        """``record`` for a caller on the event loop with group commit running: the outcome
        joins the batch being committed without holding a thread while it waits, so every
        outcome in flight shares one commit (with a worker thread each, a batch was as small
        as the thread pool: six, docs/performance.md). A sale's read of the customer comes
        first: on the loop from SQLite's local file, in a thread from PostgreSQL."""
        write = self._prepare(actor, decision_id, request, idempotency_key)
        await self._customer_async(write)
        conflicts = 0
        while True:
            try:
                return await asyncio.wrap_future(
                    self.committer.submit(write.run, write.key, _read_batch, lazy=True)
                )
            except IntegrityError:
                conflicts += 1
                if conflicts == 3:
                    raise
            except NotFound as exc:
                if exc.field != "decision_id" or not self._still_waiting(write):
                    raise
                await asyncio.sleep(0.01)
                await self._customer_async(write)

    async def _customer_async(self, write: _Pending) -> None:
        if write.request.outcome != "accepted":
            return
        if self.db.is_sqlite:
            write.customer = self._customer_of(write)
        else:
            write.customer = await asyncio.to_thread(self._customer_of, write)

    def _prepare(
        self,
        actor: Actor,
        decision_id: str,
        request: OutcomeRequest,
        idempotency_key: str | None,
    ) -> _Pending:
        """Check what can be checked before any write (400s and 503s raised here)."""
        if idempotency_key is not None:
            idempotency_key = idempotency_key.strip()
            if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
                raise BadInput(
                    f"Idempotency-Key: expected 1-{MAX_IDEMPOTENCY_KEY} characters",
                    field="Idempotency-Key",
                )
        self._check_shape(request)
        request_hash = hashlib.sha256(decision_id.encode() + b"\0" + _encode(request)).hexdigest()
        try:
            active = self.reader.active()
        except NoDataLoaded as exc:
            raise Unavailable(str(exc)) from None
        write = _Pending(self, active.id, active.catalog, actor, decision_id, request)
        write.idempotency_key = idempotency_key
        write.request_hash = request_hash
        writer = self.impressions
        if writer is not None and writer.batching:
            # A decision answered a moment ago may not be stored yet: written by this
            # process's writer (flushed here), or by another node's (waited for, a few of its
            # batch intervals at most). An unknown decision then answers 404 as usual.
            writer.flush()
            write.wait_until = time.monotonic() + 0.2 + 4 * writer.interval
        return write

    def _still_waiting(self, write: _Pending) -> bool:
        """True while a decision not stored yet is still worth waiting for."""
        if write.wait_until is None or time.monotonic() >= write.wait_until:
            write.wait_until = None
            return False
        return True

    def _customer_of(self, write: _Pending) -> CustomerData | None:
        # Read before the write transaction: never hold one connection while asking for another.
        if write.request.outcome != "accepted":
            return None
        return self._customer(write.version_id, write.decision_id)

    def _check_shape(self, request: OutcomeRequest) -> None:
        now = self.clock.now()
        if request.outcome == "callback":
            if request.callback_at is None:
                raise BadInput("callback_at: required when the outcome is callback", "callback_at")
            if request.callback_at.tzinfo is None:
                raise BadInput(
                    "callback_at: needs a UTC offset, e.g. 2026-11-24T10:00:00+08:00",
                    "callback_at",
                )
            if request.callback_at <= now:
                raise BadInput("callback_at: must be in the future", "callback_at")
        elif request.callback_at is not None:
            raise BadInput("callback_at: only allowed with the outcome callback", "callback_at")

    def _record(
        self,
        session: Session,
        catalog: Catalog,
        customer: CustomerData | None,
        actor: Actor,
        decision_id: str,
        request: OutcomeRequest,
        idempotency_key: str | None,
        request_hash: str,
    ) -> Recorded:
        """One outcome of a batch: its reads made by the batch's prelude (``_read_batch``), its
        rows deferred to the batch's end, a sale's written at once in its savepoint."""
        now = self.clock.now()
        sqlite = is_sqlite(session)
        batch: _Batch = session.info[_BATCH]
        if idempotency_key is not None:
            previous = batch.replies.get((actor.user_id, idempotency_key))
            if previous is not None:
                stored_hash, status_code, body = previous
                if stored_hash != request_hash:
                    raise Unprocessable(
                        "Idempotency-Key was already used for a different request",
                        field="Idempotency-Key",
                    )
                return Recorded(status_code, _decode(body), replayed=True)
        read = _read(batch, decision_id, request.offer_id)
        decision = read.decision
        if decision is None:
            raise NotFound(f"decision {decision_id!r} not found", field="decision_id")
        if not read.shown:
            raise Unprocessable(
                f"offer_id: {request.offer_id!r} was not offered in decision {decision_id}",
                field="offer_id",
            )
        reason = request.reason.strip() if request.reason else None
        sale = request.outcome == "accepted"
        if sale:
            # A sale is written at once (its subscription and outbox job refer to the outcome
            # row), in its own savepoint: opened before its reads.
            GroupCommitter.writing(session)
            existing = session.scalar(
                select(Subscription).where(
                    Subscription.msisdn == decision.msisdn,
                    Subscription.offer_id == request.offer_id,
                    Subscription.status.in_(("pending", "active")),
                )
            )
            if existing is not None:
                if existing.decision_id == decision_id:
                    # A second click on the same button: the sale already stands.
                    first = session.get(Outcome, existing.outcome_id)
                    assert first is not None
                    recorded = Recorded(
                        200,
                        _response(
                            first.id,
                            decision_id,
                            first.offer_id,
                            first.outcome,
                            first.created_at,
                            first.user_id,
                            existing,
                        ),
                    )
                    self._remember(
                        session, batch, actor, idempotency_key, request_hash, recorded, now
                    )
                    return recorded
                raise Conflict(
                    f"offer_id: the customer already holds {request.offer_id!r} "
                    f"(subscription {existing.id}, {existing.status})",
                    field="offer_id",
                )
            problem = _no_longer_eligible(
                session, catalog, customer, decision, request.offer_id, now
            )
            if problem is not None:
                raise Unprocessable(
                    f"offer_id: {request.offer_id!r} is no longer eligible for this customer: "
                    f"{problem}",
                    field="offer_id",
                )
        # Plain SQL (the ORM's unit of work costs more than the insert).
        values = (
            decision_id,
            request.offer_id,
            decision.msisdn,
            decision.channel,
            request.outcome,
            reason,
            request.callback_at,
            actor.user_id,
            actor.store_id,
            now,
        )
        subscription: Subscription | None = None
        outcome_id = batch.ids.pop()  # drawn by the batch (SQLite's next rowid may be one)
        if sale:
            _insert_outcomes(session, [(outcome_id, *values)])
        else:
            GroupCommitter.defer(session, _insert_outcomes, [(outcome_id, *values)])
        if sale:
            offer = catalog.offer(request.offer_id)
            subscription = Subscription(
                msisdn=decision.msisdn,
                offer_id=request.offer_id,
                service=offer.service if offer else "",
                decision_id=decision_id,
                outcome_id=outcome_id,
                user_id=actor.user_id,
                store_id=actor.store_id,
                channel=decision.channel,
                status="pending",
                created_at=now,
                updated_at=now,
                price=offer.price if offer else 0.0,
            )
            session.add(subscription)
            session.flush()
            # The outbox: committed with the outcome, delivered by the worker.
            session.add(
                ProvisioningJob(
                    subscription_id=subscription.id,
                    idempotency_key=f"nb-sub-{subscription.id}-{decision_id[-12:]}",
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.flush()
        # Reports: count what this outcome is the first of, in this same transaction (with
        # group commit, summed with the batch's other outcomes before the commit).
        self.committer.defer(
            session,
            upsert_rollups,
            outcome_rows(
                decision,
                kind=request.outcome,
                offer_id=request.offer_id,
                price=subscription.price if subscription else None,
                prior=read.prior,
                estimate=read.estimate,
                sqlite=sqlite,
            ),
        )
        recorded = Recorded(
            201,
            _response(
                outcome_id,
                decision_id,
                request.offer_id,
                request.outcome,
                now,
                actor.user_id,
                subscription,
            ),
        )
        self._remember(session, batch, actor, idempotency_key, request_hash, recorded, now)
        # The batch's later outcomes of this decision count it as prior.
        batch.reads[decision_id].append((1, decision_id, request.offer_id, None, request.outcome))
        return recorded

    def _customer(self, version_id: int, decision_id: str) -> CustomerData | None:
        with self.db.read() as session:
            msisdn = session.scalar(select(Decision.msisdn).where(Decision.id == decision_id))
        if msisdn is None:
            return None  # the write transaction answers 404
        try:
            return self.reader.customer(version_id, msisdn)
        except VersionRetired:
            return self.reader.customer(self.reader.active().id, msisdn)

    @staticmethod
    def _remember(
        session: Session,
        batch: _Batch,
        actor: Actor,
        key: str | None,
        request_hash: str,
        recorded: Recorded,
        now: datetime,
    ) -> None:
        if key is None:
            return
        body = _encode(recorded.response)
        row = (actor.user_id, key, request_hash, recorded.status_code, body, now)
        # At the batch's end with its other rows; a retry in the same batch replays it.
        GroupCommitter.defer(session, _insert_replies, [row])
        batch.replies[(actor.user_id, key)] = (request_hash, recorded.status_code, body)

    def subscription(self, subscription_id: int) -> SubscriptionOut:
        with self.db.read() as session:
            row = session.get(Subscription, subscription_id)
            if row is None:
                raise NotFound(f"subscription {subscription_id} not found", field="id")
            return _subscription_out(row)

    def retry(self, subscription_id: int) -> SubscriptionOut:
        """An admin sends a failed sale to provisioning again, from a fresh attempt count."""
        now = self.clock.now()
        with self.db.write() as session:
            row = session.get(Subscription, subscription_id)
            if row is None:
                raise NotFound(f"subscription {subscription_id} not found", field="id")
            if row.status != "failed":
                raise Conflict(
                    f"subscription {subscription_id} is {row.status}; only a failed one is retried"
                )
            job = session.scalar(
                select(ProvisioningJob).where(ProvisioningJob.subscription_id == subscription_id)
            )
            clash = session.scalar(
                select(Subscription.id).where(
                    Subscription.msisdn == row.msisdn,
                    Subscription.offer_id == row.offer_id,
                    Subscription.status.in_(("pending", "active")),
                )
            )
            if clash is not None:
                raise Conflict(f"the customer already has subscription {clash} for this offer")
            row.status = "pending"
            row.status_reason = None
            row.updated_at = now
            if job is not None:
                job.status = "pending"
                job.attempts = 0
                job.next_attempt_at = now
                job.lease_until = None
                job.updated_at = now
            session.flush()
            return _subscription_out(row)


def _subscription_out(row: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=row.id,
        offer_id=row.offer_id,
        status=row.status,
        status_reason=row.status_reason,
        created_at=row.created_at,
    )


def _response(
    outcome_id: int,
    decision_id: str,
    offer_id: str,
    kind: str,
    recorded_at: datetime,
    recorded_by: str,
    subscription: Subscription | None,
) -> OutcomeResponse:
    return OutcomeResponse(
        outcome_id=outcome_id,
        decision_id=decision_id,
        offer_id=offer_id,
        outcome=kind,
        recorded_at=recorded_at,
        recorded_by=recorded_by,
        subscription=_subscription_out(subscription) if subscription else None,
    )


# Rules that make a sale impossible whatever the customer now says (a decline minutes ago, or
# a re-contact window, does not stop a customer who changes their mind).
_HARD_RULES = frozenset(
    {
        "validity",
        "held",
        "exclusive",
        "brand",
        "segment",
        "handset",
        "arrears",
        "unknown_subscriber",
    }
)


def _no_longer_eligible(
    session: Session,
    catalog: Catalog,
    customer: CustomerData | None,
    decision: ShownDecision,
    offer_id: str,
    now: datetime,
) -> str | None:
    """Why the offer cannot be sold now (the extract changed, the offer expired, a sibling was
    bought meanwhile), or None."""
    if catalog.offer(offer_id) is None:
        return "the offer is no longer in the catalog"
    if customer is None:
        return None
    history = list(customer.contacts)
    # A live sale of this very offer is the unique index's business (a concurrent double
    # click must replay the first answer, not be told the offer is held).
    history += [
        event
        for event in live_history(session, decision.msisdn, now - catalog.history_window()).events
        if not (event.kind == "accepted" and event.offer_id == offer_id)
    ]
    screening = screen(catalog, customer.profile, history, decision.channel, now)
    for removed in screening.suppressed:
        if removed.offer_id == offer_id and removed.rule in _HARD_RULES:
            return removed.detail
    return None
