"""The counter pop-up on a CRM page of another origin: with NEXTBEST_CORS_ORIGINS the listed
origins may call the API with a bearer key; any other origin, and every origin by default,
gets no CORS headers (so the browser refuses to hand the answer to the page)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from helpers import api

from nextbest.clock import FixedClock
from nextbest.settings import Settings, SettingsError
from nextbest.storage.db import Database

CRM = "https://crm.example.com"


def _preflight(client: object, origin: str) -> object:
    return client.options(  # type: ignore[attr-defined]
        "/v1/decisions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_a_listed_origin_may_call_with_a_key_and_others_may_not(
    sqlite_settings: Settings, clock: FixedClock, standard_extract: Path
) -> None:
    settings = msgspec.structs.replace(
        sqlite_settings, cors_origins=f"{CRM}, http://10.0.0.7:8080/"
    )
    db = Database(settings)
    db.create_schema()
    try:
        with api(settings, db, clock, standard_extract) as env:
            allowed = _preflight(env.client, CRM)
            assert allowed.status_code in (200, 204), allowed.text
            assert allowed.headers["access-control-allow-origin"] == CRM
            assert "POST" in allowed.headers["access-control-allow-methods"]
            assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in allowed.headers

            answer = env.client.post(
                "/v1/decisions",
                json={"msisdn": "13900000001", "channel": "store"},
                headers={**env.headers("clerk"), "Origin": CRM},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == CRM
            assert answer.json()["offers"]

            # The trailing slash of the setting does not matter; another origin gets nothing.
            assert _preflight(env.client, "http://10.0.0.7:8080").status_code in (200, 204)
            stranger = _preflight(env.client, "https://evil.example.net")
            assert "access-control-allow-origin" not in stranger.headers
            foreign = env.client.post(
                "/v1/decisions",
                json={"msisdn": "13900000001", "channel": "store"},
                headers={**env.headers("clerk"), "Origin": "https://evil.example.net"},
            )
            assert "access-control-allow-origin" not in foreign.headers
    finally:
        db.dispose()


def test_by_default_no_origin_gets_cors_headers(
    sqlite_settings: Settings, clock: FixedClock, standard_extract: Path
) -> None:
    db = Database(sqlite_settings)
    db.create_schema()
    try:
        with api(sqlite_settings, db, clock, standard_extract) as env:
            answer = env.client.post(
                "/v1/decisions",
                json={"msisdn": "13900000001", "channel": "store"},
                headers={**env.headers("clerk"), "Origin": CRM},
            )
            assert answer.status_code == 200
            assert "access-control-allow-origin" not in answer.headers
    finally:
        db.dispose()


@pytest.mark.parametrize("bad", ["crm.example.com", "https://crm.example.com/app", "ftp://x"])
def test_a_malformed_origin_is_refused_at_start(bad: str) -> None:
    with pytest.raises(SettingsError, match="NEXTBEST_CORS_ORIGINS"):
        Settings.from_env({"NEXTBEST_CORS_ORIGINS": f"{CRM},{bad}"})
