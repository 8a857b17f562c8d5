"""Control groups: a stable assignment by number and experiment, the baseline the control arm
gets, the arm stored on the decision, and the lift the reports measure from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    NOW,
    STANDARD_AFFINITY,
    STANDARD_CONTACTS,
    STANDARD_PROFILES,
    TEST_CATALOG,
    profile,
    write_extract,
)
from sqlalchemy import select

from nextbest.catalog import Catalog, CatalogError, Experiment, parse_catalog
from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.engine import propose
from nextbest.experiments import CONTROL_RULE, Assignment, assign, baseline_offers
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService
from nextbest.policy import screen
from nextbest.reports import ReportService
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

CLERK = Actor(key_id=1, user_id="ana", role="clerk", store_id="NJ-0001")


def _catalog_with(section: str, tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG.read_text() + "\n" + section)
    return path


def test_assignment_is_stable_and_follows_the_share() -> None:
    experiment = Experiment(name="holdout-q4", control_share=0.2)
    numbers = [f"139{i:08d}" for i in range(20_000)]
    arms = [assign(experiment, n) for n in numbers]
    assert arms == [assign(experiment, n) for n in numbers]  # the same every time
    share = sum(a is not None and a.arm == "control" for a in arms) / len(numbers)
    assert 0.19 < share < 0.21
    # Another experiment draws another control group.
    other = [assign(Experiment(name="holdout-q1", control_share=0.2), n) for n in numbers]
    moved = sum(
        a is not None and b is not None and a.arm != b.arm for a, b in zip(arms, other, strict=True)
    )
    assert moved > 4000
    assert assign(Experiment(), "13900000001") is None  # off by default
    assert assign(Experiment(name="x", control_share=0.0), "13900000001") is None
    everyone = Experiment(name="all", control_share=1.0)
    assert all(a is not None and a.arm == "control" for a in (assign(everyone, n) for n in numbers))


def test_the_catalog_section_is_optional_and_checked() -> None:
    text = TEST_CATALOG.read_bytes()
    assert parse_catalog(text).experiment == Experiment()
    on = parse_catalog(
        text + b'\n[experiment]\nname = "h"\ncontrol_share = 0.1\nbaseline = "none"\n'
    )
    assert (on.experiment.name, on.experiment.control_share, on.experiment.baseline) == (
        "h",
        0.1,
        "none",
    )
    with pytest.raises(CatalogError, match="control_share: must be within"):
        parse_catalog(text + b'\n[experiment]\nname = "h"\ncontrol_share = 1.5\n')
    with pytest.raises(CatalogError, match="needs a name"):
        parse_catalog(text + b"\n[experiment]\ncontrol_share = 0.1\n")
    with pytest.raises(CatalogError, match="baseline"):
        parse_catalog(text + b'\n[experiment]\nname = "h"\nbaseline = "best"\n')


def test_random_baseline_draws_eligible_offers_one_per_service(catalog: Catalog) -> None:
    allowed = screen(catalog, profile(), [], "store", NOW).allowed
    assert {o.service for o in allowed} >= {"crbt", "sms", "mms", "club"}
    draws = set()
    for seed in range(200):
        assignment = Assignment(experiment="h", arm="control", baseline="random", seed=seed)
        chosen, held_back = baseline_offers(allowed, assignment, 3)
        assert len(chosen) == 3
        assert len({o.service for o in chosen}) == 3
        assert {o.id for o in chosen} | {s.offer_id for s in held_back} == {o.id for o in allowed}
        assert all(s.rule == CONTROL_RULE for s in held_back)
        assert chosen == baseline_offers(allowed, assignment, 3)[0]  # seeded: repeatable
        draws.add(tuple(o.id for o in chosen))
    assert len(draws) > 10  # and random across customers
    none = Assignment(experiment="h", arm="control", baseline="none", seed=1)
    chosen, held_back = baseline_offers(allowed, none, 3)
    assert chosen == []
    assert len(held_back) == len(allowed)


def test_propose_in_the_control_arm(catalog: Catalog) -> None:
    kwargs = {
        "msisdn": "13900000001",
        "profile": profile(),
        "affinities": {"crbt_open": 0.62, "club_vip": 0.45, "mms_pkg": 0.30},
        "history": [],
        "channel": "store",
        "events": [],
        "now": NOW,
    }
    model = propose(catalog, **kwargs)  # type: ignore[arg-type]
    assert [o.ranked.offer.id for o in model.offers] == ["crbt_open", "club_vip", "mms_pkg"]
    seed = 3
    control = propose(
        catalog,
        assignment=Assignment(experiment="h", arm="control", baseline="random", seed=seed),
        **kwargs,  # type: ignore[arg-type]
    )
    allowed = screen(catalog, profile(), [], "store", NOW).allowed
    expected = baseline_offers(
        allowed, Assignment(experiment="h", arm="control", baseline="random", seed=seed), 3
    )[0]
    assert {o.ranked.offer.id for o in control.offers} == {o.id for o in expected}
    # an offer the ranking would cut as too unlikely is still shown to the control group
    assert all(o.ranked.probability > 0 for o in control.offers)
    assert any(s.rule == CONTROL_RULE for s in control.suppressed)
    nothing = propose(
        catalog,
        assignment=Assignment(experiment="h", arm="control", baseline="none", seed=seed),
        **kwargs,  # type: ignore[arg-type]
    )
    assert nothing.offers == []
    assert nothing.notice == "No offer fits this customer right now."
    same = propose(
        catalog,
        assignment=Assignment(experiment="h", arm="model", baseline="none", seed=seed),
        **kwargs,  # type: ignore[arg-type]
    )
    assert same == model


def test_decisions_carry_the_arm_and_the_report_measures_lift(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    catalog = _catalog_with('[experiment]\nname = "holdout"\ncontrol_share = 0.5\n', tmp_path)
    extract = write_extract(
        tmp_path / "x", STANDARD_PROFILES, STANDARD_AFFINITY, STANDARD_CONTACTS, catalog=catalog
    )
    load_extract(db, extract, clock)
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    decisions = DecisionService(db, reader, clock)
    outcomes = OutcomeService(db, reader, clock)
    experiment = Experiment(name="holdout", control_share=0.5)
    arms = {}
    for msisdn in ("13900000001", "13900000003", "13900000004"):
        answer = decisions.decide(CLERK, DecisionRequest(msisdn=msisdn, channel="store"))
        assignment = assign(experiment, msisdn)
        assert assignment is not None
        arms[msisdn] = assignment.arm
        with db.read() as session:
            stored = session.scalar(select(Decision).where(Decision.id == answer.decision_id))
        assert stored is not None
        assert (stored.experiment, stored.arm) == ("holdout", assignment.arm)
        if assignment.arm == "control":  # more eligible services than the 3 shown
            assert any(s.rule == CONTROL_RULE for s in answer.suppressed)
        first = answer.offers[0].offer_id
        verdict = "accepted" if msisdn != "13900000003" else "declined"
        outcomes.record(CLERK, answer.decision_id, OutcomeRequest(offer_id=first, outcome=verdict))
    # two in control (…01 accepted, …03 declined), one in the model arm (…04 accepted)
    assert arms == {"13900000001": "control", "13900000003": "control", "13900000004": "model"}
    report = ReportService(db, clock).lift(by=["channel"], experiment="holdout")
    (row,) = report.rows
    assert (row.channel, row.model_n, row.model_accepted, row.control_n, row.control_accepted) == (
        "store",
        1,
        1,
        2,
        1,
    )
    # 2 * exp(+-1.96 * sqrt(1/1 - 1/1 + 1/1 - 1/2)): far too few contacts to tell
    assert (row.lift, row.low, row.high, row.verdict) == (2.0, 0.5002, 7.9969, "unclear")
