"""Keys, sessions, rate limits, masking, the look-up trail and its retention, the sandbox.

Storage tests run on SQLite and PostgreSQL; the rate limit across nodes needs the Redis at
NEXTBEST_TEST_REDIS_URL (default redis://127.0.0.1:6379/15) and is skipped without it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import STANDARD_AFFINITY, STANDARD_PROFILES, TEST_CATALOG, write_extract
from helpers import Api, api, app_settings, row_count
from litestar.testing import TestClient
from sqlalchemy import func, inspect, select, text

from nextbest.api import create_app
from nextbest.clock import FixedClock
from nextbest.keys import authenticate, create_key, revoke_key
from nextbest.loader import LoadError, load_extract
from nextbest.logs import JsonFormatter, mask_numbers
from nextbest.retention import purge
from nextbest.sessions import CSRF_COOKIE, SESSION_COOKIE
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.security_models import WebSession
from nextbest.storage.warehouse import WarehouseReader


def _trail_rows(db: Database) -> int:
    """Decisions on the look-up trail (with the key that looked the number up)."""
    with db.read() as session:
        return int(session.scalar(select(func.count()).where(Decision.key_id.is_not(None))) or 0)


REDIS_URL = os.environ.get("NEXTBEST_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Every whole number of the standard extract: none may appear in a response or a log line.
NUMBERS = [p[0] for p in STANDARD_PROFILES]
HTTPS = "https://testserver.local"  # the session cookie is Secure: the client sends it on https


def no_whole_number(text: str) -> None:
    found = [n for n in NUMBERS if n in text]
    assert not found, f"whole numbers in {text[:300]!r}"


@pytest.fixture
def env(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    with api(settings, db, clock, standard_extract) as e:
        yield e


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- keys ------------------------------------------------------------------------------------


def test_admin_creates_lists_and_revokes_keys(env: Api, settings: Settings) -> None:
    created = env.client.post(
        "/v1/keys",
        json={"role": "agent", "user": "agent-7", "team": "outbound-a", "expires_days": 30},
        headers=env.headers("admin"),
    )
    assert created.status_code == 201, created.text
    new = created.json()
    secret = new["key"]
    assert secret.startswith("nb_agent_")
    assert (new["role"], new["user"], new["team"], new["store"]) == (
        "agent",
        "agent-7",
        "outbound-a",
        None,
    )
    assert new["state"] == "active"
    assert new["expires_at"].startswith("2026-12-19")  # 30 days after the fixed clock

    listed = env.client.get("/v1/keys", headers=env.headers("admin"))
    assert listed.status_code == 200
    assert secret not in listed.text
    assert secret[len("nb_agent_") + 4 :] not in listed.text  # no part of the secret either
    assert "key_hash" not in listed.text
    assert {k["user"] for k in listed.json()} >= {"agent-7", "clerk-1", "admin-1"}

    # The new key works, with its team on the trail.
    decided = env.client.post(
        "/v1/decisions",
        json={"msisdn": "13900000001", "channel": "outbound"},
        headers=bearer(secret),
    )
    assert decided.status_code == 200, decided.text

    # Revoked: refused on the next request, here and on another node over the same database.
    other_db = Database(settings)
    other = create_app(app_settings(settings), clock=env.clock, db=other_db)
    with TestClient(other) as node_b:
        assert node_b.get("/v1/subscriptions/1", headers=bearer(secret)).status_code == 404
        revoked = env.client.post(f"/v1/keys/{new['id']}/revoke", headers=env.headers("admin"))
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["state"] == "revoked"
        for client in (env.client, node_b):
            refused = client.post(
                "/v1/decisions",
                json={"msisdn": "13900000001", "channel": "outbound"},
                headers=bearer(secret),
            )
            assert refused.status_code == 401
            assert "revoked" in refused.json()["detail"]
    # Revoking again keeps the first time; an unknown key is 404; your own key is refused.
    again = env.client.post(f"/v1/keys/{new['id']}/revoke", headers=env.headers("admin"))
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    unknown = env.client.post("/v1/keys/999/revoke", headers=env.headers("admin"))
    assert unknown.status_code == 404
    admin_id = next(k["id"] for k in listed.json() if k["user"] == "admin-1")
    own = env.client.post(f"/v1/keys/{admin_id}/revoke", headers=env.headers("admin"))
    assert own.status_code == 409
    assert "another admin key" in own.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"role": "clerk", "user": "c", "team": "t1"}, "team", "clerk key can be bound to store"),
        ({"role": "agent", "user": "a", "store": "S1"}, "store", "agent key can be bound to team"),
        ({"role": "admin", "user": "a", "store": "S1"}, "store", "bound to nothing"),
        ({"role": "boss", "user": "b"}, "role", "Invalid enum value 'boss'"),
        ({"role": "clerk", "user": ""}, "user", "length"),
        ({"role": "clerk", "user": "c", "expires_days": 0}, "expires_days", ">= 1"),
        (
            {"role": "clerk", "user": "c", "expires_at": "2020-01-01T00:00:00Z"},
            "expires_at",
            "future",
        ),
        ({"role": "clerk", "user": "c", "key": "mine"}, "key", "unknown field"),
    ],
)
def test_bad_key_requests_name_the_field(
    env: Api, body: dict[str, Any], field: str, words: str
) -> None:
    before = len(env.client.get("/v1/keys", headers=env.headers("admin")).json())
    response = env.client.post("/v1/keys", json=body, headers=env.headers("admin"))
    assert response.status_code == 400, response.text
    assert response.json().get("field") == field
    assert words in response.json()["detail"]
    assert len(env.client.get("/v1/keys", headers=env.headers("admin")).json()) == before


def test_cli_binds_a_team_lists_it_and_revokes(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NEXTBEST_")}
        environ["NEXTBEST_DATABASE_URL"] = f"sqlite:///{database}"
        return subprocess.run(
            [sys.executable, "-m", "nextbest.cli", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    created = run("keys", "create", "--role", "agent", "--user", "a1", "--team", "T9")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    wrong = run("keys", "create", "--role", "clerk", "--user", "c1", "--team", "T9")
    assert wrong.returncode == 2
    assert "team" in wrong.stderr
    listed = run("keys", "list")
    (line,) = listed.stdout.splitlines()
    key_id, _prefix, role, user, store, team, state = line.split("\t")
    assert (role, user, store, team, state) == ("agent", "a1", "-", "T9", "active")

    db = Database(Settings(database_url=f"sqlite:///{database}"))
    try:
        actor = authenticate(db, key, FixedClock(_now()).now())
        assert actor is not None
        assert actor.team_id == "T9"
        revoked = run("keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked key {key_id}" in revoked.stdout
        assert authenticate(db, key, FixedClock(_now()).now()) is None
    finally:
        db.dispose()
    assert run("keys", "list").stdout.rstrip().endswith("\trevoked")
    missing = run("keys", "revoke", "999")
    assert missing.returncode == 2
    assert "no key 999" in missing.stderr
    purged = run("purge")
    assert purged.returncode == 0, purged.stderr
    assert "purged 0 look-up(s) older than 180 days" in purged.stdout


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_an_old_keys_table_gets_the_team_column(settings: Settings) -> None:
    """A database made before teams existed (and before migrations): start-up adds the
    column, old keys keep working."""
    db = Database(settings)
    try:
        db.create_schema()
        clock = FixedClock(_now())
        key = create_key(db, role="clerk", user_id="c-old", store_id="S1", now=clock.now())
        # As it was before teams (and before the migrations managed the schema).
        with db.writer.begin() as conn:
            conn.execute(text("ALTER TABLE api_keys DROP COLUMN team_id"))
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        assert "team_id" not in {c["name"] for c in inspect(db.writer).get_columns("api_keys")}
        db.create_schema()
        assert "team_id" in {c["name"] for c in inspect(db.writer).get_columns("api_keys")}
        actor = authenticate(db, key, clock.now())
        assert actor is not None
        assert (actor.user_id, actor.team_id) == ("c-old", None)
    finally:
        db.dispose()


# --- widget sessions -------------------------------------------------------------------------


@pytest.fixture
def web(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    """The standard app, reached over https (as a browser reaches it) so Secure cookies flow."""
    load_extract(db, standard_extract, clock)
    keys = {
        role: create_key(db, role=role, user_id=f"{role}-1", store_id=store, now=clock.now())
        for role, store in (("clerk", "NJ-0001"), ("admin", None))
    }
    secret = "s" * 40
    app = create_app(
        msgspec.structs.replace(app_settings(settings), session_secret=secret), clock=clock, db=db
    )
    with TestClient(app, base_url=HTTPS) as client:
        yield Api(client=client, db=db, clock=clock, keys=keys, report=None)


def _sign_in(web: Api, role: str = "clerk") -> str:
    signed = web.client.post("/v1/session", json={"key": web.keys[role]})
    assert signed.status_code == 201, signed.text
    token: str = signed.json()["csrf_token"]
    return token


def test_session_cookie_is_secure_httponly_strict_and_csrf_protected(web: Api) -> None:
    signed = web.client.post("/v1/session", json={"key": web.keys["clerk"]})
    assert signed.status_code == 201, signed.text
    body = signed.json()
    assert (body["user"], body["role"], body["store"]) == ("clerk-1", "clerk", "NJ-0001")
    assert body["expires_at"] == "2026-11-19T12:00:00Z"  # 600 minutes after the fixed clock
    assert signed.headers["cache-control"] == "no-store"
    cookies = {c.split("=", 1)[0]: c for c in signed.headers.get_list("set-cookie")}
    session, csrf = cookies[SESSION_COOKIE], cookies[CSRF_COOKIE]
    for attribute in ("Secure", "Path=/", "SameSite=strict", "Max-Age=36000"):
        assert attribute in session
        assert attribute in csrf
    assert "HttpOnly" in session
    assert "HttpOnly" not in csrf  # the page reads it to fill the header
    assert web.keys["clerk"] not in session  # the key never goes into a cookie
    assert body["csrf_token"] in csrf

    decide = {"msisdn": "13900000001", "channel": "store"}
    # Reading needs only the cookie.
    assert web.client.get("/v1/subscriptions/1").status_code == 404
    # Changing something by cookie needs the CSRF token, the right one.
    missing = web.client.post("/v1/decisions", json=decide)
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"]
    forged = web.client.post("/v1/decisions", json=decide, headers={"X-CSRF-Token": "x" * 43})
    assert forged.status_code == 403
    assert row_count(web.db, Decision) == 0
    done = web.client.post(
        "/v1/decisions", json=decide, headers={"X-CSRF-Token": body["csrf_token"]}
    )
    assert done.status_code == 200, done.text
    # The session acts as its key's user.
    trail = web.client.get("/v1/lookups", headers=bearer(web.keys["admin"])).json()
    assert [(t["user"], t["store"]) for t in trail] == [("clerk-1", "NJ-0001")]
    # A bearer key needs no CSRF token (a browser never adds that header by itself); with
    # both, the key decides.
    plain = web.client.post("/v1/decisions", json=decide, headers=bearer(web.keys["clerk"]))
    assert plain.status_code == 200


def test_a_tampered_or_foreign_cookie_is_refused(web: Api, settings: Settings) -> None:
    _sign_in(web)
    value = web.client.cookies[SESSION_COOKIE]
    session_id, signature = value.split(".")
    # Really changed: "AA" leaves a signature that already ends so whole (1 run in 4,096).
    tampered = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    web.client.cookies.set(SESSION_COOKIE, f"{session_id}.{tampered}", domain="testserver.local")
    assert web.client.get("/v1/subscriptions/1").status_code == 401
    # Signed with another process's secret: its signature does not hold here.
    other = create_app(
        msgspec.structs.replace(app_settings(settings), session_secret="t" * 40),
        clock=web.clock,
        db=web.db,
    )
    with TestClient(other, base_url=HTTPS) as node_b:
        node_b.cookies.set(SESSION_COOKIE, value, domain="testserver.local")
        refused = node_b.get("/v1/subscriptions/1")
        assert refused.status_code == 401
        assert "sign in again" in refused.json()["detail"]


def test_signing_out_revoking_or_time_ends_the_session(web: Api) -> None:
    token = _sign_in(web)
    cookie = web.client.cookies[SESSION_COOKIE]
    assert web.client.delete("/v1/session").status_code == 403  # no CSRF token
    out = web.client.delete("/v1/session", headers={"X-CSRF-Token": token})
    assert out.status_code == 204
    cleared = " ".join(out.headers.get_list("set-cookie"))
    assert f"{SESSION_COOKIE}=" in cleared
    assert "Max-Age=0" in cleared
    # Even if the browser kept it, the old cookie is dead.
    web.client.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    assert web.client.get("/v1/subscriptions/1").status_code == 401

    _sign_in(web)
    assert web.client.get("/v1/subscriptions/1").status_code == 404
    admin = web.client.get("/v1/keys", headers=bearer(web.keys["admin"])).json()
    clerk_id = next(k["id"] for k in admin if k["role"] == "clerk")
    revoke_key(web.db, clerk_id, web.clock.now())
    assert web.client.get("/v1/subscriptions/1").status_code == 401

    _sign_in(web, "admin")
    assert web.client.get("/v1/keys").status_code == 200
    web.clock.advance(minutes=601)
    assert web.client.get("/v1/keys").status_code == 401
    assert purge(web.db, web.clock, Settings()).sessions == 3
    assert row_count(web.db, WebSession) == 0


def test_signing_in_with_a_bad_key_is_401(web: Api) -> None:
    for body in ({"key": "nb_clerk_nope"}, {"key": web.keys["clerk"] + "x"}):
        refused = web.client.post("/v1/session", json=body)
        assert refused.status_code == 401
        assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    assert web.client.post("/v1/session", json={"key": ""}).status_code == 400
    assert web.client.post("/v1/session", json={"key": "k", "role": "admin"}).status_code == 400


# --- rate limit --------------------------------------------------------------------------------


def _limited(settings: Settings, per_minute: int, **more: Any) -> Settings:
    return msgspec.structs.replace(settings, rate_limit_per_minute=per_minute, **more)


def test_a_misused_clerk_key_cannot_enumerate_numbers(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(_limited(settings, 5), db, clock, standard_extract) as env:
        numbers = [f"1390000{i:04d}" for i in range(1, 7)]
        answers = [
            env.client.post(
                "/v1/decisions", json={"msisdn": n, "channel": "store"}, headers=env.headers()
            )
            for n in numbers
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 429]
        refused = answers[-1]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["status_code"] == 429
        assert "at most 5 look-ups per minute" in refused.json()["detail"]
        assert answers[0].headers["ratelimit-limit"] == "5"
        no_whole_number(refused.text)
        # The refused look-up read nothing and left no decision; the trail has the five.
        assert row_count(env.db, Decision) == 5
        assert _trail_rows(env.db) == 5
        # Another clerk's key has its own budget; outcomes are not look-ups.
        assert env.decide(role="agent")["known"] is True
        first = answers[0].json()
        recorded = env.outcome(first["decision_id"], first["offers"][0]["offer_id"], "declined")
        assert recorded.status_code == 201


def test_the_limit_is_shared_across_nodes_through_redis(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    redis = pytest.importorskip("redis")
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        probe.ping()
    except Exception as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        probe.close()
    shared = _limited(settings, 3, redis_url=REDIS_URL, redis_namespace=f"t-{uuid.uuid4().hex}")
    with api(shared, db, clock, standard_extract) as env:
        other = create_app(app_settings(shared), clock=clock, db=db)
        with TestClient(other) as node_b:
            body = {"msisdn": "13900000001", "channel": "store"}
            statuses = [
                client.post("/v1/decisions", json=body, headers=env.headers()).status_code
                for client in (env.client, node_b, env.client, node_b)
            ]
    assert statuses == [200, 200, 200, 429]


# --- masking -----------------------------------------------------------------------------------


def test_numbers_are_masked_in_every_response(env: Api) -> None:
    decision = env.decide("13900000001")
    sold = env.outcome(decision["decision_id"], decision["offers"][0]["offer_id"])
    responses = [
        env.client.post(
            "/v1/decisions",
            json={"msisdn": "+86 139-0000-0003", "channel": "outbound"},
            headers=env.headers(),
        ),
        sold,
        env.client.get(
            f"/v1/subscriptions/{sold.json()['subscription']['id']}", headers=env.headers()
        ),
        env.client.get("/v1/subscriptions", headers=env.headers("admin")),
        env.client.get("/v1/audit/flags", headers=env.headers("admin")),
        env.client.get("/v1/lookups?msisdn=13900000001", headers=env.headers("admin")),
        env.client.get("/v1/lookups", headers=env.headers("supervisor")),
        # errors that quote what was sent
        env.client.post(
            "/v1/decisions",
            json={"msisdn": "13900000001x", "channel": "store"},
            headers=env.headers(),
        ),
        env.client.get("/v1/lookups?msisdn=13900000004z", headers=env.headers("admin")),
    ]
    for response in responses:
        assert response.status_code < 500, response.text
        no_whole_number(response.text)
    assert "139****0001" in responses[5].text
    assert "139****0001" in responses[-2].json()["detail"]


def test_numbers_are_masked_in_log_lines(env: Api) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    watched = [
        logging.getLogger(name) for name in ("nextbest.access", "nextbest.api", "nextbest.test")
    ]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        env.decide("13900000002")
        env.client.get("/v1/lookups?msisdn=139%200000%200003", headers=env.headers("admin"))
        env.client.get("/v1/lookups?msisdn=+8613900000004", headers=env.headers("admin"))
        env.client.get("/v1/nowhere/13900000001")
        logging.getLogger("nextbest.test").info("called %s back", "13900000001")
        try:
            raise ValueError("no sale for 13900000003")
        except ValueError:
            logging.getLogger("nextbest.test").exception("failed")
    finally:
        for logger in watched:
            logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "nextbest.access"]
    assert len(access) == 4
    assert all(line["request_id"] for line in access)
    assert {line["status"] for line in access} == {200, 404}
    assert access[0]["user"] == "clerk-1"
    text_out = stream.getvalue()
    no_whole_number(text_out)
    for masked in ("139****0001", "139****0003", "139****0004"):
        assert masked in text_out


def test_mask_numbers() -> None:
    assert mask_numbers("call 13812345678 now") == "call 138****5678 now"
    assert mask_numbers("+86 138-1234-5678;008613812345678") == "138****5678;138****5678"
    assert mask_numbers("decision 0199aa; price 5.0; 2026-11-19; 138123456789") == (
        "decision 0199aa; price 5.0; 2026-11-19; 138123456789"
    )


# --- the look-up trail -------------------------------------------------------------------------


def test_every_look_up_is_on_the_trail_with_who_when_and_channel(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(settings, db, clock, standard_extract) as env:
        keys = {
            "team-agent": create_key(
                db, role="agent", user_id="agent-t", team_id="T1", now=clock.now()
            ),
            "store-sup": create_key(
                db, role="supervisor", user_id="sup-s", store_id="NJ-0001", now=clock.now()
            ),
            "team-sup": create_key(
                db, role="supervisor", user_id="sup-t", team_id="T1", now=clock.now()
            ),
        }
        first = env.decide("13900000001")
        clock.advance(hours=1)
        env.client.post(
            "/v1/decisions",
            json={"msisdn": "13900000003", "channel": "outbound"},
            headers=bearer(keys["team-agent"]),
        )
        clock.advance(hours=1)
        env.decide("13900000001", role="agent")
        env.decide("13988887777")  # a number the warehouse does not know
        assert _trail_rows(db) == row_count(db, Decision) == 4

        def trail(key: str, query: str = "") -> list[dict[str, Any]]:
            response = env.client.get(f"/v1/lookups{query}", headers=bearer(key))
            assert response.status_code == 200, response.text
            result: list[dict[str, Any]] = response.json()
            return result

        everything = trail(env.keys["admin"])
        assert [(t["msisdn"], t["user"], t["channel"], t["known"]) for t in everything] == [
            ("139****7777", "clerk-1", "store", False),
            ("139****0001", "agent-1", "store", True),
            ("139****0003", "agent-t", "outbound", True),
            ("139****0001", "clerk-1", "store", True),
        ]
        oldest = everything[-1]
        assert oldest["decision_id"] == first["decision_id"]
        assert (oldest["role"], oldest["store"], oldest["team"]) == ("clerk", "NJ-0001", None)
        assert oldest["at"] == "2026-11-19T02:00:00Z"
        assert everything[1]["team"] is None and everything[2]["team"] == "T1"

        by_number = trail(env.keys["supervisor"], "?msisdn=139 0000 0001")
        assert [t["user"] for t in by_number] == ["agent-1", "clerk-1"]
        assert [t["user"] for t in trail(env.keys["admin"], "?user=agent-t")] == ["agent-t"]
        window = "?since=2026-11-19T10:30:00%2B08:00&until=2026-11-19T11:30:00%2B08:00"
        assert [t["user"] for t in trail(env.keys["admin"], window)] == ["agent-t"]
        assert len(trail(env.keys["admin"], "?limit=2")) == 2
        # Supervisors see their scope.
        assert {t["store"] for t in trail(keys["store-sup"])} == {"NJ-0001"}
        assert [t["user"] for t in trail(keys["team-sup"])] == ["agent-t"]
        for query, field in (
            ("?msisdn=123", "msisdn"),
            ("?since=2026-11-19T10:00:00", "since"),
            ("?limit=0", "limit"),
        ):
            bad = env.client.get(f"/v1/lookups{query}", headers=env.headers("admin"))
            assert bad.status_code == 400, (query, bad.text)
            assert field in bad.json()["detail"]


def test_a_failed_decision_leaves_no_trail_row(
    settings: Settings, db: Database, clock: FixedClock
) -> None:
    with api(settings, db, clock, None) as env:  # no extract loaded: 503
        refused = env.client.post(
            "/v1/decisions",
            json={"msisdn": "13900000001", "channel": "store"},
            headers=env.headers(),
        )
        assert refused.status_code == 503
        assert _trail_rows(db) == 0


def test_the_trail_is_purged_after_its_retention(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(settings, db, clock, standard_extract) as env:
        env.decide("13900000001")
        clock.advance(days=25)
        env.decide("13900000003")
        clock.advance(days=6)  # the first is 31 days old, the second 6
        kept = purge(db, clock, msgspec.structs.replace(settings, lookup_retention_days=30))
        assert (kept.lookups, kept.sessions) == (1, 0)
        remaining = env.client.get("/v1/lookups", headers=env.headers("admin")).json()
        assert [t["msisdn"] for t in remaining] == ["139****0003"]
        assert row_count(db, Decision) == 2  # decisions are the sales ledger: not purged here


def test_the_in_process_worker_purges_at_start(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    with api(settings, db, clock, standard_extract) as env:
        env.decide("13900000001")
    clock.advance(days=181)
    app = create_app(
        msgspec.structs.replace(app_settings(settings), worker_in_process=True),
        clock=clock,
        db=db,
    )
    with TestClient(app):
        housekeeper = app.state.services.housekeeper
        assert housekeeper.passed.wait(30)
    assert housekeeper.passes >= 1
    assert _trail_rows(db) == 0


# --- the talk-script sandbox -------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ offer.__class__.__mro__ }}",
        "{{ customer.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ self.__init__.__globals__.__builtins__ }}",
    ],
)
def test_a_catalog_whose_script_reaches_for_internals_is_refused_at_load(
    db: Database, clock: FixedClock, tmp_path: Path, template: str
) -> None:
    load_extract(db, write_extract(tmp_path / "good", STANDARD_PROFILES, STANDARD_AFFINITY), clock)
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    serving = reader.active().id
    source = TEST_CATALOG.read_text(encoding="utf-8")
    pitch = "{{ offer.name }} for {{ offer.price }} yuan."
    assert pitch in source
    evil = tmp_path / "evil.toml"
    evil.write_text(source.replace(pitch, template, 1), encoding="utf-8")
    extract = write_extract(tmp_path / "evil", STANDARD_PROFILES, STANDARD_AFFINITY, catalog=evil)
    with pytest.raises(LoadError) as refused:
        load_extract(db, extract, clock)
    message = str(refused.value)
    assert "catalog.toml" in message
    assert re.search(r"refused by the sandbox|is undefined", message), message
    assert reader.active().id == serving


def test_the_trail_is_the_decision_row_itself(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    """No decision without its trail: the row that stores the decision names the key that
    looked the number up, so there is no second write that could fail on its own."""
    with api(settings, db, clock, standard_extract) as env:
        decided = env.decide("13900000001")
        with db.read() as session:
            row = session.get(Decision, decided["decision_id"])
        assert row is not None and row.key_id is not None
        trail = env.client.get("/v1/lookups", headers=env.headers("admin")).json()
        assert [(t["decision_id"], t["key_id"]) for t in trail] == [
            (decided["decision_id"], row.key_id)
        ]


def test_settings_for_security_are_validated() -> None:
    from nextbest.settings import SettingsError

    for env, words in (
        ({"NEXTBEST_SESSION_SECRET": "short"}, "SESSION_SECRET: expected at least 32"),
        ({"NEXTBEST_RATE_LIMIT_PER_MINUTE": "-1"}, "RATE_LIMIT_PER_MINUTE"),
        ({"NEXTBEST_REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"NEXTBEST_LOOKUP_RETENTION_DAYS": "0"}, "LOOKUP_RETENTION_DAYS"),
        ({"NEXTBEST_LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"NEXTBEST_LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ):
        with pytest.raises(SettingsError, match=words):
            Settings.from_env(env)
    assert Settings.from_env({"NEXTBEST_RATE_LIMIT_PER_MINUTE": "0"}).rate_limit_per_minute == 0


def test_expired_keys_show_as_expired(env: Api) -> None:
    create_key(
        env.db,
        role="clerk",
        user_id="temp",
        now=env.clock.now(),
        expires_at=env.clock.now() + timedelta(days=1),
    )
    env.clock.advance(days=2)
    listed = env.client.get("/v1/keys", headers=env.headers("admin")).json()
    assert next(k for k in listed if k["user"] == "temp")["state"] == "expired"
