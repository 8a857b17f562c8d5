"""Running it: readiness, metrics, request ids, the wire's limits, JSON logs, graceful shutdown."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import STANDARD_AFFINITY, STANDARD_PROFILES, write_extract
from helpers import Api, api, app_settings, row_count
from litestar.testing import TestClient
from server_process import ServerProcess

from nextbest.api import create_app
from nextbest.clock import FixedClock, SystemClock
from nextbest.keys import create_key
from nextbest.loader import load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Decision, Outcome


@pytest.fixture
def env(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    with api(settings, db, clock, standard_extract) as e:
        yield e


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()) or not wanted:
            return float(value)
    return 0.0


# --- readiness -------------------------------------------------------------------------------


def test_ready_only_with_a_reachable_database_and_a_loaded_version(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(settings, db, clock, None) as env:
        assert env.client.get("/healthz").status_code == 200
        waiting = env.client.get("/readyz")
        assert waiting.status_code == 503
        assert "no warehouse extract is loaded" in waiting.json()["detail"]
        load_extract(db, standard_extract, clock)
        ready = env.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "data_version": 1,
            "catalog_version": "test-1",
            "data_version_loaded_at": "2026-11-19T02:00:00Z",
        }
    # The database gone (nothing listens on port 1): not ready, and says why.
    app = create_app(app_settings(settings), clock=clock, db=db)
    lost = Database(Settings(database_url="postgresql://127.0.0.1:1/gone"))
    app.state.services.db = lost  # as if the server lost its database
    with TestClient(app) as client:
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["detail"].startswith("database unreachable: ")
        assert client.get("/healthz").status_code == 200
    lost.dispose()


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_count_requests_decisions_outcomes_queue_cache_and_data_age(env: Api) -> None:
    before = env.client.get("/metrics").text
    first = env.decide("13900000001")
    env.decide("13900000001")  # a cache hit
    env.client.post(
        "/v1/decisions",
        json={"msisdn": "13900000002", "channel": "outbound"},
        headers=env.headers(),
    )
    accepted = env.outcome(first["decision_id"], first["offers"][0]["offer_id"], key="m-1")
    assert accepted.status_code == 201
    env.outcome(first["decision_id"], first["offers"][0]["offer_id"], key="m-1")  # a replay
    env.outcome(first["decision_id"], first["offers"][1]["offer_id"], "declined")
    env.client.get("/v1/subscriptions", headers=env.headers())  # 403
    env.clock.advance(hours=2)
    scraped = env.client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    after = scraped.text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("nextbest_decisions_total", channel="store", known="true", offered="true") == 2
    assert grew("nextbest_decisions_total", channel="outbound", offered="false") == 1
    assert grew("nextbest_outcomes_total", outcome="accepted") == 1
    assert grew("nextbest_outcomes_total", outcome="declined") == 1
    route = {"path": "/v1/decisions", "method": "POST", "status_code": "200"}
    assert grew("nextbest_http_request_duration_seconds_count", **route) == 3
    assert grew("nextbest_http_requests_total", path="/v1/subscriptions", status_code="403") == 1
    # per endpoint by its template: no decision id ever becomes a label
    assert 'path="/v1/decisions/{decision_id}/outcomes"' in after
    assert first["decision_id"] not in after
    # the services' state, read at scrape time
    assert metric(after, "nextbest_provisioning_queue_depth") == 1  # the sale, pending
    assert metric(after, "nextbest_provisioning_failed_jobs") == 0
    assert metric(after, "nextbest_warehouse_cache_hits_total") >= 1
    assert 0 < metric(after, "nextbest_warehouse_cache_hit_ratio") < 1
    assert metric(after, "nextbest_data_version") == 1
    assert metric(after, "nextbest_data_version_age_seconds") == 7200
    assert "nextbest_provisioning_failures_total" in after


def test_metrics_can_be_turned_off(settings: Settings, db: Database, clock: FixedClock) -> None:
    app = create_app(
        Settings(
            database_url=settings.database_url, worker_in_process=False, metrics_enabled=False
        ),
        clock=clock,
        db=db,
    )
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404


# --- request ids -------------------------------------------------------------------------------


def test_every_response_carries_a_request_id(env: Api) -> None:
    seen = set()
    for response in (
        env.client.get("/healthz"),
        env.client.get("/v1/keys"),  # 401 from the middleware
        env.client.get("/v1/keys", headers=env.headers()),  # 403 from a guard
        env.client.get("/no/such/page"),  # 404 from the router
        env.client.delete("/healthz"),  # 405
        env.client.post("/v1/decisions", json={"msisdn": "1"}, headers=env.headers()),  # 400
    ):
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32
        seen.add(request_id)
    assert len(seen) == 6
    echoed = env.client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"})
    assert echoed.headers["x-request-id"] == "lb-7f3a.1"
    for insane in ("x" * 65, "a b", "<script>"):
        replaced = env.client.get("/healthz", headers={"X-Request-ID": insane})
        assert replaced.headers["x-request-id"] != insane


# --- the wire's limits -------------------------------------------------------------------------


def test_oversized_bodies_wrong_types_and_unknown_fields_get_clear_4xx(env: Api) -> None:
    before = row_count(env.db, Decision)
    huge = env.client.post(
        "/v1/decisions",
        content=b'{"msisdn": "13900000001", "channel": "store", "x": "' + b"a" * 70_000 + b'"}',
        headers=env.headers(**{"Content-Type": "application/json"}),
    )
    assert huge.status_code == 413
    assert huge.json()["detail"]
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = env.headers(**({"Content-Type": content_type} if content_type else {}))
        wrong = env.client.post(
            "/v1/decisions",
            content=b'{"msisdn": "13900000001", "channel": "store"}',
            headers=headers,
        )
        assert wrong.status_code == 415, (content_type, wrong.text)
        assert "expected application/json" in wrong.json()["detail"]
    unknown = env.client.post(
        "/v1/decisions",
        json={"msisdn": "13900000001", "channel": "store", "mood": "happy"},
        headers=env.headers(),
    )
    assert unknown.status_code == 400
    assert unknown.json()["field"] == "mood"
    not_json = env.client.post(
        "/v1/decisions",
        content=b"{msisdn",
        headers=env.headers(**{"Content-Type": "application/json"}),
    )
    assert not_json.status_code == 400
    assert not_json.json()["detail"]
    charset = env.client.post(
        "/v1/decisions",
        content=b'{"msisdn": "13900000001", "channel": "store"}',
        headers=env.headers(**{"Content-Type": "application/json; charset=utf-8"}),
    )
    assert charset.status_code == 200
    assert row_count(env.db, Decision) == before + 1


@pytest.mark.parametrize(
    "reason",
    [
        "已经有彩铃了,朋友送的",
        "🙅 no thanks 🙅‍♀️",
        "Ünïcödé — “quoted” ‘text’ \u200b zero-width",
        "عربي mixed עברית",
        "x" * 500,
    ],
)
def test_unicode_reasons_are_stored_as_given(env: Api, reason: str) -> None:
    decision = env.decide()
    recorded = env.outcome(
        decision["decision_id"], decision["offers"][0]["offer_id"], "declined", reason=reason
    )
    assert recorded.status_code == 201, recorded.text
    with env.db.read() as session:
        stored = session.get(Outcome, recorded.json()["outcome_id"])
        assert stored is not None
        assert stored.reason == reason


@pytest.mark.parametrize(
    ("reason", "status"),
    [("x" * 501, 400), ("nul \x00 inside", 400)],
)
def test_unstorable_reasons_are_refused(env: Api, reason: str, status: int) -> None:
    decision = env.decide()
    before = row_count(env.db, Outcome)
    refused = env.outcome(
        decision["decision_id"], decision["offers"][0]["offer_id"], "declined", reason=reason
    )
    assert refused.status_code == status, refused.text
    assert refused.json()["detail"]
    assert row_count(env.db, Outcome) == before


# --- a real server: JSON logs, SIGTERM mid-request ------------------------------------------------


def _serve(sqlite_settings: Settings, tmp_path: Path) -> tuple[ServerProcess, Database, str]:
    db = Database(sqlite_settings)
    db.create_schema()
    clock = SystemClock()
    load_extract(db, write_extract(tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY), clock)
    key = create_key(db, role="clerk", user_id="clerk-ana", store_id="NJ-0001", now=clock.now())
    server = ServerProcess(
        {
            "NEXTBEST_DATABASE_URL": sqlite_settings.database_url,
            "NEXTBEST_LOG_LEVEL": "info",
            "NEXTBEST_WORKER_POLL_SECONDS": "0.1",
        },
        tmp_path / "server.log",
    )
    return server, db, key


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish_and_stops_the_worker(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    """SIGTERM arrives while an outcome is waiting for the database write lock (held here):
    the server starts shutting down, yet the outcome is still committed and answered; then the
    outbox worker stops and the process finishes."""
    server, db, key = _serve(sqlite_settings, tmp_path)
    server.start()
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "shutdown-test"}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            decision = client.post(
                "/v1/decisions", json={"msisdn": "13900000001", "channel": "store"}, headers=headers
            ).json()
        answer: dict[str, Any] = {}

        def record() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                response = client.post(
                    f"/v1/decisions/{decision['decision_id']}/outcomes",
                    json={"offer_id": decision["offers"][0]["offer_id"], "outcome": "declined"},
                    headers=headers,
                )
                answer["status"] = response.status_code
                answer["request_id"] = response.headers.get("x-request-id")

        in_flight = threading.Thread(target=record)
        with db.write_lock():  # every writer of the server now queues behind this test
            in_flight.start()
            _wait_until(lambda: _in_progress(server.url) >= 1, "the outcome request in flight")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            _wait_until(
                lambda: any(
                    "Shutting down" in line.get("msg", "") for line in _log_lines(server.log)
                ),
                "the server to start shutting down",
            )
            assert "status" not in answer  # still waiting for the lock
        in_flight.join(timeout=60)
        # uvicorn re-raises the signal once it has shut down cleanly, so the parent sees the
        # usual "terminated by SIGTERM"; the log below shows the shutdown completed.
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert answer == {"status": 201, "request_id": "shutdown-test"}
    assert row_count(db, Outcome) == 1
    lines = _log_lines(server.log)
    messages = [line["msg"] for line in lines]
    assert "outbox worker stopped" in messages
    assert (
        messages.index("Shutting down")
        < messages.index("outbox worker stopped")
        < messages.index("Application shutdown complete.")
    )
    assert messages[-1].startswith("Finished server process")
    access = [line for line in lines if line["logger"] == "nextbest.access"]
    outcome_line = next(line for line in access if line["path"].endswith("/outcomes"))
    assert (outcome_line["status"], outcome_line["request_id"]) == (201, "shutdown-test")
    assert all(line["ts"] and line["level"] for line in lines)
    assert "13900000001" not in server.log.read_text()
    db.dispose()


def _in_progress(url: str) -> float:
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return metric(
        text,
        "nextbest_http_requests_in_progress",
        path="/v1/decisions/{decision_id}/outcomes",
    )


def _wait_until(condition: Any, what: str, limit: float = 30.0) -> None:
    """Poll until ``condition()`` holds; the limit only stops a broken run from hanging."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_nul_is_refused_in_paths_queries_and_bodies(env: Api) -> None:
    """No field may hold a NUL, and PostgreSQL cannot store one: refused before anything runs."""
    decision = env.decide()
    offer = decision["offers"][0]["offer_id"]
    before = row_count(env.db, Outcome)
    for response in (
        env.client.post(
            "/v1/decisions/ab%00cd/outcomes",
            json={"offer_id": offer, "outcome": "declined"},
            headers=env.headers(),
        ),
        env.client.get("/v1/lookups?user=clerk%001", headers=env.headers("admin")),
        env.client.post(
            f"/v1/decisions/{decision['decision_id']}/outcomes",
            json={"offer_id": "x\x00", "outcome": "declined"},
            headers=env.headers(),
        ),
    ):
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["detail"]
    # A backslash followed by u0000 as text is not a NUL: stored as given.
    literal = env.outcome(
        decision["decision_id"], offer, "declined", reason="typed \\u0000 literally"
    )
    assert literal.status_code == 201, literal.text
    assert row_count(env.db, Outcome) == before + 1
