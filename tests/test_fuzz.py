"""Fuzz the API from its own OpenAPI schema (schemathesis): valid and invalid requests to every
operation, with a key that may call it. Whatever is sent: no 5xx, every 4xx a JSON error with a
sentence in ``detail``, and no whole subscriber number in any answer.

Bounded and repeatable: a fixed number of examples per generation mode, derandomized (the
same requests on every run), no example database, no deadline (a slow CI box is not a bug).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from helpers import Api, api
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from nextbest.clock import FixedClock
from nextbest.settings import Settings
from nextbest.storage.db import Database

# Examples per generation mode (positive: valid by the schema; negative: invalid on purpose),
# per backend; plus decisions for real numbers, which random strings almost never are.
EXAMPLES = {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 150}
DECISION_EXAMPLES = 60
NUMBERS_KNOWN = ["13900000001", "13900000002", "13900000003", "13900000004"]
NUMBERS = [*NUMBERS_KNOWN, "+86 139 8888 7777"]
# A mobile number as a person would type it (the shape nextbest.logs masks).
_NUMBER_SENT = re.compile(
    r"(?<![0-9.])(?:(?:\+86|0086|86)[\s\-()]*)?1[\s\-()]*[3-9](?:[\s\-()]*[0-9]){9}(?![0-9.])"
)
# Which key each operation is sent with: a front-line key where the front line works, an admin
# key elsewhere (refusals by role are the role table's business: tests/test_roles.py).
_FRONT_LINE = ("/v1/decisions", "/v1/tasks")


@pytest.fixture
def env(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    """SQLite and PostgreSQL: what one stores, the other may refuse (a NUL, say)."""
    quiet = msgspec.structs.replace(settings, rate_limit_per_minute=0)
    with api(quiet, db, clock, standard_extract) as e:
        yield e


def _send(env: Api, case: Any) -> httpx.Response | None:
    """The case as the test client's request; None if HTTP cannot carry it at all (a header
    value outside latin-1, say): no server ever sees such a request."""
    kwargs = case.as_transport_kwargs(base_url=str(env.client.base_url).rstrip("/"))
    role = "agent" if case.operation.path.startswith(_FRONT_LINE) else "admin"
    headers = {k: v for k, v in kwargs.get("headers", {}).items() if k.lower() != "connection"}
    headers.update(env.headers(role))
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body["content"] = data if isinstance(data, bytes | str) else str(data)
    try:
        return env.client.request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params") or None,
            headers=headers,
            **body,
        )
    except (UnicodeEncodeError, httpx.LocalProtocolError, httpx.InvalidURL):
        return None


def _numbers_sent(case: Any) -> set[str]:
    """Every mobile number in what the case sends (body, query, path), separators dropped."""
    sent = json.dumps([case.body if isinstance(case.body, dict | list | str) else None,
                       case.query, case.path_parameters], default=str)  # fmt: skip
    found = {re.sub(r"[^0-9]", "", m.group(0))[-11:] for m in _NUMBER_SENT.finditer(sent)}
    return found | set(NUMBERS_KNOWN)


def _check(case: Any, response: httpx.Response) -> None:
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), where
        payload = response.json()
        assert isinstance(payload.get("detail"), str) and payload["detail"].strip(), where
        assert payload["status_code"] == response.status_code, where
    # No number sent (nor any the warehouse knows) comes back whole. (Not "no 11 digits at
    # all": a hex decision id may hold such a run by chance.)
    found = [n for n in _numbers_sent(case) if n in response.text]
    assert not found, f"{where}: whole numbers in the answer: {found[:3]}"


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_fuzz_the_api_from_its_schema(env: Api, mode: GenerationMode) -> None:
    raw = env.client.get("/schema/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # every documented operation is in play
    sent: list[int] = []

    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(mode))
    def fuzz(case: Any) -> None:
        response = _send(env, case)
        if response is None:
            return
        sent.append(response.status_code)
        _check(case, response)

    fuzz()
    assert len(sent) >= EXAMPLES[mode] // 2  # most of the budget reached the server


def test_fuzz_decisions_for_real_numbers(env: Api) -> None:
    """The schema cannot say what a valid number is, so random ones are all refused; here the
    rest of the body is fuzzed around numbers the warehouse knows (and one it does not)."""
    raw = env.client.get("/schema/openapi.json").json()
    operation = schemathesis.openapi.from_dict(raw)["/v1/decisions"]["POST"]
    statuses: list[int] = []

    @settings(
        max_examples=DECISION_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), number=st.sampled_from(NUMBERS))
    def fuzz(case: Any, number: str) -> None:
        if isinstance(case.body, dict):
            case.body["msisdn"] = number
        response = _send(env, case)
        if response is None:
            return
        statuses.append(response.status_code)
        _check(case, response)

    fuzz()
    assert statuses.count(200) >= DECISION_EXAMPLES // 4  # real decisions were made
