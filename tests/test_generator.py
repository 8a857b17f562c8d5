"""The synthetic operator and the demo catalog: the contract, realism, determinism."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest

from nextbest.catalog import load_catalog
from nextbest.clock import FixedClock
from nextbest.loader import AFFINITY_COLUMNS, CONTACT_COLUMNS, PROFILE_COLUMNS, load_extract
from nextbest.msisdn import normalize
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.synth import DEMO_CATALOG, EXAMPLES, generate

AS_OF = date(2026, 11, 19)


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, size=5000, seed=3, as_of=AS_OF)
    return out


def test_demo_catalog_is_complete() -> None:
    catalog = load_catalog(DEMO_CATALOG)
    assert len(catalog.segments) == 14
    assert {b.code for b in catalog.brands} == {"gotone", "mzone", "easyown"}
    assert 20 <= len(catalog.offers) <= 40
    services = {o.service for o in catalog.offers}
    assert {"crbt", "sms", "data", "newspaper", "fetion", "music_club", "mms"} <= services
    for offer in catalog.offers:
        for channel in offer.channels:
            langs = {s.lang for s in offer.scripts if channel in s.channels}
            assert {"en", "zh"} <= langs, (offer.id, channel)
        for script in offer.scripts:
            if "outbound" in script.channels:
                assert script.opening and script.closing and script.objections, offer.id
    not_called = {s.code for s in catalog.segments if not s.outbound}
    assert not_called == {"tight_fisted", "low_potential"}


def test_files_follow_the_contract(extract: Path) -> None:
    catalog = load_catalog(extract / "catalog.toml")
    header, profiles = _rows(extract / "profiles.csv")
    assert tuple(header) == PROFILE_COLUMNS
    numbers = [row[0] for row in profiles]
    assert len(numbers) == len(set(numbers)) == 5000
    assert all(normalize(n) == n for n in numbers)
    for row in profiles:
        assert catalog.segment(row[1]) is not None
        assert catalog.brand(row[2]) is not None
        assert float(row[5]) >= 0
        assert set(filter(None, row[10].split(";"))) <= {"dnd", "complaint", "arrears"}
    held = {(row[0], offer) for row in profiles for offer in filter(None, row[7].split(";"))}
    header, affinity = _rows(extract / "affinity.csv")
    assert tuple(header) == AFFINITY_COLUMNS
    assert 6 * 4000 < len(affinity) < 10 * 5000
    for msisdn, offer_id, score in affinity:
        assert catalog.offer(offer_id) is not None
        assert 0.0 <= float(score) <= 1.0
        assert (msisdn, offer_id) not in held
    header, contacts = _rows(extract / "contacts.csv")
    assert tuple(header) == CONTACT_COLUMNS
    as_of = datetime.fromisoformat("2026-11-19T09:00:00+08:00")
    for _, channel, _, kind, at in contacts:
        assert channel in {"store", "inbound", "outbound", "sms"}
        assert kind in {"contacted", "subscribed", "cancelled", "complaint"}
        assert datetime.fromisoformat(at) <= as_of


def test_shares_look_like_an_operator(extract: Path) -> None:
    _, profiles = _rows(extract / "profiles.csv")
    segments = Counter(row[1] for row in profiles)
    assert len(segments) == 14
    assert all(count > 50 for count in segments.values())
    flags = Counter(f for row in profiles for f in row[10].split(";") if f)
    assert 0.01 < flags["dnd"] / 5000 < 0.06
    high = [float(r[5]) for r in profiles if r[1] == "fashionable_high_end"]
    low = [float(r[5]) for r in profiles if r[1] == "low_potential"]
    assert sum(high) / len(high) > 2 * sum(low) / len(low)
    gotone_share = Counter(r[2] for r in profiles if r[1] == "fashionable_high_end")["gotone"]
    assert gotone_share / len(high) > 0.6


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        generate(tmp_path / name, size=300, seed=seed, as_of=AS_OF)
    for file in ("profiles.csv", "affinity.csv", "contacts.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "profiles.csv").read_bytes() != (
        tmp_path / "c" / "profiles.csv"
    ).read_bytes()


def test_reserved_examples_behave_as_the_demo_says(extract: Path, tmp_path: Path) -> None:
    from nextbest.decisions import DecisionService
    from nextbest.keys import Actor
    from nextbest.storage.warehouse import WarehouseReader
    from nextbest.wire import DecisionRequest

    _, profiles = _rows(extract / "profiles.csv")
    numbers = {row[0] for row in profiles}
    assert {"13800000001", "13800000002", "13800000003"} <= numbers
    assert "13800000009" not in numbers
    assert set(EXAMPLES) >= {"13800000001", "13800000009"}
    clock = FixedClock(datetime.fromisoformat("2026-11-19T10:00:00+08:00"))
    db = Database(Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}"))
    try:
        load_extract(db, extract, clock)
        service = DecisionService(
            db, WarehouseReader(db, cache_size=10, version_check_seconds=0), clock
        )
        clerk = Actor(key_id=1, user_id="c", role="clerk")

        def decide(msisdn: str, channel: str) -> tuple[int, str | None]:
            answer = service.decide(clerk, DecisionRequest(msisdn=msisdn, channel=channel))
            return len(answer.offers), answer.notice

        assert decide("13800000001", "store")[0] >= 2
        count, notice = decide("13800000002", "outbound")
        assert count == 0 and notice is not None and "do-not-disturb" in notice
        count, notice = decide("13800000003", "outbound")
        assert count == 0 and notice is not None and "60 days" in notice
        assert decide("13800000003", "store")[0] >= 1
        unknown = service.decide(clerk, DecisionRequest(msisdn="13800000009", channel="store"))
        assert not unknown.known and unknown.offers
    finally:
        db.dispose()
