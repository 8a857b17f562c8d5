"""An accepted outcome for an offer the customer can no longer get is refused, writing
nothing; a customer who declined a minute ago and changes their mind is not."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import STANDARD_AFFINITY, STANDARD_CONTACTS, STANDARD_PROFILES, write_extract
from sqlalchemy import func, select

from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.errors import Unprocessable
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService
from nextbest.storage.db import Database
from nextbest.storage.models import Outcome, Subscription
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

CLERK = Actor(key_id=1, user_id="clerk-ana", role="clerk", store_id="NJ-0001")


def _services(db: Database, clock: FixedClock) -> tuple[DecisionService, OutcomeService]:
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    return DecisionService(db, reader, clock), OutcomeService(db, reader, clock)


def test_offer_held_since_the_decision_cannot_be_sold(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    load_extract(
        db,
        write_extract(tmp_path / "a", STANDARD_PROFILES, STANDARD_AFFINITY, STANDARD_CONTACTS),
        clock,
    )
    decisions, outcomes = _services(db, clock)
    decision = decisions.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    assert "crbt_open" in [o.offer_id for o in decision.offers]
    # Tonight's extract says the customer subscribed elsewhere meanwhile.
    profiles = [list(p) for p in STANDARD_PROFILES]
    profiles[0][7] = "crbt_open"
    clock.advance(minutes=5)
    load_extract(
        db, write_extract(tmp_path / "b", profiles, STANDARD_AFFINITY, STANDARD_CONTACTS), clock
    )
    with pytest.raises(Unprocessable, match=r"no longer eligible.*already holds") as refused:
        outcomes.record(
            CLERK, decision.decision_id, OutcomeRequest(offer_id="crbt_open", outcome="accepted")
        )
    assert refused.value.field == "offer_id"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Outcome)) == 0
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_a_decline_then_yes_in_the_same_conversation_is_a_sale(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    load_extract(db, standard_extract, clock)
    decisions, outcomes = _services(db, clock)
    decision = decisions.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    offer = decision.offers[0].offer_id
    outcomes.record(CLERK, decision.decision_id, OutcomeRequest(offer_id=offer, outcome="declined"))
    clock.advance(minutes=1)
    sale = outcomes.record(
        CLERK, decision.decision_id, OutcomeRequest(offer_id=offer, outcome="accepted")
    )
    assert sale.status_code == 201
    assert sale.response.subscription is not None
