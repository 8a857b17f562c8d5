"""The outbox worker: deliver accepted sales to the provisioning adapter, exactly as often as
needed and no more.

Jobs are written in the same transaction as the accepted outcome, so a sale the clerk was told
about always has a job. The worker claims due jobs under a lease (PostgreSQL: FOR UPDATE SKIP
LOCKED; SQLite: the write lock), calls the adapter outside any transaction, then records the
answer together with the subscription's status. A worker killed mid-delivery leaves the job
leased; when the lease runs out another pass delivers it again with the same idempotency key.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from sqlalchemy import or_, select

from nextbest.clock import Clock
from nextbest.provisioning import (
    Delivered,
    Provisioner,
    ProvisioningRequest,
    ProvisioningResult,
    Rejected,
    Retry,
)
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Decision, ProvisioningJob, Subscription

__all__ = ["OutboxWorker", "backoff"]

log = logging.getLogger("nextbest.outbox")


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full-range jitter in [0.5, 1.5) of the step."""
    step = min(cap, base * (2 ** max(0, attempts - 1)))
    return float(step * (0.5 + rng.random()))


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        provisioner: Provisioner,
        clock: Clock,
        settings: Settings,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.provisioner = provisioner
        self.clock = clock
        self.settings = settings
        self.rng = rng or random.Random()
        self.delivered = 0
        self.failed = 0

    def run_once(self, limit: int = 50) -> int:
        """Deliver what is due now; returns how many jobs were attempted."""
        claimed = self._claim(limit)
        for job_id, request in claimed:
            try:
                result: ProvisioningResult = self.provisioner.provision(request)
            except Exception as exc:  # an adapter's bug must not stop the others' sales
                log.exception("provisioning adapter raised for job %s", job_id)
                result = Retry(f"adapter error: {type(exc).__name__}: {exc}")
            self._settle(job_id, result)
        return len(claimed)

    def run_forever(self, stop: threading.Event) -> None:
        poll = self.settings.worker_poll_seconds
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("outbox pass failed; retrying")
                busy = 0
            if not busy:
                stop.wait(poll)

    def pending(self) -> int:
        with self.db.read() as session:
            rows = session.scalars(
                select(ProvisioningJob.id).where(
                    ProvisioningJob.status.in_(("pending", "delivering"))
                )
            )
            return len(list(rows))

    def _claim(self, limit: int) -> list[tuple[int, ProvisioningRequest]]:
        now = self.clock.now()
        lease = now + timedelta(seconds=self.settings.provisioning_lease_seconds)
        claimed: list[tuple[int, ProvisioningRequest]] = []
        with self.db.write() as session:
            query = (
                select(ProvisioningJob)
                .where(
                    or_(
                        (ProvisioningJob.status == "pending")
                        & (ProvisioningJob.next_attempt_at <= now),
                        (ProvisioningJob.status == "delivering")
                        & (ProvisioningJob.lease_until < now),
                    )
                )
                .order_by(ProvisioningJob.next_attempt_at)
                .limit(limit)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            for job in session.scalars(query):
                subscription = session.get(Subscription, job.subscription_id)
                assert subscription is not None
                decision = session.get(Decision, subscription.decision_id)
                job.status = "delivering"
                job.lease_until = lease
                job.attempts += 1
                job.updated_at = now
                claimed.append(
                    (
                        job.id,
                        ProvisioningRequest(
                            idempotency_key=job.idempotency_key,
                            subscription_id=subscription.id,
                            msisdn=subscription.msisdn,
                            offer_id=subscription.offer_id,
                            service=subscription.service,
                            price=subscription.price,
                            channel=subscription.channel,
                            sold_by=subscription.user_id,
                            store_id=subscription.store_id,
                            decision_id=decision.id if decision else subscription.decision_id,
                            accepted_at=subscription.created_at,
                        ),
                    )
                )
        return claimed

    def _settle(self, job_id: int, result: ProvisioningResult) -> None:
        now = self.clock.now()
        with self.db.write() as session:
            job = session.get(ProvisioningJob, job_id)
            if job is None or job.status != "delivering":
                return  # settled by another worker after our lease ran out
            subscription = session.get(Subscription, job.subscription_id)
            assert subscription is not None
            job.updated_at = now
            job.lease_until = None
            if isinstance(result, Delivered):
                job.status = "done"
                job.reference = result.reference
                job.last_error = None
                subscription.status = "active"
                subscription.status_reason = None
                self.delivered += 1
            elif isinstance(result, Rejected) or (
                job.attempts >= self.settings.provisioning_max_attempts
            ):
                reason = result.reason
                if not isinstance(result, Rejected):
                    reason = f"gave up after {job.attempts} attempts: {reason}"
                job.status = "failed"
                job.last_error = reason
                subscription.status = "failed"
                subscription.status_reason = reason
                self.failed += 1
            else:
                job.status = "pending"
                job.last_error = result.reason
                delay = backoff(
                    job.attempts,
                    self.settings.provisioning_backoff_seconds,
                    self.settings.provisioning_backoff_max_seconds,
                    self.rng,
                )
                job.next_attempt_at = now + timedelta(seconds=delay)
            subscription.updated_at = now
