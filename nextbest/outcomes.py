"""The outcome service: record what the customer said, once, durably.

Everything one outcome changes (the outcome row, the pending subscription, the idempotency
record) is written in one transaction, committed before the answer goes out. A retry with the
same Idempotency-Key, or a second click on the same offer of the same decision, gets the first
answer back and writes nothing.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

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
from nextbest.rollups import record_outcome
from nextbest.storage.db import Database
from nextbest.storage.group_commit import GroupCommitter
from nextbest.storage.ledger import live_history
from nextbest.storage.models import (
    Decision,
    IdempotencyRecord,
    Outcome,
    ProvisioningJob,
    Subscription,
)
from nextbest.storage.raw import fetch, insert_returning_id, utc
from nextbest.storage.warehouse import CustomerData, NoDataLoaded, VersionRetired, WarehouseReader
from nextbest.wire import OutcomeRequest, OutcomeResponse, SubscriptionOut

__all__ = ["OutcomeService", "Recorded"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(OutcomeResponse).decode
MAX_IDEMPOTENCY_KEY = 200


# The decision's columns an outcome needs (plain SQL: the ORM's get costs more than the read).
_DECISION_COLUMNS = (
    "id",
    "created_at",
    "msisdn",
    "channel",
    "user_id",
    "store_id",
    "campaign_id",
    "segment",
    "experiment",
    "arm",
)
_DECISION_SQL = f"SELECT {', '.join(_DECISION_COLUMNS)} FROM decisions WHERE id = ?"
_SHOWN_SQL = "SELECT 1 FROM decision_offers WHERE decision_id = ? AND offer_id = ?"
_EXISTS_SQL = "SELECT 1 FROM decisions WHERE id = ?"


def _shown_decision(session: Session, decision_id: str) -> Decision | None:
    """The decision as a detached object carrying the columns above (never flushed)."""
    rows = fetch(session, _DECISION_SQL, (decision_id,))
    if not rows:
        return None
    values = dict(zip(_DECISION_COLUMNS, rows[0], strict=True))
    values["created_at"] = utc(values["created_at"])
    return Decision(**values)


class Recorded(msgspec.Struct, frozen=True):
    status_code: int  # 201 written now; 200 a second click on an accepted offer
    response: OutcomeResponse
    replayed: bool = False  # the first answer to the same Idempotency-Key, nothing written


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
        for its decision to be written (nextbest/impressions.py). ``committer``: SQLite's
        group commit, if started (nextbest/storage/group_commit.py)."""
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
        if idempotency_key is not None:
            idempotency_key = idempotency_key.strip()
            if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
                raise BadInput(
                    f"Idempotency-Key: expected 1-{MAX_IDEMPOTENCY_KEY} characters",
                    field="Idempotency-Key",
                )
        self._check_shape(request)
        request_hash = hashlib.sha256(decision_id.encode() + b"\0" + _encode(request)).hexdigest()
        # Read before the write transaction: never hold one connection while asking for another.
        try:
            active = self.reader.active()
        except NoDataLoaded as exc:
            raise Unavailable(str(exc)) from None
        catalog = active.catalog
        self._await_decision(decision_id)
        customer = None
        if request.outcome == "accepted":
            customer = self._customer(active.id, decision_id)
        # Concurrent writers on PostgreSQL may race to the unique indexes; the loser retries and
        # then finds the winner's rows.
        for attempt in range(3):
            try:
                return self.committer.run(
                    lambda session: self._record(
                        session,
                        catalog,
                        customer,
                        actor,
                        decision_id,
                        request,
                        idempotency_key,
                        request_hash,
                    )
                )
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _await_decision(self, decision_id: str) -> None:
        """With batched impressions, a decision answered a moment ago may not be stored yet:
        written by this process's writer (flushed here), or by another node's (waited for, a
        few of its batch intervals at most). An unknown decision then answers 404 as usual."""
        writer = self.impressions
        if writer is None or not writer.batching:
            return
        writer.flush()
        deadline = time.monotonic() + 0.2 + 4 * writer.interval
        while True:
            with self.db.raw_read() as reads:
                if fetch(reads, _EXISTS_SQL, (decision_id,)):
                    return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

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
        now = self.clock.now()
        if idempotency_key is not None:
            previous = session.get(IdempotencyRecord, (actor.user_id, idempotency_key))
            if previous is not None:
                if previous.request_hash != request_hash:
                    raise Unprocessable(
                        "Idempotency-Key was already used for a different request",
                        field="Idempotency-Key",
                    )
                return Recorded(previous.status_code, _decode(previous.body), replayed=True)
        decision = _shown_decision(session, decision_id)
        if decision is None:
            raise NotFound(f"decision {decision_id!r} not found", field="decision_id")
        if not fetch(session, _SHOWN_SQL, (decision_id, request.offer_id)):
            raise Unprocessable(
                f"offer_id: {request.offer_id!r} was not offered in decision {decision_id}",
                field="offer_id",
            )
        reason = request.reason.strip() if request.reason else None
        if request.outcome == "accepted":
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
                    recorded = Recorded(200, _response(first, existing))
                    self._remember(session, actor, idempotency_key, request_hash, recorded, now)
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
        row = {
            "decision_id": decision_id,
            "offer_id": request.offer_id,
            "msisdn": decision.msisdn,
            "channel": decision.channel,
            "outcome": request.outcome,
            "reason": reason,
            "callback_at": request.callback_at,
            "user_id": actor.user_id,
            "store_id": actor.store_id,
            "created_at": now,
        }
        # Plain SQL (the ORM's unit of work costs more than the insert); the object is only
        # carried to the answer and the report counts, never added to the session.
        outcome_id = insert_returning_id(session, Outcome.__table__, row)  # type: ignore[arg-type]
        outcome = Outcome(id=outcome_id, **row)
        subscription: Subscription | None = None
        if request.outcome == "accepted":
            offer = catalog.offer(request.offer_id)
            subscription = Subscription(
                msisdn=decision.msisdn,
                offer_id=request.offer_id,
                service=offer.service if offer else "",
                decision_id=decision_id,
                outcome_id=outcome.id,
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
        # Reports: count what this outcome is the first of, in this same transaction.
        record_outcome(session, decision, outcome, subscription)
        recorded = Recorded(201, _response(outcome, subscription))
        self._remember(session, actor, idempotency_key, request_hash, recorded, now)
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
        actor: Actor,
        key: str | None,
        request_hash: str,
        recorded: Recorded,
        now: object,
    ) -> None:
        if key is None:
            return
        session.add(
            IdempotencyRecord(
                user_id=actor.user_id,
                key=key,
                request_hash=request_hash,
                status_code=recorded.status_code,
                body=_encode(recorded.response),
                created_at=now,
            )
        )
        session.flush()

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


def _response(outcome: Outcome, subscription: Subscription | None) -> OutcomeResponse:
    return OutcomeResponse(
        outcome_id=outcome.id,
        decision_id=outcome.decision_id,
        offer_id=outcome.offer_id,
        outcome=outcome.outcome,
        recorded_at=outcome.created_at,
        recorded_by=outcome.user_id,
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
    decision: Decision,
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
        for event in live_history(session, decision.msisdn, now - catalog.history_window())
        if not (event.kind == "accepted" and event.offer_id == offer_id)
    ]
    screening = screen(catalog, customer.profile, history, decision.channel, now)
    for removed in screening.suppressed:
        if removed.offer_id == offer_id and removed.rule in _HARD_RULES:
            return removed.detail
    return None
