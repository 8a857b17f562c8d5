"""Provisioning: adapters, the outbox worker, retries, and never a sale twice."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select
from stub_boss import StubBoss

from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.errors import Conflict
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outbox import OutboxWorker, backoff
from nextbest.outcomes import OutcomeService
from nextbest.provisioning import (
    Delivered,
    HttpProvisioner,
    LedgerProvisioner,
    ProvisioningRequest,
    ProvisioningResult,
    Rejected,
    Retry,
    load_provisioner,
)
from nextbest.settings import Settings, SettingsError
from nextbest.storage.db import Database
from nextbest.storage.models import ProvisioningJob, Subscription
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

CLERK = Actor(key_id=1, user_id="clerk-ana", role="clerk", store_id="NJ-0001")


def _request(key: str = "k1") -> ProvisioningRequest:
    from conftest import NOW

    return ProvisioningRequest(
        idempotency_key=key,
        subscription_id=1,
        msisdn="13900000001",
        offer_id="crbt_open",
        service="crbt",
        price=5.0,
        channel="store",
        sold_by="clerk-ana",
        store_id="NJ-0001",
        decision_id="d" * 32,
        accepted_at=NOW,
    )


@pytest.fixture
def boss() -> Iterator[StubBoss]:
    with StubBoss() as stub:
        yield stub


def test_http_adapter_maps_answers(boss: StubBoss) -> None:
    adapter = HttpProvisioner(boss.url, auth_header="Token s3cret", timeout=0.5)
    try:
        result = adapter.provision(_request("k-ok"))
        assert result == Delivered(reference="boss-k-ok")
        assert boss.bodies[-1]["msisdn"] == "13900000001"
        assert boss.bodies[-1]["idempotency_key"] == "k-ok"
        boss.mode = "fail"
        assert isinstance(adapter.provision(_request("k-fail")), Retry)
        boss.mode = "reject"
        refused = adapter.provision(_request("k-no"))
        assert isinstance(refused, Rejected)
        assert "customer in arrears" in refused.reason
        boss.mode = "hang"
        boss.hang_seconds = 2.0
        hung = adapter.provision(_request("k-hang"))
        assert isinstance(hung, Retry)
        assert "timed out" in hung.reason
    finally:
        adapter.close()


def test_http_adapter_unreachable_is_retried() -> None:
    adapter = HttpProvisioner("http://127.0.0.1:9/provision", timeout=0.5)
    try:
        result = adapter.provision(_request())
        assert isinstance(result, Retry)
        assert "unreachable" in result.reason
    finally:
        adapter.close()


def test_load_provisioner_choices() -> None:
    assert isinstance(load_provisioner(Settings()), LedgerProvisioner)
    with pytest.raises(SettingsError, match="NEXTBEST_PROVISIONING_URL"):
        load_provisioner(Settings(provisioning="http"))
    http = load_provisioner(Settings(provisioning="http", provisioning_url="http://x/y"))
    assert isinstance(http, HttpProvisioner)
    with pytest.raises(SettingsError, match="cannot load"):
        load_provisioner(Settings(provisioning="no.such.module:factory"))
    with pytest.raises(SettingsError, match="entry point"):
        load_provisioner(Settings(provisioning="nonesuch"))


def test_contrib_adapter_loads_by_module_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent))
    adapter = load_provisioner(
        Settings(provisioning="contrib.provisioning_adapter:factory", provisioning_url="http://b/")
    )
    assert callable(adapter.provision)


def test_backoff_grows_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    steps = [backoff(n, 2.0, 60.0, rng) for n in range(1, 9)]
    for n, delay in enumerate(steps, start=1):
        nominal = min(60.0, 2.0 * 2 ** (n - 1))
        assert 0.5 * nominal <= delay < 1.5 * nominal
    assert max(steps) < 90.0


class Scripted:
    """An adapter that answers from a list, then delivers; counts calls per key."""

    def __init__(self, answers: list[ProvisioningResult]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    def provision(self, request: ProvisioningRequest) -> ProvisioningResult:
        self.calls.append(request.idempotency_key)
        return self.answers.pop(0) if self.answers else Delivered(reference="ok")


class Shop:
    """A loaded database with services at a fixed clock."""

    def __init__(self, settings: Settings, db: Database, extract: Path, clock: FixedClock):
        self.settings = msgspec.structs.replace(
            settings, provisioning_backoff_seconds=10.0, provisioning_max_attempts=3
        )
        self.db = db
        self.clock = clock
        load_extract(db, extract, clock)
        reader = WarehouseReader(db, cache_size=100, version_check_seconds=0)
        self.decisions = DecisionService(db, reader, clock)
        self.outcomes = OutcomeService(db, reader, clock)

    def accept(self, msisdn: str = "13900000001") -> int:
        decision = self.decisions.decide(CLERK, DecisionRequest(msisdn=msisdn, channel="store"))
        offer = decision.offers[0].offer_id
        recorded = self.outcomes.record(
            CLERK, decision.decision_id, OutcomeRequest(offer_id=offer, outcome="accepted")
        )
        assert recorded.response.subscription is not None
        return recorded.response.subscription.id

    def worker(self, adapter: object) -> OutboxWorker:
        return OutboxWorker(self.db, adapter, self.clock, self.settings, random.Random(3))  # type: ignore[arg-type]

    def status(self, subscription_id: int) -> tuple[str, str | None]:
        with self.db.read() as session:
            row = session.get(Subscription, subscription_id)
            assert row is not None
            return row.status, row.status_reason


@pytest.fixture
def shop(settings: Settings, db: Database, standard_extract: Path, clock: FixedClock) -> Shop:
    return Shop(settings, db, standard_extract, clock)


def test_accepted_sale_is_pending_then_active(shop: Shop) -> None:
    sub = shop.accept()
    assert shop.status(sub) == ("pending", None)
    adapter = Scripted([])
    assert shop.worker(adapter).run_once() == 1
    assert shop.status(sub) == ("active", None)
    assert len(adapter.calls) == 1
    assert shop.worker(adapter).run_once() == 0  # nothing left


def test_transient_failures_back_off_then_give_up_then_admin_retry(shop: Shop) -> None:
    sub = shop.accept()
    adapter = Scripted([Retry("BOSS down")] * 3)
    worker = shop.worker(adapter)
    assert worker.run_once() == 1
    assert shop.status(sub) == ("pending", None)
    assert worker.run_once() == 0  # not due before the backoff
    shop.clock.advance(seconds=16)  # first step: 10 s * [0.5, 1.5)
    assert worker.run_once() == 1
    shop.clock.advance(seconds=31)
    assert worker.run_once() == 1
    status, reason = shop.status(sub)
    assert status == "failed"
    assert reason is not None and "gave up after 3 attempts: BOSS down" in reason
    shop.outcomes.retry(sub)
    assert shop.status(sub) == ("pending", None)
    assert worker.run_once() == 1
    assert shop.status(sub) == ("active", None)
    assert len(adapter.calls) == 4
    assert len(set(adapter.calls)) == 1  # the same idempotency key every time


def test_refusal_fails_at_once_and_retry_needs_a_failed_sale(shop: Shop) -> None:
    sub = shop.accept()
    with pytest.raises(Conflict, match="only a failed one"):
        shop.outcomes.retry(sub)
    shop.worker(Scripted([Rejected("customer in arrears")])).run_once()
    assert shop.status(sub) == ("failed", "customer in arrears")


def test_delivery_lost_with_its_worker_is_redelivered_after_the_lease(shop: Shop) -> None:
    sub = shop.accept()
    adapter = Scripted([])
    crashed = shop.worker(adapter)
    claimed = crashed._claim(10)  # claimed, then the process died before delivering
    assert len(claimed) == 1
    survivor = shop.worker(adapter)
    assert survivor.run_once() == 0  # still leased
    shop.clock.advance(seconds=shop.settings.provisioning_lease_seconds + 1)
    assert survivor.run_once() == 1
    assert shop.status(sub) == ("active", None)
    # the late worker's answer is ignored once the job is settled
    crashed._settle(claimed[0][0], Rejected("late"))
    assert shop.status(sub) == ("active", None)


def test_far_side_down_then_back_delivers_each_sale_once(shop: Shop, boss: StubBoss) -> None:
    boss.mode = "fail"
    subs = [shop.accept(m) for m in ("13900000001", "13900000003")]
    adapter = HttpProvisioner(boss.url, timeout=1.0)
    try:
        worker = shop.worker(adapter)
        assert worker.run_once() == 2
        assert all(shop.status(s)[0] == "pending" for s in subs)
        boss.mode = "ok"
        shop.clock.advance(seconds=20)
        assert worker.run_once() == 2
        assert all(shop.status(s) == ("active", None) for s in subs)
        assert sum(boss.applied.values()) == 2
        assert all(count == 1 for count in boss.applied.values())
    finally:
        adapter.close()


def test_fifty_concurrent_clicks_make_one_sale_and_one_delivery(shop: Shop) -> None:
    decision = shop.decisions.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    offer = decision.offers[0].offer_id
    statuses: list[int] = []
    outcome_ids: set[int] = set()
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def click(i: int) -> None:
        try:
            barrier.wait()
            recorded = shop.outcomes.record(
                CLERK,
                decision.decision_id,
                OutcomeRequest(offer_id=offer, outcome="accepted"),
                idempotency_key="same-key" if i % 2 else None,
            )
            statuses.append(recorded.status_code)
            outcome_ids.add(recorded.response.outcome_id)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(statuses) <= {200, 201}
    assert len(outcome_ids) == 1  # every click got the one sale back
    with shop.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1
        assert session.scalar(select(func.count()).select_from(ProvisioningJob)) == 1
    adapter = Scripted([])
    shop.worker(adapter).run_once()
    assert len(adapter.calls) == 1


def test_backoff_uses_settings(shop: Shop) -> None:
    shop.accept()
    worker = shop.worker(Scripted([Retry("x")]))
    worker.run_once()
    with shop.db.read() as session:
        job = session.scalars(select(ProvisioningJob)).one()
    wait = job.next_attempt_at - shop.clock.now()
    assert timedelta(seconds=5) <= wait < timedelta(seconds=15)
