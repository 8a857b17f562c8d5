"""Who may call what: every route the app serves, against every role and no key at all.

The table is checked against ``app.routes``: a route added without a row here fails this test,
so nobody ships an endpoint without deciding who may call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Api, api
from sqlalchemy import update

from nextbest.clock import FixedClock
from nextbest.keys import create_key
from nextbest.sessions import SESSION_COOKIE
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import ProvisioningJob, Subscription

IDENTITIES = ("none", "clerk", "agent", "supervisor", "admin")


@dataclass
class Ids:
    """Real ids for the path parameters, made before the table runs."""

    decision: str
    offer: str
    subscription: int
    failed_subscription: int
    throwaway_key: int


@dataclass
class Call:
    path: str
    json: Any = None
    # Pages take no key: they know the viewer by the session cookie (POST /v1/session). For
    # these rows each role is the role's session, not its bearer key.
    by_session: bool = False


# What to send: given the ids and the caller's key (None for "none"), the path and body.
Make = Callable[[Ids, str | None], Call]


def fixed(path: str, json: Any = None) -> Make:
    return lambda ids, key: Call(path, json)


def page(path: str) -> Make:
    return lambda ids, key: Call(path, by_session=True)


def row(none: int, clerk: int, agent: int, supervisor: int, admin: int) -> dict[str, int]:
    return dict(zip(IDENTITIES, (none, clerk, agent, supervisor, admin), strict=True))


def everyone(status: int) -> dict[str, int]:
    return row(status, status, status, status, status)


FRONT_LINE_ONLY = row(401, 200, 200, 403, 403)
AGENT_ONLY = row(401, 403, 200, 403, 403)
MANAGERS_ONLY = row(401, 403, 403, 200, 200)
ANY_KEY = row(401, 200, 200, 200, 200)
ADMIN_ONLY = row(401, 403, 403, 403, 200)

DECISION_BODY = {"msisdn": "13900000001", "channel": "store"}

# (method, path template as Litestar lists it) -> (request to make, expected status per caller)
TABLE: dict[tuple[str, str], tuple[Make, dict[str, int]]] = {
    # --- open: liveness, readiness, metrics, the API's own docs
    ("GET", "/healthz"): (fixed("/healthz"), everyone(200)),
    ("GET", "/readyz"): (fixed("/readyz"), everyone(200)),
    ("GET", "/metrics"): (fixed("/metrics"), everyone(200)),
    ("GET", "/schema"): (fixed("/schema"), everyone(200)),
    ("GET", "/schema/scalar"): (fixed("/schema/scalar"), everyone(200)),
    ("GET", "/schema/swagger"): (fixed("/schema/swagger"), everyone(200)),
    ("GET", "/schema/openapi.json"): (fixed("/schema/openapi.json"), everyone(200)),
    ("GET", "/schema/oauth2-redirect.html"): (fixed("/schema/oauth2-redirect.html"), everyone(200)),
    # the render plugins' catch-all: no YAML plugin is installed, so 404 for anyone
    ("GET", "/schema/{path:str}"): (fixed("/schema/openapi.yaml"), everyone(404)),
    # --- the front line
    ("POST", "/v1/decisions"): (fixed("/v1/decisions", DECISION_BODY), FRONT_LINE_ONLY),
    ("POST", "/v1/decisions/{decision_id:str}/outcomes"): (
        lambda ids, key: Call(
            f"/v1/decisions/{ids.decision}/outcomes",
            {"offer_id": ids.offer, "outcome": "presented"},
        ),
        row(401, 201, 201, 403, 403),
    ),
    ("GET", "/v1/subscriptions/{subscription_id:int}"): (
        lambda ids, key: Call(f"/v1/subscriptions/{ids.subscription}"),
        ANY_KEY,
    ),
    # --- the back office
    ("POST", "/v1/subscriptions/{subscription_id:int}/retry"): (
        lambda ids, key: Call(f"/v1/subscriptions/{ids.failed_subscription}/retry"),
        row(401, 403, 403, 403, 202),
    ),
    ("GET", "/v1/subscriptions"): (fixed("/v1/subscriptions"), MANAGERS_ONLY),
    ("GET", "/v1/audit/flags"): (fixed("/v1/audit/flags"), MANAGERS_ONLY),
    ("GET", "/v1/sales/retention"): (fixed("/v1/sales/retention"), MANAGERS_ONLY),
    ("GET", "/v1/reports/conversion"): (fixed("/v1/reports/conversion"), MANAGERS_ONLY),
    ("GET", "/v1/reports/revenue"): (fixed("/v1/reports/revenue"), MANAGERS_ONLY),
    ("GET", "/v1/reports/funnel"): (fixed("/v1/reports/funnel"), MANAGERS_ONLY),
    ("GET", "/v1/reports/agents"): (fixed("/v1/reports/agents"), MANAGERS_ONLY),
    ("GET", "/v1/reports/lift"): (fixed("/v1/reports/lift"), MANAGERS_ONLY),
    ("GET", "/v1/reports/provisioning-failures"): (
        fixed("/v1/reports/provisioning-failures"),
        MANAGERS_ONLY,
    ),
    ("GET", "/v1/reports/audit-flags"): (fixed("/v1/reports/audit-flags"), MANAGERS_ONLY),
    ("GET", "/v1/lookups"): (fixed("/v1/lookups?msisdn=13900000001"), MANAGERS_ONLY),
    # --- keys: admins only
    ("GET", "/v1/keys"): (fixed("/v1/keys"), ADMIN_ONLY),
    ("POST", "/v1/keys"): (
        fixed("/v1/keys", {"role": "clerk", "user": "new-clerk", "store": "NJ-0002"}),
        row(401, 403, 403, 403, 201),
    ),
    ("POST", "/v1/keys/{key_id:int}/revoke"): (
        lambda ids, key: Call(f"/v1/keys/{ids.throwaway_key}/revoke"),
        ADMIN_ONLY,
    ),
    # --- widget sessions: signing in takes the key in the body (no key: a made-up one)
    ("POST", "/v1/session"): (
        lambda ids, key: Call("/v1/session", {"key": key or "nb_clerk_made-up"}),
        row(401, 201, 201, 201, 201),
    ),
    ("DELETE", "/v1/session"): (fixed("/v1/session"), row(401, 204, 204, 204, 204)),
    # --- campaigns: supervisors and admins. Bodies are deliberately incomplete: a 400 (or a
    # 404 for a campaign that does not exist) shows the caller got past the role check.
    ("GET", "/v1/campaigns"): (fixed("/v1/campaigns"), MANAGERS_ONLY),
    ("POST", "/v1/campaigns"): (fixed("/v1/campaigns", {}), row(401, 403, 403, 400, 400)),
    ("GET", "/v1/campaigns/{campaign_id:str}"): (
        fixed("/v1/campaigns/no-such-campaign"),
        row(401, 403, 403, 404, 404),
    ),
    ("PATCH", "/v1/campaigns/{campaign_id:str}"): (
        fixed("/v1/campaigns/no-such-campaign", {}),
        row(401, 403, 403, 404, 404),
    ),
    ("PUT", "/v1/campaigns/{campaign_id:str}/targets"): (
        fixed("/v1/campaigns/no-such-campaign/targets", {}),
        row(401, 403, 403, 400, 400),
    ),
    ("POST", "/v1/campaigns/{campaign_id:str}/targets/select"): (
        fixed("/v1/campaigns/no-such-campaign/targets/select", {}),
        row(401, 403, 403, 404, 404),
    ),
    ("GET", "/v1/campaigns/{campaign_id:str}/rehearsal"): (
        fixed("/v1/campaigns/no-such-campaign/rehearsal"),
        row(401, 403, 403, 404, 404),
    ),
    ("POST", "/v1/campaigns/{campaign_id:str}/transitions"): (
        fixed("/v1/campaigns/no-such-campaign/transitions", {}),
        row(401, 403, 403, 400, 400),
    ),
    ("GET", "/v1/campaigns/{campaign_id:str}/queue"): (
        fixed("/v1/campaigns/no-such-campaign/queue"),
        row(401, 403, 403, 404, 404),
    ),
    # --- the outbound queue: agents
    ("POST", "/v1/tasks/next"): (fixed("/v1/tasks/next"), AGENT_ONLY),
    ("POST", "/v1/tasks/{task_id:int}/outcome"): (
        fixed("/v1/tasks/999/outcome", {}),
        row(401, 403, 400, 403, 403),
    ),
    # --- the screens: open (they are the sign-in form), and what they show depends on the
    # session; their JSON for the console's script is the agent's only
    ("GET", "/"): (page("/"), everyone(200)),
    ("GET", "/console"): (page("/console"), everyone(200)),
    ("GET", "/dashboard"): (page("/dashboard"), everyone(200)),
    ("GET", "/demo/crm"): (page("/demo/crm"), everyone(200)),
    ("GET", "/console/tally"): (page("/console/tally"), AGENT_ONLY),
    ("GET", "/console/tasks/{task_id:int}/customer"): (
        page("/console/tasks/999/customer"),
        row(401, 403, 404, 403, 403),
    ),
    ("GET", "/widgets/{file_path:path}"): (page("/widgets/counter/counter.js"), everyone(200)),
}


def served_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("OPTIONS", "HEAD")
    }


@pytest.fixture
def env(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    with api(settings, db, clock, standard_extract) as e:
        yield e


def _ids(env: Api) -> Ids:
    sale = env.decide()
    sold = env.outcome(sale["decision_id"], sale["offers"][0]["offer_id"])
    assert sold.status_code == 201, sold.text
    failed = env.outcome(sale["decision_id"], sale["offers"][1]["offer_id"])
    assert failed.status_code == 201, failed.text
    failed_id = failed.json()["subscription"]["id"]
    with env.db.write() as session:  # as provisioning would leave it after giving up
        session.execute(
            update(Subscription).where(Subscription.id == failed_id).values(status="failed")
        )
        session.execute(
            update(ProvisioningJob)
            .where(ProvisioningJob.subscription_id == failed_id)
            .values(status="failed")
        )
    shown = env.decide()
    throwaway = create_key(env.db, role="clerk", user_id="leaver", now=env.clock.now())
    (key_id,) = [k["id"] for k in _keys(env) if k["user"] == "leaver"]
    assert throwaway
    return Ids(
        decision=shown["decision_id"],
        offer=shown["offers"][0]["offer_id"],
        subscription=sold.json()["subscription"]["id"],
        failed_subscription=failed_id,
        throwaway_key=key_id,
    )


def _keys(env: Api) -> list[dict[str, Any]]:
    listed = env.client.get("/v1/keys", headers=env.headers("admin"))
    assert listed.status_code == 200, listed.text
    result: list[dict[str, Any]] = listed.json()
    return result


def test_every_route_has_a_row(env: Api) -> None:
    served = served_routes(env.client.app)
    missing = sorted(served - TABLE.keys())
    assert not missing, (
        f"routes without a row in tests/test_roles.py TABLE (decide who may call them): {missing}"
    )
    stale = sorted(TABLE.keys() - served)
    assert not stale, f"rows for routes the app no longer serves: {stale}"


def _sessions(env: Api) -> dict[str, str]:
    """Each role's session cookie (Cookie header value), signed in with its key."""
    cookies = {}
    for role in IDENTITIES[1:]:
        signed = env.client.post("/v1/session", json={"key": env.keys[role]})
        assert signed.status_code == 201, signed.text
        value = next(
            c.split(";", 1)[0]
            for c in signed.headers.get_list("set-cookie")
            if c.startswith(SESSION_COOKIE)
        )
        cookies[role] = value
    env.client.cookies.clear()
    return cookies


def test_role_table(env: Api) -> None:
    ids = _ids(env)
    sessions = _sessions(env)
    actual: dict[tuple[str, str, str], int] = {}
    expected: dict[tuple[str, str, str], int] = {}
    for (method, template), (make, statuses) in TABLE.items():
        for identity in IDENTITIES:
            key = None if identity == "none" else env.keys[identity]
            call = make(ids, key)
            if key is None:
                headers = {}
            elif call.by_session:
                headers = {"Cookie": sessions[identity]}
            else:
                headers = {"Authorization": f"Bearer {key}"}
            response = env.client.request(method, call.path, json=call.json, headers=headers)
            actual[(method, template, identity)] = response.status_code
            expected[(method, template, identity)] = statuses[identity]
            if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                assert response.json()["detail"], (method, template, identity)
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert wrong == {}, "(method, route, caller): (got, expected)"
    assert len(expected) == len(TABLE) * len(IDENTITIES)
