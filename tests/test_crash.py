"""A real server, a stream of sales, SIGKILL in the middle: nothing acknowledged is lost and
nothing is provisioned twice. Also: a far side that hangs does not slow the clerk down."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_extract
from server_process import ServerProcess
from sqlalchemy import func, select
from stub_boss import StubBoss

from nextbest.clock import SystemClock
from nextbest.keys import create_key
from nextbest.loader import load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Outcome, ProvisioningJob, Subscription

pytestmark = pytest.mark.slow


def _prepare(settings: Settings, tmp_path: Path) -> tuple[Database, str]:
    # Unknown numbers get the catalog's general offers: plenty of distinct sales to make.
    extract = write_extract(tmp_path / "extract")
    db = Database(settings)
    db.create_schema()
    load_extract(db, extract, SystemClock())
    key = create_key(
        db, role="clerk", user_id="clerk-ana", store_id="NJ-0001", now=SystemClock().now()
    )
    return db, key


def _env(settings: Settings, boss: StubBoss) -> dict[str, str]:
    return {
        "NEXTBEST_DATABASE_URL": settings.database_url,
        "NEXTBEST_PROVISIONING": "http",
        "NEXTBEST_PROVISIONING_URL": boss.url,
        "NEXTBEST_PROVISIONING_TIMEOUT_SECONDS": "1",
        "NEXTBEST_PROVISIONING_BACKOFF_SECONDS": "0.2",
        "NEXTBEST_PROVISIONING_BACKOFF_MAX_SECONDS": "1",
        "NEXTBEST_PROVISIONING_LEASE_SECONDS": "3",
        "NEXTBEST_WORKER_POLL_SECONDS": "0.1",
        "NEXTBEST_LOG_LEVEL": "warning",
        # 200 sales in a few seconds from one key: far past a clerk's look-up limit.
        "NEXTBEST_RATE_LIMIT_PER_MINUTE": "0",
    }


def _sell(client: httpx.Client, key: str, i: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    msisdn = f"1390100{i:04d}"
    decision = client.post(
        "/v1/decisions", json={"msisdn": msisdn, "channel": "store"}, headers=headers
    )
    decision.raise_for_status()
    body = decision.json()
    offer = body["offers"][0]["offer_id"]
    outcome = client.post(
        f"/v1/decisions/{body['decision_id']}/outcomes",
        json={"offer_id": offer, "outcome": "accepted"},
        headers={**headers, "Idempotency-Key": f"sale-{i}"},
    )
    outcome.raise_for_status()
    result: dict[str, Any] = outcome.json()
    return result


def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    db, key = _prepare(settings, tmp_path)
    with StubBoss() as boss:
        server = ServerProcess(_env(settings, boss), tmp_path / "server.log")
        server.start()
        acknowledged: list[dict[str, Any]] = []
        unanswered: list[int] = []
        killed = threading.Event()

        def stream() -> None:
            with httpx.Client(base_url=server.url, timeout=5) as client:
                for i in range(200):
                    if killed.is_set() and len(unanswered) > 5:
                        return
                    try:
                        acknowledged.append(_sell(client, key, i))
                    except httpx.HTTPError:
                        unanswered.append(i)

        client_thread = threading.Thread(target=stream)
        client_thread.start()
        while len(acknowledged) < 40 and client_thread.is_alive():
            time.sleep(0.01)
        server.kill()
        killed.set()
        client_thread.join(timeout=60)
        assert len(acknowledged) >= 40
        assert unanswered, "the kill should have cut the stream"

        server.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with db.read() as session:
                    open_jobs = session.scalar(
                        select(func.count())
                        .select_from(ProvisioningJob)
                        .where(ProvisioningJob.status.in_(("pending", "delivering")))
                    )
                if open_jobs == 0:
                    break
                time.sleep(0.2)
        finally:
            server.stop()

        with db.read() as session:
            stored = set(session.scalars(select(Outcome.id)))
            subscriptions = {s.id: s for s in session.scalars(select(Subscription))}
            jobs = list(session.scalars(select(ProvisioningJob)))
        lost = [a for a in acknowledged if a["outcome_id"] not in stored]
        assert lost == []
        for ack in acknowledged:
            assert ack["subscription"]["id"] in subscriptions
        assert {s.status for s in subscriptions.values()} == {"active"}
        keys = {job.idempotency_key for job in jobs}
        assert set(boss.applied) == keys  # every sale delivered
        duplicated = sum(1 for k in keys if boss.calls[k] > 1)
        assert all(boss.applied[k] == 1 for k in keys)  # opened once each
        print(
            f"\ncrash test ({settings.database_url.split(':')[0]}): acknowledged "
            f"{len(acknowledged)}, stored sales {len(subscriptions)}, delivered {len(keys)}, "
            f"re-sent after the kill {duplicated}, lost 0"
        )
    db.dispose()


def test_hanging_far_side_does_not_hold_up_the_counter(settings: Settings, tmp_path: Path) -> None:
    db, key = _prepare(settings, tmp_path)
    with StubBoss() as boss:
        boss.mode = "hang"
        boss.hang_seconds = 6.0
        server = ServerProcess(_env(settings, boss), tmp_path / "server.log")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                started = time.monotonic()
                sales = [_sell(client, key, i) for i in range(10)]
                elapsed = time.monotonic() - started
            # Ten sales were answered while the far side was still hanging on the first call.
            assert elapsed < boss.hang_seconds
            assert all(s["subscription"]["status"] == "pending" for s in sales)
            # The worker tries meanwhile (it polls every 0.5 s: the sales may all be answered
            # before its first try), and hangs there.
            while not sum(boss.calls.values()) and time.monotonic() < started + 5:
                time.sleep(0.05)
            assert sum(boss.calls.values()) >= 1
            assert not boss.applied  # still hanging on that first call
            boss.mode = "ok"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with db.read() as session:
                    statuses = set(session.scalars(select(Subscription.status)))
                if statuses == {"active"}:
                    break
                time.sleep(0.2)
            assert statuses == {"active"}
            assert len(boss.applied) == 10
        finally:
            server.stop()
    db.dispose()
