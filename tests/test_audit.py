"""Commission audit flags, the warehouse's sales status, and 90-day retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from conftest import STANDARD_AFFINITY, STANDARD_PROFILES, write_extract
from litestar.testing import TestClient

from nextbest.api import create_app
from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.keys import Actor, create_key
from nextbest.loader import LoadError, load_extract
from nextbest.outbox import OutboxWorker
from nextbest.outcomes import OutcomeService
from nextbest.provisioning import LedgerProvisioner
from nextbest.sales import SalesService
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

CLERK = Actor(key_id=1, user_id="clerk-ana", role="clerk", store_id="NJ-0001")


def _sell(db: Database, clock: FixedClock, msisdn: str) -> tuple[int, str]:
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    decision = DecisionService(db, reader, clock).decide(
        CLERK, DecisionRequest(msisdn=msisdn, channel="store")
    )
    offer = decision.offers[0].offer_id
    recorded = OutcomeService(db, reader, clock).record(
        CLERK, decision.decision_id, OutcomeRequest(offer_id=offer, outcome="accepted")
    )
    assert recorded.response.subscription is not None
    return recorded.response.subscription.id, offer


def _write_sales(directory: Path, rows: list[list[str]]) -> None:
    lines = ["subscription_id,status,billed,cancelled_at", *(",".join(r) for r in rows)]
    (directory / "sales.csv").write_text("\n".join(lines) + "\n")


def test_audit_flags_and_retention_after_the_next_load(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    first = write_extract(tmp_path / "day0", STANDARD_PROFILES, STANDARD_AFFINITY)
    load_extract(db, first, clock)
    typical, typical_offer = _sell(db, clock, "13900000001")
    in_arrears, arrears_offer = _sell(db, clock, "13900000004")
    assert arrears_offer == "alert"  # the only offer allowed in arrears
    sold_at = clock.now()
    assert OutboxWorker(db, LedgerProvisioner(), clock, Settings()).run_once() == 2

    clock.advance(days=100)
    complaint_at = (sold_at + timedelta(days=10)).isoformat()
    before_sale = (sold_at - timedelta(days=3)).isoformat()
    later = write_extract(
        tmp_path / "day100",
        STANDARD_PROFILES,
        STANDARD_AFFINITY,
        [
            ["13900000001", "inbound", "", "complaint", complaint_at],
            ["13900000004", "store", "alert", "subscribed", before_sale],
        ],
    )
    cancelled_at = (sold_at + timedelta(days=30)).isoformat()
    _write_sales(
        later,
        [[str(typical), "active", "no", ""], [str(in_arrears), "cancelled", "yes", cancelled_at]],
    )
    report = load_extract(db, later, clock)
    assert report.sales_updated == 2
    assert report.audit_flags == {
        "complaint_after": 1,
        "not_billed": 1,
        "arrears": 1,
        "already_held": 1,
    }
    sales = SalesService(db, clock)
    flags = {(f.subscription_id, f.flag) for f in sales.audit_flags(None)}
    assert flags == {
        (typical, "complaint_after"),
        (typical, "not_billed"),
        (in_arrears, "arrears"),
        (in_arrears, "already_held"),
    }
    # flags are not repeated by the next load
    again = load_extract(db, later, clock)
    assert again.audit_flags == {}
    assert len(sales.audit_flags(None)) == 4

    retention = sales.retention(90)
    assert (retention.sales, retention.retained, retention.rate) == (2, 1, 0.5)
    cancelled = sales.subscriptions("cancelled", None, None)
    assert [c.id for c in cancelled] == [in_arrears]
    assert cancelled[0].msisdn == "139****0004"
    assert typical_offer


def test_retention_of_nothing_is_none(db: Database, clock: FixedClock) -> None:
    retention = SalesService(db, clock).retention(90)
    assert (retention.sales, retention.retained, retention.rate) == (0, 0, None)


def test_sales_file_with_unknown_sale_or_bad_status_is_refused(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    extract = write_extract(tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY)
    load_extract(db, extract, clock)
    _write_sales(
        extract,
        [["999", "active", "yes", ""], ["abc", "active", "", ""], ["1", "gone", "", ""]],
    )
    with pytest.raises(LoadError) as refused:
        load_extract(db, extract, clock)
    text = str(refused.value)
    assert "sales.csv:2: column subscription_id: no sale 999 was recorded here" in text
    assert "sales.csv:3: column subscription_id: expected a whole number" in text
    assert "sales.csv:4: column status: expected active or cancelled" in text


def test_back_office_endpoints_are_for_managers(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    load_extract(db, standard_extract, clock)
    keys = {
        role: create_key(db, role=role, user_id=f"u-{role}", now=clock.now())
        for role in ("clerk", "agent", "supervisor", "admin")
    }
    app = create_app(
        Settings(database_url=settings.database_url, worker_in_process=False), clock=clock, db=db
    )
    with TestClient(app) as client:
        for path in ("/v1/subscriptions?status=failed", "/v1/audit/flags", "/v1/sales/retention"):
            for role, key in keys.items():
                response = client.get(path, headers={"Authorization": f"Bearer {key}"})
                expected = 200 if role in ("supervisor", "admin") else 403
                assert response.status_code == expected, (path, role, response.text)
        bad = client.get(
            "/v1/subscriptions?status=lost", headers={"Authorization": f"Bearer {keys['admin']}"}
        )
        assert bad.status_code == 400
        assert "status" in bad.json()["detail"]
