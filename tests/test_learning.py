"""Learning from outcomes: the Beta-Binomial update per (channel, offer, segment), how the
ranking uses it and says so, the refresh from the rollups, and the switch."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

from conftest import NOW, TEST_CATALOG, profile
from test_rollups import DAY1, play_scenario

from nextbest.catalog import Catalog, Learning, Offer, parse_catalog
from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.keys import Actor
from nextbest.learning import (
    CellCounts,
    Learner,
    build_table,
    estimate,
    reason_text,
)
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService
from nextbest.policy import screen
from nextbest.ranking import rank
from nextbest.rollups import learning_counts
from nextbest.storage.db import Database
from nextbest.storage.models import Decision
from nextbest.storage.report_models import ReportRollup
from nextbest.storage.shown import decode_offers
from nextbest.storage.warehouse import WarehouseReader
from nextbest.wire import DecisionRequest, OutcomeRequest

CLERK = Actor(key_id=1, user_id="ana", role="clerk", store_id="NJ-0001")
AFFINITIES = {"crbt_open": 0.62, "club_vip": 0.45, "mms_pkg": 0.30}
FASHION = "fashionable_high_end"


def test_the_beta_binomial_update_by_hand() -> None:
    # 30 of 100 accepted where the model expected 20 (a = 0.2), prior worth 50 presentations:
    # E[r] = (30 + 50 * 0.2) / (100 + 50) = 0.2667, i.e. the model's estimates times 1.3333.
    cell = estimate(CellCounts(presented=100, accepted=30, expected=20.0), prior_strength=50)
    assert round(cell.multiplier, 4) == 1.3333
    assert (cell.rate, cell.presented) == (0.3, 100)
    # little evidence moves little; much evidence moves to what was observed
    few = estimate(CellCounts(presented=5, accepted=5, expected=1.0), prior_strength=50)
    assert round(few.multiplier, 4) == round(((5 + 10) / 55) / 0.2, 4) == 1.3636
    many = estimate(CellCounts(presented=100_000, accepted=30_000, expected=20_000.0), 50)
    assert round(many.multiplier, 3) == 1.5
    # nothing to learn from
    assert estimate(CellCounts(presented=0, accepted=0, expected=0.0), 50).multiplier == 1.0
    nothing_expected = estimate(CellCounts(presented=3, accepted=1, expected=0.0), 50)
    assert (nothing_expected.multiplier, nothing_expected.rate) == (1.0, 1 / 3)


def test_reason_text() -> None:
    cell = estimate(CellCounts(presented=200, accepted=68, expected=60.0), 50)
    assert reason_text(cell, "store", 30) == (
        "Accepted by 34% of similar customers at the counter this month",
        "本月在营业厅34%的同类客户接受了此业务",
    )
    assert reason_text(cell, "outbound", 7)[0] == (  # type: ignore[index]
        "Accepted by 34% of similar customers on outbound calls this week"
    )
    assert reason_text(cell, "inbound", 14)[0] == (  # type: ignore[index]
        "Accepted by 34% of similar customers when they called in in the last 14 days"
    )


def _table(
    counts: dict[tuple[str, str, str], CellCounts], learning: Learning | None = None
) -> object:
    return build_table(counts, learning or Learning(), version=1, refreshed_at=NOW)


def _allowed(catalog: Catalog, **overrides: object) -> list[Offer]:
    return screen(catalog, profile(**overrides), [], "store", NOW).allowed


def test_the_ranking_uses_what_was_learned_and_says_so(catalog: Catalog) -> None:
    def ranked(learned: object) -> list[tuple[str, float, float | None]]:
        shown, _ = rank(
            catalog,
            _allowed(catalog),
            profile(),
            AFFINITIES,
            "store",
            [],
            3,
            learned=learned,  # type: ignore[arg-type]
        )
        return [(r.offer.id, r.probability, r.base_probability) for r in shown]

    # The warehouse alone: crbt_open 0.62 * 30, club_vip 0.45 * 40, mms_pkg 0.30 * 25.
    assert ranked(None) == [
        ("crbt_open", 0.62, None),
        ("club_vip", 0.45, None),
        ("mms_pkg", 0.3, None),
    ]
    # At the counter fashion leaders took crbt_open 40 times in 400 where the model expected
    # 248: E[r] = (40 + 50 * 0.62) / 450 = 0.1578, so 0.62 becomes 0.1578 and it drops to last.
    learned = _table(
        {("store", "crbt_open", FASHION): CellCounts(presented=400, accepted=40, expected=248.0)}
    )
    assert ranked(learned) == [
        ("club_vip", 0.45, 0.45),
        ("mms_pkg", 0.3, 0.3),
        ("crbt_open", 0.157778, 0.62),
    ]
    shown, _ = rank(
        catalog, _allowed(catalog), profile(), AFFINITIES, "store", [], 3, learned=learned
    )  # type: ignore[arg-type]
    crbt = next(r for r in shown if r.offer.id == "crbt_open")
    assert crbt.reasons[-1].code == "learned"
    assert crbt.reasons[-1].text == "Accepted by 10% of similar customers at the counter this month"
    # Other channels and segments learned nothing from it.
    shown, _ = rank(
        catalog, _allowed(catalog), profile(), AFFINITIES, "inbound", [], 3, learned=learned
    )  # type: ignore[arg-type]
    assert shown[0].offer.id == "crbt_open"
    other = profile(segment="careful_calculator")
    shown, _ = rank(catalog, _allowed(catalog), other, AFFINITIES, "store", [], 3, learned=learned)  # type: ignore[arg-type]
    assert shown[0].offer.id == "crbt_open"
    # Below min_presented the estimate still moves, but no reason is claimed.
    few = _table(
        {("store", "crbt_open", FASHION): CellCounts(presented=10, accepted=0, expected=6.2)}
    )
    shown, _ = rank(catalog, _allowed(catalog), profile(), AFFINITIES, "store", [], 3, learned=few)  # type: ignore[arg-type]
    crbt = next(r for r in shown if r.offer.id == "crbt_open")
    assert crbt.probability == round(0.62 * ((0 + 50 * 0.62) / 60 / 0.62), 6) == 0.516667
    assert "learned" not in [r.code for r in crbt.reasons]
    # Learned into the floor: an offer nobody takes is no longer worth pitching.
    dead = _table(
        {("store", "mms_pkg", FASHION): CellCounts(presented=5000, accepted=0, expected=1500.0)}
    )
    _, suppressed = rank(
        catalog, _allowed(catalog), profile(), AFFINITIES, "store", [], 3, learned=dead
    )  # type: ignore[arg-type]
    assert any(s.offer_id == "mms_pkg" and s.rule == "low_probability" for s in suppressed)


def _learning_row(
    db: Database, day: date, channel: str, offer: str, segment: str, n: int, k: int, e: float
) -> None:
    with db.write() as session:
        session.add(
            ReportRollup(
                grain="channel+offer+segment",
                day=day,
                k1=channel,
                k2=offer,
                k3=segment,
                experiment="",
                arm="",
                shard=0,
                decisions=0,
                contacts_presented=0,
                contacts_accepted=0,
                presented=n,
                accepted=k,
                revenue_fen=0,
                expected_micro=round(e * 1e6),
            )
        )


def test_refresh_reads_the_window_from_the_rollups(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    play_scenario(db, clock, tmp_path)
    catalog = parse_catalog(TEST_CATALOG.read_bytes())
    learner = Learner(db, clock)
    assert learner.table(1, catalog) is None  # nothing learned before the first refresh
    table = learner.refresh(1, catalog)
    assert table is not None
    assert learner.table(1, catalog) is table
    # The hand-worked scenario: what each cell saw, and what the model expected there.
    assert table.counts[("store", "crbt_open", FASHION)] == CellCounts(
        presented=1, accepted=1, expected=0.62
    )
    assert table.counts[("store", "mms_pkg", FASHION)] == CellCounts(
        presented=1, accepted=1, expected=0.3
    )
    assert table.counts[("store", "mms_pkg", "careful_calculator")] == CellCounts(
        presented=1, accepted=0, expected=0.04
    )
    assert table.counts[("outbound", "sms_100", FASHION)] == CellCounts(
        presented=1, accepted=0, expected=0.16
    )
    assert ("inbound", "alert", "tight_fisted") not in table.counts  # no_answer: not presented
    assert sum(c.presented for c in table.counts.values()) == 8
    # Outcomes older than the window are forgotten.
    _learning_row(db, date(2026, 9, 1), "store", "weather", "", 500, 400, 40.0)
    refreshed = learner.refresh(1, catalog)
    assert refreshed is not None and ("store", "weather", "") not in refreshed.counts
    with db.read() as session:
        assert ("store", "weather", "") in learning_counts(session, date(2026, 8, 1))


def test_switched_off_in_the_catalog(db: Database, clock: FixedClock) -> None:
    off = parse_catalog(TEST_CATALOG.read_bytes() + b"\n[learning]\nenabled = false\n")
    learner = Learner(db, clock)
    assert learner.refresh(1, off) is None
    on = parse_catalog(TEST_CATALOG.read_bytes())
    assert learner.refresh(1, on) is not None
    assert learner.table(1, off) is None  # the switch applies at once, whatever was learned


def test_a_new_data_version_reuses_the_counts_under_its_own_settings(
    db: Database, clock: FixedClock
) -> None:
    _learning_row(db, DAY1, "store", "club_vip", FASHION, 100, 0, 45.0)
    learner = Learner(db, clock)
    table = learner.refresh(1, parse_catalog(TEST_CATALOG.read_bytes()))
    assert table is not None
    assert round(table.cells[("store", "club_vip", FASHION)].multiplier, 4) == 0.3333
    stronger = parse_catalog(TEST_CATALOG.read_bytes() + b"\n[learning]\nprior_strength = 100.0\n")
    swapped = learner.table(2, stronger)
    assert swapped is not None and swapped.version == 2
    # (0 + 100 * 0.45) / 200 / 0.45
    assert round(swapped.cells[("store", "club_vip", FASHION)].multiplier, 4) == 0.5


def test_decisions_learn_and_outcomes_count_the_models_own_estimate(
    db: Database, clock: FixedClock, standard_extract: Path
) -> None:
    load_extract(db, standard_extract, clock)
    # Fashion leaders at the counter never took club_vip in 100 presentations (expected 45).
    _learning_row(db, DAY1, "store", "club_vip", FASHION, 100, 0, 45.0)
    reader = WarehouseReader(db, cache_size=10, version_check_seconds=0)
    learner = Learner(db, clock)
    active = reader.active()
    learner.refresh(active.id, active.catalog)
    decisions = DecisionService(db, reader, clock, learner)
    answer = decisions.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    # club_vip: 0.45 * (0 + 50 * 0.45) / 150 / 0.45 = 0.15, score 6 < mms_pkg's 7.5
    assert [(o.offer_id, o.probability) for o in answer.offers] == [
        ("crbt_open", 0.62),
        ("mms_pkg", 0.3),
        ("club_vip", 0.15),
    ]
    club = answer.offers[2]
    assert club.reason_codes[-1] == "learned"
    assert club.reasons[-1] == "Accepted by 0% of similar customers at the counter this month"
    with db.read() as session:
        row = session.get(Decision, answer.decision_id)
        assert row is not None
        stored = decode_offers(row.offers)
        assert (stored["club_vip"].probability, stored["club_vip"].before_learning) == (0.15, 0.45)
        assert stored["crbt_open"].before_learning is None  # unmoved
    OutcomeService(db, reader, clock).record(
        CLERK, answer.decision_id, OutcomeRequest(offer_id="club_vip", outcome="declined")
    )
    with db.read() as session:
        counts = learning_counts(session, DAY1)
    # the expectation grows by the model's 0.45, not by the 0.15 learning showed
    assert counts[("store", "club_vip", FASHION)] == CellCounts(
        presented=101, accepted=0, expected=45.45
    )


def test_the_background_refresh_runs_until_stopped(db: Database, clock: FixedClock) -> None:
    catalog = parse_catalog(TEST_CATALOG.read_bytes())
    learner = Learner(db, clock)
    stop = threading.Event()
    calls: list[datetime] = []

    def active() -> tuple[int, Catalog]:
        calls.append(datetime.now(UTC))
        if len(calls) == 1:
            raise RuntimeError("no warehouse extract is loaded yet")  # skipped, not fatal
        if len(calls) >= 3:
            stop.set()
        return 1, catalog

    thread = threading.Thread(target=learner.run_forever, args=(stop, active, 0.001))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert learner.refreshes >= 1
    assert learner.table(1, catalog) is not None


def test_learning_defaults() -> None:
    defaults = parse_catalog(TEST_CATALOG.read_bytes()).learning
    assert defaults == Learning(enabled=True, prior_strength=50.0, window_days=30, min_presented=30)
