"""A synthetic operator: a warehouse extract that looks like the real thing, for the demo, the
tests and the benchmarks.

Fourteen persona segments with believable shares, built from the warehouse's four drivers
(payment capacity, price attitude, fashion attitude, learning ability); brands and handsets that
follow them; lifecycle stages per service; affinities correlated with segment and lifecycle;
channel preferences; DND, complaint and arrears flags; prior contacts and cancellations.
Deterministic: the same (size, seed, as_of) gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import random
import shutil
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import msgspec

from nextbest.catalog import Catalog, Offer, load_catalog
from nextbest.loader import AFFINITY_COLUMNS, CONTACT_COLUMNS, PROFILE_COLUMNS

__all__ = ["DEMO_CATALOG", "EXAMPLES", "GenerateReport", "generate"]

DEMO_CATALOG = Path(__file__).parent / "data" / "catalog.toml"
CST = timezone(timedelta(hours=8))

# Reserved numbers the demo prints; random numbers never use the 1380000xxxx block.
EXAMPLES: dict[str, str] = {
    "13800000001": "a typical customer: several offers at the store counter",
    "13800000002": "do-not-disturb and complaint-flagged: nothing on outbound",
    "13800000003": "reached by telemarketing 20 days ago: not callable, fine at the store",
    "13800000009": "not in the warehouse at all (unknown number)",
}

# segment: (share, payment tier, fashion, price attitude, learning)
SEGMENTS: dict[str, tuple[float, str, str, str, str]] = {
    "fashionable_high_end": (0.05, "high", "leader", "insensitive", "high"),
    "high_potential": (0.04, "high", "follower", "economical", "high"),
    "over_spender": (0.03, "middle", "leader", "insensitive", "high"),
    "shrewd_fashionable": (0.07, "middle", "leader", "economical", "high"),
    "shrewd_early_adopter": (0.06, "middle", "leader", "frugal", "high"),
    "vanity_follower": (0.06, "middle", "follower", "insensitive", "low"),
    "emotional_follower": (0.10, "middle", "follower", "economical", "low"),
    "rational_follower": (0.10, "middle", "follower", "economical", "high"),
    "blind_follower": (0.08, "low", "follower", "economical", "low"),
    "medium_potential": (0.09, "middle", "conservative", "economical", "high"),
    "careful_calculator": (0.11, "low", "conservative", "frugal", "high"),
    "traditional_conservative": (0.09, "low", "conservative", "economical", "low"),
    "tight_fisted": (0.05, "low", "conservative", "frugal", "low"),
    "low_potential": (0.07, "low", "conservative", "frugal", "low"),
}
ARPU = {"high": (5.2, 0.35), "middle": (4.4, 0.35), "low": (3.5, 0.4)}  # lognormal mu, sigma
BRANDS = {
    "high": (("gotone", 0.8), ("mzone", 0.05), ("easyown", 0.15)),
    "middle": (("gotone", 0.3), ("mzone", 0.45), ("easyown", 0.25)),
    "low": (("gotone", 0.05), ("mzone", 0.35), ("easyown", 0.6)),
}
HANDSET = {
    "leader": (0.92, 0.9, 0.6),
    "follower": (0.75, 0.7, 0.3),
    "conservative": (0.45, 0.35, 0.08),
}  # P(mms), P(data), P(3g)
REGIONS = (
    ("Nanjing", "NJ"),
    ("Suzhou", "SZ"),
    ("Wuxi", "WX"),
    ("Changzhou", "CZ"),
    ("Nantong", "NT"),
    ("Xuzhou", "XZ"),
    ("Fuzhou", "FZ"),
    ("Xiamen", "XM"),
    ("Quanzhou", "QZ"),
)
# Ring-back tone stages (the warehouse's lifecycle model), other services simpler.
CRBT_STAGES = (
    ("potential", 0.30),
    ("active", 0.25),
    ("silent", 0.12),
    ("churn_risk", 0.06),
    ("churned", 0.07),
)
OTHER_STAGES = (("potential", 0.25), ("active", 0.15), ("silent", 0.03))
CHANNEL_PREFS = {
    "leader": (("store", "inbound"), ("inbound", "store", "sms"), ("store", "outbound")),
    "follower": (("store", "sms"), ("outbound", "store"), ("sms", "outbound", "store")),
    "conservative": (("store",), ("store", "inbound"), ("inbound", "outbound")),
}


class GenerateReport(msgspec.Struct, frozen=True, kw_only=True):
    out_dir: str
    profiles: int
    affinities: int
    contacts: int
    seconds: float
    examples: dict[str, str]


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str | None:
    """Weighted choice; None when the weights sum below 1 and the draw lands past them."""
    x = rng.random()
    for value, weight in table:
        if x < weight:
            return value
        x -= weight
    return None


def _base_affinity(
    offer: Offer, tier: str, fashion: str, price: str, learning: str, stage: str
) -> float:
    """The hidden propensity before noise: what the warehouse's models approximate."""
    service = offer.service
    if offer.lifecycle:
        wanted = {"potential": 0.32, "none": 0.1, "silent": 0.5, "churn_risk": 0.42}
        base = wanted.get(stage, 0.3) if stage in offer.lifecycle else 0.0
    else:
        base = 0.12
    if service in ("sms",):
        base *= {"frugal": 1.5, "economical": 1.3, "insensitive": 0.8}[price]
        base *= 0.6 if learning == "low" else 1.1
    if service in ("data", "mobile_tv", "payment"):
        base *= 1.6 if learning == "high" else 0.5
        base *= {"leader": 1.5, "follower": 1.0, "conservative": 0.5}[fashion]
    if service in ("crbt", "music_club", "mms"):
        base *= {"leader": 1.3, "follower": 1.25, "conservative": 0.7}[fashion]
    if service in ("newspaper", "weather", "missed_call"):
        base *= 1.3 if fashion == "conservative" else 1.0
    if service == "fetion":
        base *= 1.6 if learning == "high" else 0.7
    if offer.price >= 10:
        base *= {"high": 1.4, "middle": 0.9, "low": 0.5}[tier]
    if price == "frugal" and offer.price > 3:
        base *= 0.7
    return base


def generate(
    out_dir: str | Path,
    *,
    size: int = 200_000,
    seed: int = 7,
    as_of: date | None = None,
    catalog_path: Path | None = None,
) -> GenerateReport:
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog_path = catalog_path or DEMO_CATALOG
    catalog = load_catalog(catalog_path)
    shutil.copyfile(catalog_path, out / "catalog.toml")
    as_of = as_of or date.today()
    now = datetime(as_of.year, as_of.month, as_of.day, 9, 0, tzinfo=CST)
    rng = random.Random(f"{seed}:{size}:{as_of.isoformat()}")
    gen = _Generator(catalog, rng, now)
    counts = [0, 0, 0]
    with (
        (out / "profiles.csv").open("w", newline="", encoding="utf-8") as pf,
        (out / "affinity.csv").open("w", newline="", encoding="utf-8") as af,
        (out / "contacts.csv").open("w", newline="", encoding="utf-8") as cf,
    ):
        profiles, affinity, contacts = csv.writer(pf), csv.writer(af), csv.writer(cf)
        profiles.writerow(PROFILE_COLUMNS)
        affinity.writerow(AFFINITY_COLUMNS)
        contacts.writerow(CONTACT_COLUMNS)
        numbers = gen.numbers(size - 3 if size >= 10 else size)
        subscribers = (gen.subscriber(msisdn) for msisdn in numbers)
        examples = gen.examples() if size >= 10 else []
        for p, a, c in itertools.chain(subscribers, examples):
            profiles.writerow(p)
            affinity.writerows(a)
            contacts.writerows(c)
            counts[0] += 1
            counts[1] += len(a)
            counts[2] += len(c)
    return GenerateReport(
        out_dir=str(out),
        profiles=counts[0],
        affinities=counts[1],
        contacts=counts[2],
        seconds=round(time.perf_counter() - started, 2),
        examples=EXAMPLES if size >= 10 else {},
    )


class _Generator:
    def __init__(self, catalog: Catalog, rng: random.Random, now: datetime) -> None:
        self.catalog = catalog
        self.rng = rng
        self.now = now
        self.today = now.date()
        self.offers = [
            o
            for o in catalog.offers
            if (o.valid_to is None or o.valid_to >= self.today)
            and (o.valid_from is None or o.valid_from <= self.today)
        ]
        self.segments = [
            (code, share) for code, (share, *_rest) in SEGMENTS.items() if catalog.segment(code)
        ]
        self._base: dict[tuple[str, str, str], float] = {}
        self.services = sorted({o.service for o in catalog.offers if o.service != "crbt"})
        # The offer that stands for "holds this service" when a stage says active.
        self.holding = {
            "crbt": "crbt_open",
            "newspaper": "newspaper",
            "fetion": "fetion",
            "music_club": "music_club",
            "data": "data_30mb",
            "mms": "mms_pack",
        }

    def numbers(self, count: int) -> list[str]:
        prefixes: tuple[str, ...] = ("134", "135", "136", "137", "139", "147", "150", "151")
        prefixes += ("152", "157", "158", "159", "182", "183", "187", "188")
        seen: set[str] = set()
        out: list[str] = []
        while len(out) < count:
            number = f"{self.rng.choice(prefixes)}{self.rng.randrange(100_000_000):08d}"
            if number not in seen:
                seen.add(number)
                out.append(number)
        return out

    def _when(self, days_back_max: int, days_back_min: int = 1) -> str:
        days = self.rng.uniform(days_back_min, days_back_max)
        at = self.now - timedelta(days=days)
        return at.replace(microsecond=0).isoformat()

    def subscriber(
        self, msisdn: str, segment: str | None = None
    ) -> tuple[list[object], list[list[object]], list[list[object]]]:
        rng = self.rng
        if segment is None:
            segment = _pick(rng, tuple(self.segments)) or "low_potential"
        tier, fashion = SEGMENTS[segment][1:3]
        mu, sigma = ARPU[tier]
        arpu = round(rng.lognormvariate(mu, sigma), 2)
        brand = _pick(rng, BRANDS[tier]) or "easyown"
        p_mms, p_data, p_3g = HANDSET[fashion]
        handset = [
            cap for cap, p in (("mms", p_mms), ("data", p_data), ("3g", p_3g)) if rng.random() < p
        ]
        if "3g" in handset and "data" not in handset:
            handset.insert(1, "data")
        region, prefix = REGIONS[rng.randrange(len(REGIONS))]
        store = f"{prefix}-{rng.randrange(1, 41):04d}"
        stages: dict[str, str] = {}
        crbt = _pick(rng, CRBT_STAGES)
        if crbt:
            stages["crbt"] = crbt
        for service in self.services:
            stage = _pick(rng, OTHER_STAGES)
            if stage:
                stages[service] = stage
        held: list[str] = []
        for service, stage in stages.items():
            offer_id = self.holding.get(service)
            if (
                stage in ("active", "silent", "churn_risk")
                and offer_id
                and self.catalog.offer(offer_id)
            ):
                held.append(offer_id)
        if rng.random() < 0.2:
            held.append(rng.choice(("sms_50", "sms_100")))
        prefs = CHANNEL_PREFS[fashion]
        channel_pref = prefs[rng.randrange(len(prefs))]
        flags = []
        if rng.random() < 0.03:
            flags.append("dnd")
        if rng.random() < 0.01:
            flags.append("complaint")
        if rng.random() < (0.07 if tier == "low" else 0.02):
            flags.append("arrears")
        affinity = self._affinities(msisdn, segment, brand, handset, held, stages)
        contacts = self._contacts(msisdn, held, stages)
        profile: list[object] = [
            msisdn,
            segment,
            brand,
            region,
            store,
            f"{arpu:.2f}",
            ";".join(handset),
            ";".join(held),
            ";".join(f"{s}:{st}" for s, st in stages.items()),
            ";".join(channel_pref),
            ";".join(flags),
        ]
        return profile, affinity, contacts

    def _affinities(
        self,
        msisdn: str,
        segment: str,
        brand: str,
        handset: list[str],
        held: list[str],
        stages: dict[str, str],
    ) -> list[list[object]]:
        rng = self.rng
        _, tier, fashion, price, learning = SEGMENTS[segment]
        scored: list[tuple[str, float]] = []
        for offer in self.offers:
            if offer.id in held or (offer.brands and brand not in offer.brands):
                continue
            if any(cap not in handset for cap in offer.requires):
                continue
            if offer.segments and segment not in offer.segments:
                continue
            stage = stages.get(offer.service, "none")
            key = (segment, offer.id, stage)
            base = self._base.get(key, -1.0)
            if base < 0:
                base = _base_affinity(offer, tier, fashion, price, learning, stage)
                self._base[key] = base
            if base <= 0:
                continue
            scored.append((offer.id, base))
        rng.shuffle(scored)
        rows: list[list[object]] = []
        for offer_id, base in scored[: rng.randint(6, 10)]:
            score = min(0.95, max(0.001, base * math.exp(rng.gauss(0.0, 0.45))))
            rows.append([msisdn, offer_id, f"{score:.4f}"])
        return rows

    def _contacts(self, msisdn: str, held: list[str], stages: dict[str, str]) -> list[list[object]]:
        rng = self.rng
        rows: list[list[object]] = []
        if rng.random() < 0.15:
            rows.append([msisdn, "outbound", "", "contacted", self._when(120)])
        if rng.random() < 0.05:
            rows.append([msisdn, "sms", "", "contacted", self._when(60)])
        if stages.get("crbt") == "churned" and rng.random() < 0.25:
            rows.append([msisdn, "store", "crbt_open", "cancelled", self._when(180)])
        elif rng.random() < 0.02:
            rows.append([msisdn, "inbound", rng.choice(("newspaper", "fetion")), "cancelled",
                         self._when(180)])  # fmt: skip
        if held and rng.random() < 0.03:
            rows.append([msisdn, "store", held[0], "subscribed", self._when(300, 100)])
        if rng.random() < 0.01:
            rows.append([msisdn, "inbound", "", "complaint", self._when(240)])
        return rows

    def examples(self) -> list[tuple[list[object], list[list[object]], list[list[object]]]]:
        typical: list[object] = [
            "13800000001", "fashionable_high_end", "gotone", "Nanjing", "NJ-0001", "188.00",
            "mms;data;3g", "", "crbt:potential;music_club:potential", "store;inbound", "",
        ]  # fmt: skip
        typical_affinity: list[list[object]] = [
            ["13800000001", offer_id, score]
            for offer_id, score in (
                ("crbt_open", "0.6200"),
                ("music_club_vip", "0.4100"),
                ("data_100mb", "0.3500"),
                ("mms_pack", "0.2800"),
                ("mobile_tv", "0.2200"),
                ("newspaper", "0.1200"),
                ("fetion", "0.1500"),
            )
            if self.catalog.offer(offer_id)
        ]
        flagged: list[object] = [
            "13800000002", "traditional_conservative", "easyown", "Suzhou", "SZ-0007", "32.50",
            "", "", "crbt:silent", "store", "dnd;complaint",
        ]  # fmt: skip
        flagged_affinity: list[list[object]] = [["13800000002", "newspaper", "0.3000"]]
        called: list[object] = [
            "13800000003", "rational_follower", "mzone", "Wuxi", "WX-0003", "76.00",
            "mms;data", "", "crbt:potential", "outbound;store", "",
        ]  # fmt: skip
        called_affinity: list[list[object]] = [
            ["13800000003", "crbt_open", "0.4500"],
            ["13800000003", "data_30mb", "0.3000"],
        ]
        called_contacts: list[list[object]] = [
            ["13800000003", "outbound", "", "contacted", self._when(20, 20)]
        ]
        return [
            (typical, typical_affinity, []),
            (flagged, flagged_affinity, []),
            (called, called_affinity, called_contacts),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic warehouse extract.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None)
    args = parser.parse_args(argv)
    report = generate(args.out, size=args.size, seed=args.seed, as_of=args.as_of)
    print(msgspec.json.encode(report).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
