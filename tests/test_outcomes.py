"""Outcomes: what the customer said changes the next decision; a sale is made once, however
often the button is clicked or the request retried; a refused request writes nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from helpers import Api, api, app_settings, ledger_counts
from sqlalchemy import select

from nextbest.api import create_app
from nextbest.clock import FixedClock
from nextbest.keys import create_key
from nextbest.loader import load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Outcome, Subscription


@pytest.fixture
def env(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    with api(settings, db, clock, standard_extract) as e:
        yield e


def _offered(body: dict[str, Any]) -> list[str]:
    return [o["offer_id"] for o in body["offers"]]


def _rule(body: dict[str, Any], offer_id: str) -> str | None:
    return next((s["rule"] for s in body["suppressed"] if s["offer_id"] == offer_id), None)


# --- what an outcome changes --------------------------------------------------------------------


def test_declined_offer_is_not_offered_again_until_the_cooldown_ends(env: Api) -> None:
    first = env.decide()
    assert "crbt_open" in _offered(first)

    declined = env.outcome(first["decision_id"], "crbt_open", "declined", reason="too pricey")
    assert declined.status_code == 201, declined.text
    body = declined.json()
    assert (body["outcome"], body["offer_id"], body["decision_id"]) == (
        "declined",
        "crbt_open",
        first["decision_id"],
    )
    assert body["recorded_by"] == "clerk-1"
    assert body["subscription"] is None
    with env.db.read() as session:
        (row,) = session.scalars(select(Outcome))
        assert (row.reason, row.user_id, row.store_id) == ("too pricey", "clerk-1", "NJ-0001")
        assert (row.msisdn, row.channel) == ("13900000001", "store")

    following = env.decide()
    assert "crbt_open" not in _offered(following)
    assert _rule(following, "crbt_open") == "declined_cooldown"

    env.clock.advance(days=29)
    assert "crbt_open" not in _offered(env.decide())

    env.clock.advance(days=2)  # 31 days after the decline; the catalog's cooldown is 30
    assert "crbt_open" in _offered(env.decide())


def test_accepted_offer_makes_one_pending_sale_and_is_never_offered_again(env: Api) -> None:
    decision = env.decide()
    accepted = env.outcome(decision["decision_id"], "crbt_open", "accepted")
    assert accepted.status_code == 201, accepted.text
    body = accepted.json()
    assert body["recorded_by"] == "clerk-1"
    subscription = body["subscription"]
    assert subscription["offer_id"] == "crbt_open"
    assert subscription["status"] == "pending"
    assert ledger_counts(env.db) | {"decisions": 0} == {
        "decisions": 0,
        "outcomes": 1,
        "subscriptions": 1,
        "provisioning_jobs": 1,
        "idempotency": 0,
    }
    with env.db.read() as session:
        (sale,) = session.scalars(select(Subscription))
        assert (sale.msisdn, sale.offer_id, sale.service, sale.price) == (
            "13900000001",
            "crbt_open",
            "crbt",
            5.0,
        )
        assert (sale.user_id, sale.store_id, sale.channel) == ("clerk-1", "NJ-0001", "store")
        assert sale.decision_id == decision["decision_id"]
        assert sale.outcome_id == body["outcome_id"]

    for role in ("clerk", "agent", "supervisor", "admin"):
        shown = env.client.get(f"/v1/subscriptions/{subscription['id']}", headers=env.headers(role))
        assert shown.status_code == 200
        assert shown.json() == subscription
    missing = env.client.get(f"/v1/subscriptions/{subscription['id'] + 1}", headers=env.headers())
    assert missing.status_code == 404
    assert missing.json()["status_code"] == 404

    following = env.decide()
    assert "crbt_open" not in _offered(following)
    assert _rule(following, "crbt_open") == "held"
    env.clock.advance(days=400)
    later = env.decide(channel="inbound")
    assert "crbt_open" not in _offered(later)
    assert _rule(later, "crbt_open") == "held"


def test_callback_is_recorded_with_its_time(env: Api) -> None:
    decision = env.decide("13900000001", role="agent", channel="outbound")
    offer = _offered(decision)[0]
    at = env.clock.now() + timedelta(days=2)
    recorded = env.outcome(
        decision["decision_id"], offer, "callback", role="agent", callback_at=at.isoformat()
    )
    assert recorded.status_code == 201, recorded.text
    with env.db.read() as session:
        (row,) = session.scalars(select(Outcome))
        assert row.callback_at == at
        assert row.user_id == "agent-1"


# --- retries and double clicks ------------------------------------------------------------------


def test_retry_with_the_same_idempotency_key_replays_and_writes_nothing(env: Api) -> None:
    decision = env.decide()
    first = env.outcome(decision["decision_id"], "crbt_open", "accepted", key="sale-1")
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    after_first = ledger_counts(env.db)
    assert after_first["idempotency"] == 1

    for _ in range(2):
        again = env.outcome(decision["decision_id"], "crbt_open", "accepted", key="sale-1")
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
    assert ledger_counts(env.db) == after_first

    # The same key with another body is a client bug, not a retry.
    other = env.outcome(decision["decision_id"], "club_vip", "declined", key="sale-1")
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key"
    assert ledger_counts(env.db) == after_first

    # Keys are per user: the agent's "sale-1" is a request of its own (here: a second click).
    by_agent = env.outcome(
        decision["decision_id"], "crbt_open", "accepted", role="agent", key="sale-1"
    )
    assert by_agent.status_code == 200
    assert "idempotent-replayed" not in by_agent.headers
    assert by_agent.json()["outcome_id"] == first.json()["outcome_id"]
    assert ledger_counts(env.db)["subscriptions"] == 1


def test_replay_of_a_declined_outcome_writes_one_row(env: Api) -> None:
    decision = env.decide()
    first = env.outcome(decision["decision_id"], "club_vip", "declined", key="d-1")
    again = env.outcome(decision["decision_id"], "club_vip", "declined", key="d-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ledger_counts(env.db)["outcomes"] == 1


def test_idempotency_key_must_be_1_to_200_characters(env: Api) -> None:
    decision = env.decide()
    before = ledger_counts(env.db)
    for key in ("x" * 201, "   "):
        response = env.outcome(decision["decision_id"], "crbt_open", "accepted", key=key)
        assert response.status_code == 400
        assert response.json()["field"] == "Idempotency-Key"
    assert ledger_counts(env.db) == before


def test_second_accepted_click_returns_the_first_outcome(env: Api) -> None:
    decision = env.decide()
    first = env.outcome(decision["decision_id"], "crbt_open", "accepted")
    second = env.outcome(decision["decision_id"], "crbt_open", "accepted")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    counts = ledger_counts(env.db)
    assert (counts["outcomes"], counts["subscriptions"], counts["provisioning_jobs"]) == (1, 1, 1)


def test_accepting_an_offer_already_sold_from_another_decision_conflicts(env: Api) -> None:
    first = env.decide()
    second = env.decide()
    assert "crbt_open" in _offered(first)
    assert "crbt_open" in _offered(second)
    assert env.outcome(first["decision_id"], "crbt_open", "accepted").status_code == 201
    before = ledger_counts(env.db)

    clash = env.outcome(second["decision_id"], "crbt_open", "accepted")
    assert clash.status_code == 409
    assert clash.json()["field"] == "offer_id"
    assert "already holds 'crbt_open'" in clash.json()["detail"]
    assert ledger_counts(env.db) == before


def test_refused_outcomes_name_the_field_and_write_nothing(env: Api) -> None:
    decision = env.decide()
    did = decision["decision_id"]
    assert "sms_50" not in _offered(decision)
    now = env.clock.now()
    future = (now + timedelta(hours=2)).isoformat()
    cases: dict[str, tuple[str, dict[str, Any], int, str]] = {
        "unknown decision": (
            "f" * 32,
            {"offer_id": "crbt_open", "outcome": "declined"},
            404,
            "decision_id",
        ),
        "offer not in the decision": (
            did,
            {"offer_id": "sms_50", "outcome": "accepted"},
            422,
            "offer_id",
        ),
        "callback without callback_at": (
            did,
            {"offer_id": "crbt_open", "outcome": "callback"},
            400,
            "callback_at",
        ),
        "callback in the past": (
            did,
            {
                "offer_id": "crbt_open",
                "outcome": "callback",
                "callback_at": (now - timedelta(minutes=1)).isoformat(),
            },
            400,
            "callback_at",
        ),
        "callback right now": (
            did,
            {"offer_id": "crbt_open", "outcome": "callback", "callback_at": now.isoformat()},
            400,
            "callback_at",
        ),
        "callback without offset": (
            did,
            {"offer_id": "crbt_open", "outcome": "callback", "callback_at": "2026-11-20T10:00:00"},
            400,
            "callback_at",
        ),
        "callback_at on a decline": (
            did,
            {"offer_id": "crbt_open", "outcome": "declined", "callback_at": future},
            400,
            "callback_at",
        ),
        "callback_at not a time": (
            did,
            {"offer_id": "crbt_open", "outcome": "callback", "callback_at": "tomorrow"},
            400,
            "callback_at",
        ),
        "unknown outcome": (did, {"offer_id": "crbt_open", "outcome": "maybe"}, 400, "outcome"),
        "missing outcome": (did, {"offer_id": "crbt_open"}, 400, "outcome"),
        "empty offer_id": (did, {"offer_id": "", "outcome": "declined"}, 400, "offer_id"),
        "reason too long": (
            did,
            {"offer_id": "crbt_open", "outcome": "declined", "reason": "x" * 501},
            400,
            "reason",
        ),
    }
    before = ledger_counts(env.db)
    seen: dict[str, tuple[int, str | None, bool]] = {}
    for case, (decision_id, body, _status, _field) in cases.items():
        for key in (None, f"key-{case}"):
            headers = env.headers(**({"Idempotency-Key": key} if key else {}))
            response = env.client.post(
                f"/v1/decisions/{decision_id}/outcomes", json=body, headers=headers
            )
            payload = response.json()
            field = payload.get("field")
            detail = payload["detail"]
            # "offer_id: ...", or for a missing decision "decision '...' not found".
            names = detail.startswith(f"{field}: ") or (
                response.status_code == 404 and f"decision {decision_id!r} not found" in detail
            )
            seen[f"{case} (key {key is not None})"] = (response.status_code, field, names)
    expected = {
        f"{case} (key {keyed})": (status, field, True)
        for case, (_d, _b, status, field) in cases.items()
        for keyed in (False, True)
    }
    assert seen == expected
    assert ledger_counts(env.db) == before


# --- concurrency --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    """The app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="none", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def server(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    load_extract(db, standard_extract, clock)
    keys = {
        "clerk": create_key(db, role="clerk", user_id="clerk-1", store_id="S1", now=clock.now())
    }
    app = create_app(app_settings(settings), clock=clock, db=db)
    with _Server(app) as running:
        yield running.url, keys


def test_twenty_concurrent_accepts_make_exactly_one_sale(
    server: tuple[str, dict[str, str]], db: Database
) -> None:
    url, keys = server
    auth = {"Authorization": f"Bearer {keys['clerk']}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        decision = client.post(
            "/v1/decisions", json={"msisdn": "13900000001", "channel": "store"}, headers=auth
        )
        assert decision.status_code == 200
        decision_id = decision.json()["decision_id"]

    barrier = threading.Barrier(20)
    results: dict[int, httpx.Response | BaseException] = {}

    def click(i: int) -> None:
        headers = {**auth, "Idempotency-Key": "same-click"} if i < 10 else auth
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                barrier.wait(timeout=30)
                results[i] = client.post(
                    f"/v1/decisions/{decision_id}/outcomes",
                    json={"offer_id": "crbt_open", "outcome": "accepted"},
                    headers=headers,
                )
        except BaseException as exc:  # reported below, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=click, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    responses = [results[i] for i in range(20)]
    failures = [r for r in responses if not isinstance(r, httpx.Response)]
    assert failures == []
    answers = [r for r in responses if isinstance(r, httpx.Response)]
    assert sorted({r.status_code for r in answers}) in ([200, 201], [201]), [
        (r.status_code, r.text) for r in answers
    ]
    # One sale, one outcome, one delivery job; every answer points at it.
    counts = ledger_counts(db)
    assert (counts["subscriptions"], counts["outcomes"], counts["provisioning_jobs"]) == (1, 1, 1)
    assert counts["idempotency"] == 1
    assert len({r.json()["outcome_id"] for r in answers}) == 1
    assert len({r.json()["subscription"]["id"] for r in answers}) == 1
    # Exactly one request made the sale; the same key always got the same answer.
    made = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(made) == 1
    keyed = answers[:10]
    assert len({(r.status_code, r.content) for r in keyed}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in keyed) == 9
    assert not any("idempotent-replayed" in r.headers for r in answers[10:])
    with db.read() as session:
        (sale,) = session.scalars(select(Subscription))
        assert (sale.status, sale.store_id) == ("pending", "S1")
        assert sale.created_at == datetime(2026, 11, 19, 2, 0, tzinfo=UTC)
