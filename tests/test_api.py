"""The HTTP API: who may call what, what a decision answers and stores, and how bad requests
are refused (one error shape, naming the field, writing nothing)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import Api, api, ledger_counts
from sqlalchemy import select

from nextbest.catalog import Catalog
from nextbest.clock import FixedClock
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.shown import decode_offers


@pytest.fixture
def env(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    with api(
        settings, db, clock, standard_extract, expired_at=clock.now() - timedelta(days=1)
    ) as e:
        yield e


def _v1_requests(e: Api) -> list[tuple[str, str]]:
    """(method, path) of every /v1 endpoint the app serves, path parameters filled in."""
    found = []
    for route in e.client.app.routes:
        if not route.path.startswith("/v1/"):
            continue
        for method in sorted(getattr(route, "methods", ())):
            if method in ("OPTIONS", "HEAD"):
                continue
            # Signing in (POST /v1/session) takes its key in the body, not a header.
            if route.route_handler_map[method][0].opt.get("exclude_from_auth"):
                continue
            found.append((method, re.sub(r"\{[^}]+\}", "1", route.path)))
    return found


# --- authentication and roles -----------------------------------------------------------------


def test_health_and_schema_need_no_key(env: Api) -> None:
    health = env.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    schema = env.client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/v1/decisions" in schema.json()["paths"]


def test_every_v1_endpoint_needs_a_valid_key(env: Api) -> None:
    requests = _v1_requests(env)
    assert ("POST", "/v1/decisions") in requests
    assert ("POST", "/v1/decisions/1/outcomes") in requests
    assert ("GET", "/v1/subscriptions/1") in requests
    before = ledger_counts(env.db)
    credentials: dict[str, dict[str, str]] = {
        "no key": {},
        "garbage key": {"Authorization": "Bearer nb_clerk_not-a-real-key"},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong scheme": {"Authorization": f"Basic {env.keys['clerk']}"},
        "bare key": {"Authorization": env.keys["clerk"]},
        "expired key": {"Authorization": f"Bearer {env.keys['expired']}"},
    }
    seen: dict[tuple[str, str, str], tuple[int, object]] = {}
    for name, headers in credentials.items():
        for method, path in requests:
            body = {"msisdn": "13900000001", "channel": "store"} if method == "POST" else None
            response = env.client.request(method, path, json=body, headers=headers)
            payload = response.json()
            seen[(name, method, path)] = (response.status_code, set(payload))
            assert payload["status_code"] == response.status_code
            assert payload["detail"]
    assert {k: v for k, v in seen.items() if v != (401, {"status_code", "detail"})} == {}
    assert ledger_counts(env.db) == before


def test_expired_key_is_refused_and_a_live_one_accepted(env: Api) -> None:
    body = {"msisdn": "13900000001", "channel": "store"}
    expired = env.client.post("/v1/decisions", json=body, headers=env.headers("expired"))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert env.client.post("/v1/decisions", json=body, headers=env.headers()).status_code == 200


def test_role_table(env: Api) -> None:
    sale = env.decide()
    accepted = env.outcome(sale["decision_id"], sale["offers"][0]["offer_id"], "accepted")
    assert accepted.status_code == 201, accepted.text
    subscription_id = accepted.json()["subscription"]["id"]
    decision_id = env.decide()["decision_id"]

    def call(endpoint: str, role: str) -> int:
        headers = env.headers(role)
        if endpoint == "decide":
            body = {"msisdn": "13900000001", "channel": "store"}
            return env.client.post("/v1/decisions", json=body, headers=headers).status_code
        if endpoint == "outcome":
            body = {"offer_id": sale["offers"][1]["offer_id"], "outcome": "presented"}
            path = f"/v1/decisions/{decision_id}/outcomes"
            return env.client.post(path, json=body, headers=headers).status_code
        path = f"/v1/subscriptions/{subscription_id}"
        return env.client.get(path, headers=headers).status_code

    expected = {
        ("decide", "clerk"): 200,
        ("decide", "agent"): 200,
        ("decide", "supervisor"): 403,
        ("decide", "admin"): 403,
        ("outcome", "clerk"): 201,
        ("outcome", "agent"): 201,
        ("outcome", "supervisor"): 403,
        ("outcome", "admin"): 403,
        ("subscription", "clerk"): 200,
        ("subscription", "agent"): 200,
        ("subscription", "supervisor"): 200,
        ("subscription", "admin"): 200,
    }
    actual = {(endpoint, role): call(endpoint, role) for endpoint, role in expected}
    assert actual == expected


def test_forbidden_role_gets_the_error_shape_and_writes_nothing(env: Api) -> None:
    before = ledger_counts(env.db)
    response = env.client.post(
        "/v1/decisions",
        json={"msisdn": "13900000001", "channel": "store"},
        headers=env.headers("supervisor"),
    )
    assert response.status_code == 403
    assert response.json()["status_code"] == 403
    assert "supervisor" in response.json()["detail"]
    assert ledger_counts(env.db) == before


def test_the_user_comes_from_the_key_never_the_body(env: Api) -> None:
    before = ledger_counts(env.db)
    forged = env.client.post(
        "/v1/decisions",
        json={"msisdn": "13900000001", "channel": "store", "user_id": "someone-else"},
        headers=env.headers("clerk"),
    )
    assert forged.status_code == 400
    assert forged.json()["field"] == "user_id"
    assert "unknown field" in forged.json()["detail"]
    assert ledger_counts(env.db) == before

    by_agent = env.decide(role="agent")
    forged = env.outcome(
        by_agent["decision_id"], by_agent["offers"][0]["offer_id"], "declined", recorded_by="x"
    )
    assert forged.status_code == 400
    assert forged.json()["field"] == "recorded_by"
    forged = env.outcome(
        by_agent["decision_id"], by_agent["offers"][0]["offer_id"], "declined", user_id="x"
    )
    assert forged.status_code == 400
    assert forged.json()["field"] == "user_id"

    # The clerk records an outcome on the agent's decision: each is credited with their own act.
    recorded = env.outcome(by_agent["decision_id"], by_agent["offers"][0]["offer_id"], "declined")
    assert recorded.status_code == 201
    assert recorded.json()["recorded_by"] == "clerk-1"
    with env.db.read() as session:
        decision = session.get(Decision, by_agent["decision_id"])
        assert decision is not None
        assert (decision.user_id, decision.role, decision.store_id) == ("agent-1", "agent", None)


# --- decisions --------------------------------------------------------------------------------


def test_known_customer_gets_ranked_offers_with_reasons_and_scripts(env: Api) -> None:
    assert env.report is not None
    response = env.client.post(
        "/v1/decisions",
        json={"msisdn": "+86 139-0000-0001", "channel": "store"},
        headers=env.headers("clerk"),
    )
    assert response.status_code == 200
    body = response.json()

    assert body["msisdn"] == "139****0001"
    assert "13900000001" not in response.text  # the full number never reaches the screen
    assert body["known"] is True
    assert body["channel"] == "store"
    assert body["data_version"] == env.report.version_id
    assert body["catalog_version"] == "test-1"
    assert body["segment"] == {
        "code": "fashionable_high_end",
        "name": "Fashionable high-end",
        "selling_point": "new, first, exclusive",
    }
    assert body["brand"] == "GoTone"
    assert re.fullmatch(r"[0-9a-f]{32}", body["decision_id"])

    offers = body["offers"]
    assert 1 <= len(offers) <= 3  # the store channel shows at most 3
    assert [o["rank"] for o in offers] == list(range(1, len(offers) + 1))
    scores = [o["score"] for o in offers]
    assert scores == sorted(scores, reverse=True)
    for offer in offers:
        assert offer["reasons"], offer
        assert len(offer["reasons"]) == len(offer["reason_codes"])
        assert offer["script"]["pitch"], offer
    by_id = {o["offer_id"]: o for o in offers}
    # The store script written for this segment wins over the general one.
    assert by_id["crbt_open"]["script"]["pitch"] == "The newest tones first: new, first, exclusive."
    # Held, expired or beyond the limit: said why, not silently dropped.
    rules = {s["offer_id"]: s["rule"] for s in body["suppressed"]}
    assert rules["old_promo"] == "validity"
    assert set(by_id).isdisjoint(rules)


def test_script_is_rendered_for_the_channel_and_language(env: Api) -> None:
    inbound = env.decide(channel="inbound")
    pitches = {o["offer_id"]: o["script"]["pitch"] for o in inbound["offers"]}
    assert pitches["crbt_open"] == "139****0001: ring-back tone for 5 yuan, two songs free."
    chinese = env.decide(channel="inbound", lang="zh")
    pitches = {o["offer_id"]: o["script"]["pitch"] for o in chinese["offers"]}
    assert pitches["crbt_open"] == "139****0001:彩铃每月5元,送两首。"
    assert chinese["segment"]["name"] == "时尚中高端"
    assert chinese["brand"] == "全球通"


def test_every_decision_is_stored_with_user_and_store(env: Api) -> None:
    assert env.report is not None
    by_clerk = env.decide("13900000001", role="clerk")
    by_agent = env.decide("13900000003", role="agent", channel="outbound")

    with env.db.read() as session:
        rows = {d.id: d for d in session.scalars(select(Decision))}
        shown = {
            d: sorted(
                ((offer_id, o.rank) for offer_id, o in decode_offers(row.offers).items()),
                key=lambda item: item[1],
            )
            for d, row in rows.items()
        }
    assert set(rows) == {by_clerk["decision_id"], by_agent["decision_id"]}
    clerk_row = rows[by_clerk["decision_id"]]
    assert (clerk_row.user_id, clerk_row.role, clerk_row.store_id) == (
        "clerk-1",
        "clerk",
        "NJ-0001",
    )
    assert (clerk_row.msisdn, clerk_row.channel, clerk_row.known) == ("13900000001", "store", True)
    assert clerk_row.segment == "fashionable_high_end"
    assert clerk_row.data_version == env.report.version_id
    assert clerk_row.created_at == env.clock.now()
    agent_row = rows[by_agent["decision_id"]]
    assert (agent_row.user_id, agent_row.role, agent_row.store_id) == ("agent-1", "agent", None)
    assert agent_row.channel == "outbound"
    for response in (by_clerk, by_agent):
        expected = [(o["offer_id"], o["rank"]) for o in response["offers"]]
        assert shown[response["decision_id"]] == expected


def test_unknown_number_gets_general_offers_only(env: Api, catalog: Catalog) -> None:
    general = {o.id for o in catalog.offers if o.general}
    body = env.decide("13900000099")
    assert body["known"] is False
    assert body["msisdn"] == "139****0099"
    assert body["segment"] is None
    assert body["brand"] is None
    offered = {o["offer_id"] for o in body["offers"]}
    assert offered
    assert offered <= general
    assert all("general" in o["reason_codes"] for o in body["offers"])
    with env.db.read() as session:
        stored = session.get(Decision, body["decision_id"])
        assert stored is not None
        assert (stored.known, stored.segment) == (False, None)


def test_context_event_raises_the_matching_offer(env: Api) -> None:
    plain = {o["offer_id"]: o for o in env.decide()["offers"]}
    body = env.decide(context={"events": ["handset_mms"]})
    boosted = {o["offer_id"]: o for o in body["offers"]}
    assert boosted["mms_pkg"]["score"] == pytest.approx(2 * plain["mms_pkg"]["score"])
    assert boosted["mms_pkg"]["script"]["pitch"].startswith("Your new phone sends pictures")
    assert not plain["mms_pkg"]["script"]["pitch"].startswith("Your new phone")
    with env.db.read() as session:
        stored = session.get(Decision, body["decision_id"])
        assert stored is not None
        assert stored.events == "handset_mms"


def test_limit_caps_the_offers(env: Api) -> None:
    assert len(env.decide(limit=1)["offers"]) == 1


BAD_DECISIONS: dict[str, tuple[dict[str, Any], str]] = {
    "malformed msisdn": ({"msisdn": "123", "channel": "store"}, "msisdn"),
    "msisdn with letters": ({"msisdn": "1390000000a", "channel": "store"}, "msisdn"),
    "msisdn not a string": ({"msisdn": 13900000001, "channel": "store"}, "msisdn"),
    "unknown channel": ({"msisdn": "13900000001", "channel": "web"}, "channel"),
    "limit 0": ({"msisdn": "13900000001", "channel": "store", "limit": 0}, "limit"),
    "limit 11": ({"msisdn": "13900000001", "channel": "store", "limit": 11}, "limit"),
    "limit not a number": ({"msisdn": "13900000001", "channel": "store", "limit": 2.5}, "limit"),
    "unknown event": (
        {"msisdn": "13900000001", "channel": "store", "context": {"events": ["teleported"]}},
        "context.events[0]",
    ),
    "unknown second event": (
        {
            "msisdn": "13900000001",
            "channel": "store",
            "context": {"events": ["handset_mms", "teleported"]},
        },
        "context.events[1]",
    ),
    "unknown language": ({"msisdn": "13900000001", "channel": "store", "lang": "fr"}, "lang"),
    "unknown field": ({"msisdn": "13900000001", "channel": "store", "x": 1}, "x"),
    "missing channel": ({"msisdn": "13900000001"}, "channel"),
    "missing msisdn": ({"channel": "store"}, "msisdn"),
}


def test_bad_decision_requests_are_refused_naming_the_field(env: Api) -> None:
    before = ledger_counts(env.db)
    refused: dict[str, tuple[int, str | None, bool]] = {}
    for case, (body, _field) in BAD_DECISIONS.items():
        response = env.client.post("/v1/decisions", json=body, headers=env.headers())
        payload = response.json()
        field = payload.get("field")
        names_it = field is not None and payload["detail"].startswith(f"{field}: ")
        assert payload["status_code"] == response.status_code, case
        refused[case] = (response.status_code, field, names_it)
    expected = {case: (400, field, True) for case, (_body, field) in BAD_DECISIONS.items()}
    assert refused == expected
    assert ledger_counts(env.db) == before


@pytest.mark.parametrize("content", [b"not json", b"{", b"", b"[1, 2]", b'"13900000001"'], ids=repr)
def test_body_that_is_not_a_json_object_is_refused(
    content: bytes, sqlite_settings: Settings, clock: FixedClock, standard_extract: Path
) -> None:
    db = Database(sqlite_settings)
    db.create_schema()
    try:
        with api(sqlite_settings, db, clock, standard_extract) as e:
            response = e.client.post(
                "/v1/decisions",
                content=content,
                headers=e.headers(**{"Content-Type": "application/json"}),
            )
            assert response.status_code == 400, response.text
            payload = response.json()
            assert payload["status_code"] == 400
            assert payload["detail"]
            assert ledger_counts(db)["decisions"] == 0
    finally:
        db.dispose()


def test_no_data_loaded_is_503_with_a_clear_message(
    settings: Settings, db: Database, clock: FixedClock
) -> None:
    with api(settings, db, clock, None) as e:
        response = e.client.post(
            "/v1/decisions",
            json={"msisdn": "13900000001", "channel": "store"},
            headers=e.headers(),
        )
        assert response.status_code == 503
        assert response.json()["status_code"] == 503
        assert "no warehouse extract is loaded" in response.json()["detail"]
        assert "nextbest load" in response.json()["detail"]
        # An outcome cannot be recorded either; it says so rather than failing with a 500.
        outcome = e.client.post(
            f"/v1/decisions/{'0' * 32}/outcomes",
            json={"offer_id": "weather", "outcome": "declined"},
            headers=e.headers(),
        )
        assert outcome.status_code == 503, outcome.text
        assert "no warehouse extract is loaded" in outcome.json()["detail"]
        assert ledger_counts(db) == dict.fromkeys(ledger_counts(db), 0)
