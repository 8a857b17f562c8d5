"""Helpers shared by the storage, service, HTTP and CLI tests (fixtures stay in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import TestClient
from sqlalchemy import func, select

from nextbest.api import create_app
from nextbest.clock import FixedClock
from nextbest.keys import ROLES, create_key
from nextbest.loader import LoadReport, load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import (
    Decision,
    IdempotencyRecord,
    Outcome,
    ProvisioningJob,
    Subscription,
)

__all__ = [
    "LEDGER",
    "STORES",
    "Api",
    "api",
    "app_settings",
    "ledger_counts",
    "row_count",
]

# Where each role's key is bound (clerks sit in a store; the others do not).
STORES: dict[str, str | None] = {
    "clerk": "NJ-0001",
    "agent": None,
    "supervisor": None,
    "admin": None,
}
# Every table a decision or an outcome may write to.
LEDGER = (Decision, Outcome, Subscription, ProvisioningJob, IdempotencyRecord)


def app_settings(settings: Settings) -> Settings:
    """The fixture's settings, with the outbox worker off (a sale stays ``pending``, so tests
    see exactly what the outcome wrote) and the active version re-read on every request."""
    return msgspec.structs.replace(settings, worker_in_process=False, version_check_seconds=0.0)


def row_count(db: Database, model: Any) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def ledger_counts(db: Database) -> dict[str, int]:
    return {model.__tablename__: row_count(db, model) for model in LEDGER}


@dataclass
class Api:
    client: TestClient[Any]
    db: Database
    clock: FixedClock
    keys: dict[str, str]
    report: LoadReport | None
    extra_keys: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str = "clerk", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", **extra}

    def decide(self, msisdn: str = "13900000001", role: str = "clerk", **body: Any) -> Any:
        response = self.client.post(
            "/v1/decisions",
            json={"msisdn": msisdn, "channel": "store", **body},
            headers=self.headers(role),
        )
        assert response.status_code == 200, response.text
        return response.json()

    def outcome(
        self,
        decision_id: str,
        offer_id: str,
        outcome: str = "accepted",
        role: str = "clerk",
        key: str | None = None,
        **body: Any,
    ) -> Any:
        extra = {"Idempotency-Key": key} if key is not None else {}
        return self.client.post(
            f"/v1/decisions/{decision_id}/outcomes",
            json={"offer_id": offer_id, "outcome": outcome, **body},
            headers=self.headers(role, **extra),
        )


@contextmanager
def api(
    settings: Settings,
    db: Database,
    clock: FixedClock,
    extract: Path | None,
    *,
    expired_at: datetime | None = None,
) -> Iterator[Api]:
    """A started app over ``db`` with one key per role; ``extract`` is loaded first if given.

    ``expired_at``: also create an ``expired`` clerk key that expired then.
    """
    report = load_extract(db, extract, clock) if extract is not None else None
    keys = {
        role: create_key(db, role=role, user_id=f"{role}-1", store_id=STORES[role], now=clock.now())
        for role in ROLES
    }
    if expired_at is not None:
        keys["expired"] = create_key(
            db,
            role="clerk",
            user_id="clerk-old",
            store_id="NJ-0001",
            now=expired_at,
            expires_at=expired_at,
        )
    app = create_app(app_settings(settings), clock=clock, db=db)
    with TestClient(app) as client:
        yield Api(client=client, db=db, clock=clock, keys=keys, report=report)
