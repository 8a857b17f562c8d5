"""The synthetic operator (nextbest.synth): the extract contract row by row, realism,
determinism, and the reserved demo numbers."""

from __future__ import annotations

import csv
import re
import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from nextbest.catalog import Catalog, Offer, load_catalog
from nextbest.engine import propose
from nextbest.records import ContactEvent, Profile
from nextbest.synth import DEMO_CATALOG, EXAMPLES, GenerateReport, generate, main

AS_OF = date(2026, 11, 19)
CST = timezone(timedelta(hours=8))
MIDNIGHT = datetime(2026, 11, 19, tzinfo=CST)
PROFILE_HEADER = [
    "msisdn",
    "segment",
    "brand",
    "region",
    "store_id",
    "arpu",
    "handset",
    "subscriptions",
    "lifecycle",
    "channel_pref",
    "flags",
]
AFFINITY_HEADER = ["msisdn", "offer_id", "score"]
CONTACT_HEADER = ["msisdn", "channel", "offer_id", "kind", "at"]
STAGES = {"potential", "active", "silent", "churn_risk", "churned"}
CHANNELS = {"store", "inbound", "outbound", "sms"}


def _split(value: str) -> list[str]:
    return value.split(";") if value else []


def _offer(catalog: Catalog, offer_id: str) -> Offer:
    offer = catalog.offer(offer_id)
    assert offer is not None, offer_id
    return offer


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        return next(reader), list(reader)


class Extract:
    """One generated extract, parsed."""

    def __init__(self, directory: Path, report: GenerateReport) -> None:
        self.directory = directory
        self.report = report
        self.catalog = load_catalog(directory / "catalog.toml")
        self.profile_header, self.profiles = _read(directory / "profiles.csv")
        self.affinity_header, self.affinity = _read(directory / "affinity.csv")
        self.contact_header, self.contacts = _read(directory / "contacts.csv")
        self.by_number = {row[0]: row for row in self.profiles}


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Extract:
    directory = tmp_path_factory.mktemp("synth")
    report = generate(directory, size=2000, seed=11, as_of=AS_OF)
    return Extract(directory, report)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Extract:
    directory = tmp_path_factory.mktemp("synth5000")
    report = generate(directory, size=5000, seed=5, as_of=AS_OF)
    return Extract(directory, report)


def test_files_and_exact_headers(extract: Extract) -> None:
    names = {p.name for p in extract.directory.iterdir()}
    assert names == {"catalog.toml", "profiles.csv", "affinity.csv", "contacts.csv"}
    assert (extract.directory / "catalog.toml").read_bytes() == DEMO_CATALOG.read_bytes()
    assert extract.profile_header == PROFILE_HEADER
    assert extract.affinity_header == AFFINITY_HEADER
    assert extract.contact_header == CONTACT_HEADER
    report = extract.report
    assert report.profiles == len(extract.profiles) == 2000
    assert report.affinities == len(extract.affinity)
    assert report.contacts == len(extract.contacts)
    assert sum(report.segments.values()) == 2000
    assert (report.size, report.seed, report.as_of) == (2000, 11, "2026-11-19")


def test_profiles_follow_the_contract(extract: Extract) -> None:
    catalog = extract.catalog
    services = {s.code for s in catalog.services}
    numbers = [row[0] for row in extract.profiles]
    assert len(set(numbers)) == len(numbers)
    prefixes: dict[str, set[str]] = defaultdict(set)
    for row in extract.profiles:
        assert len(row) == 11
        msisdn, segment, brand, region, store, arpu, handset, subs, lifecycle, prefs, flags = row
        assert re.fullmatch(r"1[3-9]\d{9}", msisdn), msisdn
        assert catalog.segment(segment) is not None
        assert catalog.brand(brand) is not None
        assert re.fullmatch(r"[A-Z][a-z]+", region), region
        assert re.fullmatch(r"[A-Z]{2}-\d{4}", store), store
        prefixes[region].add(store[:2])
        assert re.fullmatch(r"\d+\.\d{2}", arpu) and float(arpu) > 0
        caps = _split(handset)
        assert set(caps) <= {"mms", "data", "3g"} and len(caps) == len(set(caps))
        assert "3g" not in caps or "data" in caps
        for offer_id in _split(subs):
            offer = catalog.offer(offer_id)
            assert offer is not None, offer_id
            assert set(offer.requires) <= set(caps), (msisdn, offer_id)
            assert not offer.brands or brand in offer.brands, (msisdn, offer_id)
        pairs = [pair.split(":") for pair in _split(lifecycle)]
        assert all(len(p) == 2 and p[0] in services and p[1] in STAGES for p in pairs), lifecycle
        assert len({p[0] for p in pairs}) == len(pairs)
        ranked = _split(prefs)
        assert ranked and set(ranked) <= CHANNELS and len(ranked) == len(set(ranked))
        assert set(_split(flags)) <= {"dnd", "complaint", "arrears"}
    # one store prefix per region, and more than a couple of regions
    assert all(len(p) == 1 for p in prefixes.values()) and len(prefixes) >= 6


def test_holdings_agree_with_the_lifecycle(extract: Extract) -> None:
    catalog = extract.catalog
    for row in extract.profiles[3:]:  # the examples are hand-written
        stages = dict(pair.split(":") for pair in _split(row[8]))
        held = _split(row[7])
        groups = [_offer(catalog, o).group for o in held if _offer(catalog, o).group]
        assert len(groups) == len(set(groups)), row  # one size of each exclusive group
        for offer_id in held:
            offer = catalog.offer(offer_id)
            assert offer is not None
            assert stages.get(offer.service) in ("active", "silent", "churn_risk"), row


def test_affinities_follow_the_contract(extract: Extract) -> None:
    catalog = extract.catalog
    held = {(row[0], o) for row in extract.profiles for o in _split(row[7])}
    per_subscriber: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    scores: list[float] = []
    for msisdn, offer_id, score in extract.affinity:
        assert msisdn in extract.by_number
        offer = catalog.offer(offer_id)
        assert offer is not None, offer_id
        assert re.fullmatch(r"[01]\.\d{4}", score), score
        assert 0.0 <= float(score) <= 1.0
        assert (msisdn, offer_id) not in held, (msisdn, offer_id)
        assert (msisdn, offer_id) not in seen
        seen.add((msisdn, offer_id))
        # expired offers are no longer scored
        assert offer.valid_to is None or offer.valid_to >= AS_OF, offer_id
        per_subscriber[msisdn] += 1
        scores.append(float(score))
    assert max(per_subscriber.values()) <= 10
    assert 6 <= len(extract.affinity) / len(extract.profiles) <= 10
    assert 0.1 <= statistics.mean(scores) <= 0.25
    assert max(scores) >= 0.7  # a tail of strong propensities


def test_affinities_fit_the_subscriber(extract: Extract) -> None:
    catalog = extract.catalog
    for msisdn, offer_id, _ in extract.affinity:
        row = extract.by_number[msisdn]
        offer = catalog.offer(offer_id)
        assert offer is not None
        assert not offer.brands or row[2] in offer.brands, (msisdn, offer_id)
        assert set(offer.requires) <= set(_split(row[6])), (msisdn, offer_id)
        assert not offer.segments or row[1] in offer.segments, (msisdn, offer_id)
        groups = {_offer(catalog, o).group for o in _split(row[7])} - {""}
        assert not offer.group or offer.group not in groups, (msisdn, offer_id)


def test_contacts_follow_the_contract(extract: Extract) -> None:
    catalog = extract.catalog
    earliest = MIDNIGHT - timedelta(days=200)
    for msisdn, channel, offer_id, kind, at in extract.contacts:
        assert msisdn in extract.by_number
        assert channel in CHANNELS
        assert kind in {"contacted", "subscribed", "cancelled", "complaint"}
        assert offer_id == "" or catalog.offer(offer_id) is not None, offer_id
        if kind in ("cancelled", "subscribed"):
            assert offer_id
        when = datetime.fromisoformat(at)
        assert when.utcoffset() == timedelta(hours=8), at
        assert at.endswith("+08:00")
        assert earliest < when < MIDNIGHT, at
    subscribed = {(c[0], c[2]) for c in extract.contacts if c[3] == "subscribed"}
    held = {(row[0], o) for row in extract.profiles for o in _split(row[7])}
    assert subscribed <= held  # a sale the warehouse saw is a subscription it reports


def test_contact_rates_look_like_an_operator(large: Extract) -> None:
    n = len(large.profiles)
    outbound = defaultdict(list)
    for msisdn, channel, _, kind, at in large.contacts:
        if channel == "outbound" and kind == "contacted":
            outbound[msisdn].append(MIDNIGHT - datetime.fromisoformat(at))
    recent = {m for m, ages in outbound.items() if min(ages) <= timedelta(days=120)}
    inside = {m for m, ages in outbound.items() if min(ages) < timedelta(days=60)}
    assert 0.12 <= len(recent) / n <= 0.18
    assert 0.3 < len(inside) / len(recent) < 0.7  # some inside the 60-day window, some not
    cancelled = {c[0] for c in large.contacts if c[3] == "cancelled"}
    complained = {c[0] for c in large.contacts if c[3] == "complaint"}
    assert 0.02 <= len(cancelled) / n <= 0.04
    assert 0.005 <= len(complained) / n <= 0.02
    flags = Counter(f for row in large.profiles for f in _split(row[10]))
    assert 0.02 <= flags["dnd"] / n <= 0.04
    assert 0.005 <= flags["complaint"] / n <= 0.02
    assert 0.025 <= flags["arrears"] / n <= 0.055
    dnd = {row[0] for row in large.profiles if "dnd" in row[10]}
    recent_calls = {m for m, ages in outbound.items() if min(ages) <= timedelta(days=120)}
    assert not (dnd - set(EXAMPLES)) & recent_calls  # nobody calls a do-not-disturb number


def test_all_segments_with_believable_shares(large: Extract) -> None:
    rows = large.profiles
    shares = Counter(row[1] for row in rows)
    assert len(shares) == 14 == len(large.catalog.segments)
    assert all(40 <= count <= 0.3 * len(rows) for count in shares.values()), shares
    arpu: dict[str, list[float]] = defaultdict(list)
    brands: dict[str, Counter[str]] = defaultdict(Counter)
    handsets: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        arpu[row[1]].append(float(row[5]))
        brands[row[1]][row[2]] += 1
        handsets[row[1]].append("data" in row[6])
    mean = {code: statistics.mean(values) for code, values in arpu.items()}
    high = ("fashionable_high_end", "high_potential", "over_spender")
    low = ("low_potential", "tight_fisted", "careful_calculator")
    assert min(mean[c] for c in high) > 2 * max(mean[c] for c in low)
    # top 10% of ARPU are mostly the high-capacity segments
    cut = sorted((float(r[5]) for r in rows), reverse=True)[len(rows) // 10]
    top = Counter(r[1] for r in rows if float(r[5]) > cut)
    assert sum(top[c] for c in high) > 0.5 * sum(top.values())
    # brand follows value and fashion
    for code in high:
        assert brands[code]["gotone"] / sum(brands[code].values()) > 0.6, code
    assert brands["low_potential"]["easyown"] / sum(brands["low_potential"].values()) > 0.6
    young = brands["shrewd_early_adopter"] + brands["vanity_follower"]
    assert young["mzone"] > young["gotone"] + young["easyown"] / 2
    # fashion leaders have data handsets far more often than conservatives
    leaders = statistics.mean(handsets["fashionable_high_end"] + handsets["shrewd_fashionable"])
    conservatives = statistics.mean(
        handsets["traditional_conservative"] + handsets["low_potential"]
    )
    assert leaders > conservatives + 0.3


def test_affinity_follows_segment_and_lifecycle(large: Extract) -> None:
    segment = {row[0]: row[1] for row in large.profiles}
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    for msisdn, offer_id, score in large.affinity:
        scores[(segment[msisdn], offer_id)].append(float(score))

    def mean(segments: tuple[str, ...], offer_id: str) -> float:
        values = [s for code in segments for s in scores[(code, offer_id)]]
        return statistics.mean(values) if values else 0.0

    leaders = ("fashionable_high_end", "shrewd_fashionable", "over_spender")
    low_learning = ("traditional_conservative", "low_potential", "tight_fisted")
    assert mean(leaders, "data_100mb") > 3 * mean(low_learning, "data_100mb")
    # per row written, and how often it is written at all
    counts = Counter((segment[m], o) for m, o, _ in large.affinity)
    by_segment = Counter(segment.values())
    frugal = counts[("careful_calculator", "sms_50")] / by_segment["careful_calculator"]
    emotional = counts[("emotional_follower", "sms_50")] / by_segment["emotional_follower"]
    assert frugal > emotional
    # silent ring-back tone users score the 1-yuan music box high
    box = [float(s) for _, o, s in large.affinity if o == "crbt_music_box"]
    everything = [float(s) for _, _, s in large.affinity]
    assert statistics.mean(box) > 1.5 * statistics.mean(everything)
    stages = {row[0]: row[8] for row in large.profiles}
    for msisdn, offer_id, _ in large.affinity:
        if offer_id == "crbt_music_box":
            assert "crbt:silent" in stages[msisdn]
        elif offer_id == "crbt_annual":
            assert "crbt:churn_risk" in stages[msisdn]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        generate(tmp_path / name, size=300, seed=seed, as_of=AS_OF)
    for file in ("catalog.toml", "profiles.csv", "affinity.csv", "contacts.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    for file in ("profiles.csv", "affinity.csv", "contacts.csv"):
        assert (tmp_path / "a" / file).read_bytes() != (tmp_path / "c" / file).read_bytes()


def test_reserved_examples(extract: Extract) -> None:
    assert set(EXAMPLES) == {"13800000001", "13800000002", "13800000003", "13800000009"}
    assert extract.report.examples == EXAMPLES
    assert "13800000009" not in extract.by_number
    reserved = [n for n in extract.by_number if n.startswith("1380000")]
    assert sorted(reserved) == ["13800000001", "13800000002", "13800000003"]
    contacts: dict[str, list[list[str]]] = defaultdict(list)
    for row in extract.contacts:
        contacts[row[0]].append(row)
    affinity = Counter(row[0] for row in extract.affinity)

    typical = extract.by_number["13800000001"]
    assert typical[1:3] == ["fashionable_high_end", "gotone"]
    assert set(_split(typical[6])) == {"mms", "data", "3g"}
    assert "crbt:potential" in _split(typical[8])
    assert typical[10] == "" and not contacts["13800000001"]
    assert affinity["13800000001"] >= 5

    flagged = extract.by_number["13800000002"]
    assert {"dnd", "complaint"} <= set(_split(flagged[10]))

    called = extract.by_number["13800000003"]
    assert called[10] == ""
    [call] = contacts["13800000003"]
    assert call[1:4] == ["outbound", "", "contacted"]
    assert (AS_OF - datetime.fromisoformat(call[4]).date()).days == 20


def _decide(
    extract: Extract, msisdn: str, channel: str, now: datetime
) -> tuple[list[str], str | None]:
    catalog: Catalog = extract.catalog
    row = extract.by_number.get(msisdn)
    profile = None
    if row is not None:
        profile = Profile(
            msisdn=row[0],
            segment=row[1],
            brand=row[2],
            region=row[3],
            store_id=row[4],
            arpu=float(row[5]),
            handset=tuple(_split(row[6])),
            subscriptions=tuple(_split(row[7])),
            lifecycle=dict(pair.split(":") for pair in _split(row[8])),
            channel_pref=tuple(_split(row[9])),
            flags=tuple(_split(row[10])),
        )
    affinities = {o: float(s) for m, o, s in extract.affinity if m == msisdn}
    history = [
        ContactEvent(
            channel=c[1], offer_id=c[2] or None, kind=c[3], at=datetime.fromisoformat(c[4])
        )
        for c in extract.contacts
        if c[0] == msisdn
    ]
    proposal = propose(
        catalog,
        msisdn=msisdn,
        profile=profile,
        affinities=affinities,
        history=history,
        channel=channel,
        events=[],
        now=now,
    )
    return [p.ranked.offer.id for p in proposal.offers], proposal.notice


def test_reserved_examples_decide_as_the_demo_says(extract: Extract) -> None:
    now = datetime(2026, 11, 19, 10, 0, tzinfo=CST)
    catalog = extract.catalog
    offers, _ = _decide(extract, "13800000001", "store", now)
    assert len(offers) >= 3
    offers, notice = _decide(extract, "13800000002", "outbound", now)
    assert offers == [] and notice
    offers, _ = _decide(extract, "13800000002", "store", now)
    assert offers and all(_offer(catalog, o).service_critical for o in offers)
    offers, notice = _decide(extract, "13800000003", "outbound", now)
    assert offers == [] and notice is not None and "60 days" in notice
    offers, _ = _decide(extract, "13800000003", "store", now)
    assert offers
    offers, _ = _decide(extract, "13800000009", "store", now)
    assert offers and all(_offer(catalog, o).general for o in offers)


def test_tiny_sizes_have_no_examples(tmp_path: Path) -> None:
    report = generate(tmp_path, size=5, seed=3, as_of=AS_OF)
    _, rows = _read(tmp_path / "profiles.csv")
    assert len(rows) == report.profiles == 5
    assert not any(row[0].startswith("1380000") for row in rows)
    assert report.examples == {}


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--size", "40", "--seed", "9", "--as-of", "2026-11-19"]) == 0
    printed = capsys.readouterr().out
    assert "40 profiles" in printed and "13800000001" in printed
    _, rows = _read(out / "profiles.csv")
    assert len(rows) == 40
    again = tmp_path / "again"
    generate(again, size=40, seed=9, as_of=AS_OF)
    assert (out / "affinity.csv").read_bytes() == (again / "affinity.csv").read_bytes()
