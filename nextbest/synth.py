"""A synthetic operator: a warehouse extract that looks like the real thing, for the demo, the
tests and the benchmarks.

Fourteen persona segments with believable shares, built from the warehouse's four drivers
(payment capacity, price attitude, fashion attitude, learning ability); brands, ARPU and
handsets that follow them; lifecycle stages per service and the subscriptions they imply;
affinities correlated with segment and lifecycle; channel preferences; DND, complaint and
arrears flags; prior contacts, cancellations and complaints. Three reserved numbers show the
demo's stories (see EXAMPLES).

Deterministic: the same (size, seed, as_of) gives byte-identical files (one random.Random
(seed), never the global one). Fast, in pure Python: what depends only on (segment, brand,
handset) is computed once per combination, lifecycle patterns (stages, holdings, the offers
left to score) are drawn into a pool of 256 per combination and reused, and noise, ARPU and
score texts come from tables; a row then costs a few lookups, a sort and an append, and
200,000 subscribers take a few seconds.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import operator
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple, Protocol

import msgspec

from nextbest.catalog import Catalog, Offer, load_catalog

# The extract's contract (docs/data-contract.md): written here as the loader reads it.
from nextbest.loader import AFFINITY_COLUMNS, CONTACT_COLUMNS, PROFILE_COLUMNS

__all__ = [
    "AFFINITY_COLUMNS",
    "CONTACT_COLUMNS",
    "DEMO_CATALOG",
    "EXAMPLES",
    "PROFILE_COLUMNS",
    "SEGMENTS",
    "GenerateReport",
    "Persona",
    "generate",
    "main",
]

DEMO_CATALOG = Path(__file__).parent / "data" / "catalog.toml"


# Reserved numbers the demo prints. Random numbers never use the 1380000xxxx block, and
# 13800000009 is never written: it stands for a caller the warehouse does not know.
EXAMPLES: dict[str, str] = {
    "13800000001": "a typical customer: several offers at the store counter",
    "13800000002": "do-not-disturb and complaint-flagged: nothing on outbound, "
    "only service-critical offers elsewhere",
    "13800000003": "reached by telemarketing 20 days ago: not callable, fine at the store",
    "13800000009": "not in the warehouse at all (unknown number): general offers only",
}
_RESERVED_BLOCK = "1380000"


class Persona(NamedTuple):
    """A segment's share of subscribers and its four drivers in the warehouse's model."""

    share: float
    tier: str  # payment capacity: high (top 10% ARPU), middle (next 30%), low
    price: str  # insensitive / economical / frugal
    fashion: str  # leader / follower / conservative
    learning: str  # high / low


# Shares add up per tier to the model's cut: 10% high, 30% middle, 60% low.
SEGMENTS: dict[str, Persona] = {
    "fashionable_high_end": Persona(0.035, "high", "insensitive", "leader", "high"),
    "high_potential": Persona(0.040, "high", "economical", "follower", "high"),
    "over_spender": Persona(0.025, "high", "insensitive", "leader", "high"),
    "emotional_follower": Persona(0.070, "middle", "insensitive", "follower", "low"),
    "traditional_conservative": Persona(0.060, "middle", "economical", "conservative", "low"),
    "shrewd_fashionable": Persona(0.050, "middle", "economical", "leader", "high"),
    "medium_potential": Persona(0.070, "middle", "economical", "follower", "high"),
    "rational_follower": Persona(0.050, "middle", "economical", "follower", "high"),
    "careful_calculator": Persona(0.120, "low", "frugal", "conservative", "high"),
    "tight_fisted": Persona(0.080, "low", "frugal", "conservative", "low"),
    "blind_follower": Persona(0.100, "low", "economical", "follower", "low"),
    "shrewd_early_adopter": Persona(0.060, "low", "frugal", "leader", "high"),
    "vanity_follower": Persona(0.060, "low", "insensitive", "follower", "low"),
    "low_potential": Persona(0.180, "low", "frugal", "conservative", "low"),
}
# A segment a custom catalog adds gets an average persona.
_DEFAULT_PERSONA = Persona(0.05, "middle", "economical", "follower", "high")

# ARPU in yuan a month: lognormal (median, sigma) per payment tier.
_ARPU = {"high": (175.0, 0.30), "middle": (80.0, 0.22), "low": (34.0, 0.38)}
# Within a tier the price-insensitive and the fashion leaders spend more.
_ARPU_BY_PRICE = {"insensitive": 1.12, "economical": 1.0, "frugal": 0.88}
_ARPU_BY_FASHION = {"leader": 1.05, "follower": 1.0, "conservative": 0.95}
# Brand by (tier, fashion): GoTone for the high-value, M-Zone for the young and fashionable,
# Easy-Own (prepaid) for the low-value and conservative.
_BRANDS: dict[tuple[str, str], tuple[tuple[str, float], ...]] = {
    ("high", "leader"): (("gotone", 0.82), ("mzone", 0.12), ("easyown", 0.06)),
    ("high", "follower"): (("gotone", 0.85), ("mzone", 0.07), ("easyown", 0.08)),
    ("high", "conservative"): (("gotone", 0.88), ("mzone", 0.02), ("easyown", 0.10)),
    ("middle", "leader"): (("gotone", 0.30), ("mzone", 0.55), ("easyown", 0.15)),
    ("middle", "follower"): (("gotone", 0.35), ("mzone", 0.42), ("easyown", 0.23)),
    ("middle", "conservative"): (("gotone", 0.40), ("mzone", 0.05), ("easyown", 0.55)),
    ("low", "leader"): (("gotone", 0.03), ("mzone", 0.72), ("easyown", 0.25)),
    ("low", "follower"): (("gotone", 0.03), ("mzone", 0.55), ("easyown", 0.42)),
    ("low", "conservative"): (("gotone", 0.02), ("mzone", 0.06), ("easyown", 0.92)),
}
# Handset capabilities: P(mms), P(data), P(3g) by fashion attitude, 3G scaled by tier.
_HANDSET = {
    "leader": (0.95, 0.85, 0.40),
    "follower": (0.82, 0.60, 0.14),
    "conservative": (0.50, 0.30, 0.04),
}
_3G_BY_TIER = {"high": 1.5, "middle": 1.0, "low": 0.6}
# Jiangsu and Fujian cities: (name, store prefix, share of subscribers, stores).
_REGIONS = (
    ("Nanjing", "NJ", 0.14, 60),
    ("Suzhou", "SZ", 0.16, 70),
    ("Wuxi", "WX", 0.09, 40),
    ("Changzhou", "CZ", 0.07, 30),
    ("Nantong", "NT", 0.08, 35),
    ("Xuzhou", "XZ", 0.09, 35),
    ("Yangzhou", "YZ", 0.05, 20),
    ("Fuzhou", "FZ", 0.10, 45),
    ("Xiamen", "XM", 0.08, 35),
    ("Quanzhou", "QZ", 0.10, 40),
    ("Zhangzhou", "ZZ", 0.04, 20),
)
# China Mobile number blocks.
_PREFIXES = (
    "134", "135", "136", "137", "138", "139", "147", "150", "151", "152",
    "157", "158", "159", "178", "182", "183", "184", "187", "188", "198",
)  # fmt: skip
# Ranked contact channels that worked before: (channel_pref, weight).
_PREFS: dict[str, tuple[tuple[str, float], ...]] = {
    "leader": (
        ("store;inbound", 0.30),
        ("inbound;store;sms", 0.20),
        ("store;outbound", 0.20),
        ("outbound;store;inbound", 0.15),
        ("sms;store", 0.15),
    ),
    "follower": (
        ("outbound;store", 0.30),
        ("store;sms", 0.25),
        ("store;outbound;inbound", 0.20),
        ("sms;outbound", 0.15),
        ("inbound;store", 0.10),
    ),
    "conservative": (
        ("store", 0.35),
        ("store;inbound", 0.30),
        ("inbound;store", 0.20),
        ("outbound;store", 0.15),
    ),
    # Low learning: the counter first, hardly ever SMS.
    "low_learning": (
        ("store", 0.40),
        ("store;inbound", 0.25),
        ("inbound;store", 0.15),
        ("outbound;store", 0.20),
    ),
}


class _Trait(NamedTuple):
    """How a service is held and who likes it."""

    adopt: float  # share holding it (active, silent or at risk)
    potential: float  # share the model predicts would take it
    churned: float  # share who dropped it
    tags: tuple[str, ...]  # new / social / bundle / heavy / simple
    split: tuple[float, float, float] = (0.80, 0.12, 0.08)  # holders: active, silent, at risk


_TRAITS: dict[str, _Trait] = {
    "crbt": _Trait(0.30, 0.25, 0.06, ("social",), (0.55, 0.30, 0.15)),
    "sms": _Trait(0.20, 0.20, 0.03, ("bundle", "heavy")),
    "data": _Trait(0.15, 0.22, 0.03, ("new", "heavy")),
    "bill_guard": _Trait(0.03, 0.06, 0.0, ("simple",)),
    "newspaper": _Trait(0.12, 0.20, 0.03, ("simple", "social")),
    "fetion": _Trait(0.10, 0.18, 0.03, ("social", "heavy")),
    "music_club": _Trait(0.06, 0.15, 0.02, ("new", "social"), (0.65, 0.25, 0.10)),
    "mms": _Trait(0.08, 0.15, 0.02, ("new",)),
    "missed_call": _Trait(0.10, 0.10, 0.01, ("simple",)),
    "weather": _Trait(0.06, 0.08, 0.01, ("simple",)),
    "mobile_tv": _Trait(0.01, 0.08, 0.0, ("new", "heavy")),
    "location": _Trait(0.01, 0.05, 0.0, ("new",)),
    "payment": _Trait(0.01, 0.06, 0.0, ("new", "heavy")),
    "privilege": _Trait(0.05, 0.10, 0.0, ("new",)),
}
_DEFAULT_TRAIT = _Trait(0.04, 0.12, 0.01, ())
_APPEAL: dict[str, dict[str, float]] = {
    # leaders like new services, followers what everyone uses, the price-sensitive bundles,
    # low-learning customers are poor targets for data/SMS-heavy services but fine for simple ones
    "new": {"leader": 1.8, "follower": 1.0, "conservative": 0.45},
    "social": {"leader": 1.1, "follower": 1.35, "conservative": 0.75},
    "bundle": {"frugal": 2.0, "economical": 1.4, "insensitive": 0.7},
    "heavy": {"high": 1.2, "low": 0.45},
    "simple": {"high": 0.95, "low": 1.25},
}
_TIER_APPEAL = {"high": 1.1, "middle": 1.0, "low": 0.9}
_HELD_STAGES = ("active", "silent", "churn_risk")
_TARGETED = frozenset({"silent", "churn_risk", "churned"})
# Affinity multiplier by the subscriber's stage of the offer's service.
_STAGE_AFFINITY = {"potential": 1.6, "none": 1.0, "active": 0.7}
_NOISE_SIGMA = 0.55
_CHUNK = 8192  # subscribers per writerows batch
_POOL_BITS = 8  # lifecycle situations pooled per (segment, brand, handset)
_NOISE_BITS = 16
_ARPU_BITS = 12  # ARPU values drawn per segment (a table, not a lognormal per row)


class GenerateReport(msgspec.Struct, frozen=True, kw_only=True):
    """What was written, how long it took, and the numbers to try."""

    out_dir: str
    size: int
    seed: int
    as_of: str
    profiles: int
    affinities: int
    contacts: int
    seconds: float
    segments: dict[str, int]
    examples: dict[str, str]


def generate(
    out_dir: Path,
    *,
    size: int = 200_000,
    seed: int = 7,
    as_of: date | None = None,
    catalog_path: Path | None = None,
) -> GenerateReport:
    """Write catalog.toml, profiles.csv, affinity.csv and contacts.csv into ``out_dir``.

    ``size`` profiles in all: the reserved examples (when size >= 10) plus random ones.
    Contacts all happen before ``as_of`` (midnight, China time), within about 180 days.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(catalog_path) if catalog_path is not None else DEMO_CATALOG
    catalog = load_catalog(source)
    shutil.copyfile(source, out / "catalog.toml")
    as_of = as_of or date.today()
    rng = random.Random(seed)
    model = _Model(catalog, as_of)
    with_examples = size >= 10
    count = size - 3 if with_examples else max(size, 0)
    numbers = _numbers(rng, count)
    segment_counts = dict.fromkeys(model.segment_codes, 0)
    totals = [0, 0, 0]
    with (
        (out / "profiles.csv").open("w", newline="", encoding="utf-8") as pf,
        (out / "affinity.csv").open("w", newline="", encoding="utf-8") as af,
        (out / "contacts.csv").open("w", newline="", encoding="utf-8") as cf,
    ):
        files = (csv.writer(pf), csv.writer(af), csv.writer(cf))
        for writer, header in zip(
            files, (PROFILE_COLUMNS, AFFINITY_COLUMNS, CONTACT_COLUMNS), strict=True
        ):
            writer.writerow(header)
        batches: tuple[list[Sequence[str]], list[Sequence[str]], list[Sequence[str]]] = (
            [],
            [],
            [],
        )
        if with_examples:
            for rows, batch in zip(model.examples(), batches, strict=True):
                batch.extend(rows)
        subscriber = model.subscriber_writer(rng, batches)
        for start in range(0, len(numbers), _CHUNK):
            for msisdn in numbers[start : start + _CHUNK]:
                segment_counts[subscriber(msisdn)] += 1
            _flush(files, batches, totals)
        _flush(files, batches, totals)
    if with_examples:
        for row in model.example_profiles():
            segment_counts[row[1]] = segment_counts.get(row[1], 0) + 1
    return GenerateReport(
        out_dir=str(out),
        size=size,
        seed=seed,
        as_of=as_of.isoformat(),
        profiles=totals[0],
        affinities=totals[1],
        contacts=totals[2],
        seconds=round(time.perf_counter() - started, 2),
        segments=segment_counts,
        examples=dict(EXAMPLES) if with_examples else {},
    )


class _Writer(Protocol):
    def writerows(self, rows: Iterable[Sequence[str]], /) -> None: ...


def _flush(
    files: tuple[_Writer, _Writer, _Writer],
    batches: tuple[list[Sequence[str]], ...],
    totals: list[int],
) -> None:
    for i, (writer, batch) in enumerate(zip(files, batches, strict=True)):
        writer.writerows(batch)
        totals[i] += len(batch)
        batch.clear()


def _numbers(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct mobile numbers in random order, none in the reserved block."""
    if count <= 0:
        return []
    block = 100_000_000
    # A few spares: the reserved block is 10,000 numbers out of 2 billion.
    drawn = rng.sample(range(len(_PREFIXES) * block), count + 16)
    out: list[str] = []
    for value in drawn:
        number = f"{_PREFIXES[value // block]}{value % block:08d}"
        if not number.startswith(_RESERVED_BLOCK):
            out.append(number)
            if len(out) == count:
                break
    return out


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = sum(weights) or 1.0
    running = 0.0
    out: list[float] = []
    for weight in weights:
        running += weight / total
        out.append(running)
    out[-1] = 1.0 + 1e-9  # a draw of 0.999... always lands inside
    return out


class _Candidate(NamedTuple):
    offer_id: str
    service: str
    group: str
    lifecycle: frozenset[str] | None
    base: float


class _ServiceTable(NamedTuple):
    """One service's stage distribution for a (segment, brand, handset) combination."""

    service: str
    thresholds: list[float]
    stages: tuple[str | None, ...]
    holdable: tuple[str, ...]  # offers a holder holds, drawn by hold_cum
    hold_cum: list[float]


class _Situation(NamedTuple):
    """One subscriber's lifecycle pattern, the holdings it implies and what is left to score."""

    lifecycle: str  # crbt:silent;data:active
    held: tuple[str, ...]
    subscriptions: str
    # The offers still open to this subscriber and their affinity before noise, x 10,000.
    offer_ids: tuple[str, ...]
    bases: tuple[float, ...]
    dropped: tuple[str, ...]  # offers of services the subscriber churned from


class _Combo:
    """Everything fixed by (segment, brand, handset), computed once, and a pool of situations
    drawn from it on demand: the per-row loop then only adds noise and sorts."""

    __slots__ = ("candidates", "pool", "services")

    def __init__(self, services: list[_ServiceTable], candidates: list[_Candidate]) -> None:
        self.services = services
        self.candidates = candidates
        self.pool: list[_Situation | None] = [None] * (1 << _POOL_BITS)


class _Model:
    """The catalog read once into the tables the per-subscriber loop needs."""

    def __init__(self, catalog: Catalog, as_of: date) -> None:
        self.catalog = catalog
        self.as_of = as_of
        self.offers: list[Offer] = [
            o
            for o in catalog.offers
            if (o.valid_from is None or o.valid_from <= as_of)
            and (o.valid_to is None or o.valid_to >= as_of)
        ]
        self.groups = {o.id: o.group for o in catalog.offers}
        self.segment_codes = [s.code for s in catalog.segments]
        self.personas = {code: SEGMENTS.get(code, _DEFAULT_PERSONA) for code in self.segment_codes}
        self.segment_cum = _cumulative([self.personas[c].share for c in self.segment_codes])
        brand_codes = [b.code for b in catalog.brands]
        self.brand_tables: dict[str, tuple[list[str], list[float]]] = {}
        for code, persona in self.personas.items():
            table = [
                (b, w) for b, w in _BRANDS[(persona.tier, persona.fashion)] if b in brand_codes
            ]
            if not table:  # a catalog with other brands: spread evenly
                table = [(b, 1.0) for b in brand_codes]
            self.brand_tables[code] = ([b for b, _ in table], _cumulative([w for _, w in table]))
        self.services = sorted({o.service for o in catalog.offers})
        # What every offer of a service needs: a service nobody can buy has no lifecycle.
        self.service_requires: dict[str, frozenset[str]] = {}
        self.service_brands: dict[str, frozenset[str] | None] = {}
        self.service_grouped: dict[str, bool] = {}
        for service in self.services:
            offers = [o for o in catalog.offers if o.service == service]
            self.service_requires[service] = frozenset.intersection(
                *(frozenset(o.requires) for o in offers)
            )
            brands: frozenset[str] | None = None
            if all(o.brands for o in offers):
                brands = frozenset().union(*(frozenset(o.brands) for o in offers))
            self.service_brands[service] = brands
            self.service_grouped[service] = any(o.group for o in offers)
        self.region_cum = _cumulative([share for _, _, share, _ in _REGIONS])
        self.stores = [
            [f"{prefix}-{n:04d}" for n in range(1, stores + 1)] for _, prefix, _, stores in _REGIONS
        ]
        self.days = [(as_of - timedelta(days=d)).isoformat() for d in range(0, 200)]
        self._combos: dict[tuple[str, str, str], _Combo] = {}

    # --- per (segment, brand, handset) ---------------------------------------------------------

    def _all_combos(self) -> list[_Combo]:
        """Every combination a subscriber can be drawn in (for table bounds)."""
        return [
            self.combo(segment, brand, handset)
            for segment in self.segment_codes
            for brand in self.brand_tables[segment][0]
            for handset in ("", "mms", "data", "mms;data", "mms;data;3g")
        ]

    def combo(self, segment: str, brand: str, handset: str) -> _Combo:
        key = (segment, brand, handset)
        found = self._combos.get(key)
        if found is None:
            found = self._combos[key] = self._build_combo(segment, brand, handset)
        return found

    def _build_combo(self, segment: str, brand: str, handset: str) -> _Combo:
        persona = self.personas[segment]
        caps = frozenset(handset.split(";")) if handset else frozenset()
        fits = [
            o
            for o in self.offers
            if (not o.brands or brand in o.brands)
            and (not o.segments or segment in o.segments)
            and set(o.requires) <= caps
        ]
        # Cheaper holdings for the low tier, any size for the high.
        power = {"high": 0.0, "middle": 0.6, "low": 1.2}[persona.tier]
        services: list[_ServiceTable] = []
        for service in self.services:
            brands = self.service_brands[service]
            if not self.service_requires[service] <= caps or (brands and brand not in brands):
                continue
            trait = _TRAITS.get(service, _DEFAULT_TRAIT)
            appeal = _appeal(persona, trait)
            adopt = min(0.85, trait.adopt * appeal)
            potential = min(0.6, trait.potential * appeal)
            # What a holder holds: not a reactivation/retention/win-back offer, and where the
            # service has plan sizes (a group), one of them, not a one-off like a day pass.
            holdable = [
                o
                for o in fits
                if o.service == service
                and (not o.lifecycle or not set(o.lifecycle) <= _TARGETED)
                and (o.group or not self.service_grouped[service])
                and o.price > 0
            ]
            if not holdable:
                adopt = 0.0
            active, silent, risk = trait.split
            weights = [adopt * active, adopt * silent, adopt * risk, potential, trait.churned]
            weights.append(max(0.0, 1.0 - sum(weights)))
            services.append(
                _ServiceTable(
                    service=service,
                    thresholds=_cumulative(weights),
                    stages=("active", "silent", "churn_risk", "potential", "churned", None),
                    holdable=tuple(o.id for o in holdable),
                    hold_cum=_cumulative([o.price ** (-power) for o in holdable])
                    if holdable
                    else [],
                )
            )
        candidates = [
            _Candidate(
                offer_id=o.id,
                service=o.service,
                group=o.group,
                lifecycle=frozenset(o.lifecycle) if o.lifecycle else None,
                base=_base_affinity(persona, o, _TRAITS.get(o.service, _DEFAULT_TRAIT)),
            )
            for o in fits
        ]
        return _Combo(services, candidates)

    def situation(self, combo: _Combo, rnd: Callable[[], float]) -> _Situation:
        """Draw a lifecycle stage per service, the offers held because of it, and the offers
        still open to this subscriber with their affinity before noise."""
        stages: dict[str, str] = {}
        pairs: list[str] = []
        held: list[str] = []
        dropped: list[str] = []
        for table in combo.services:
            stage = table.stages[bisect.bisect_right(table.thresholds, rnd())]
            if stage is None:
                continue
            stages[table.service] = stage
            pairs.append(f"{table.service}:{stage}")
            if table.holdable:
                offer_id = table.holdable[bisect.bisect_right(table.hold_cum, rnd())]
                if stage in _HELD_STAGES:
                    held.append(offer_id)
                elif stage == "churned":
                    dropped.append(offer_id)
        held_groups = {self.groups[o] for o in held if self.groups[o]}
        offer_ids: list[str] = []
        bases: list[float] = []
        for c in combo.candidates:
            if c.offer_id in held or (c.group and c.group in held_groups):
                continue
            stage = stages.get(c.service, "none")
            if c.lifecycle is not None and stage not in c.lifecycle:
                continue
            offer_ids.append(c.offer_id)
            bases.append(c.base * _STAGE_AFFINITY.get(stage, 1.0) * 10_000)
        return _Situation(
            lifecycle=";".join(pairs),
            held=tuple(held),
            subscriptions=";".join(held),
            offer_ids=tuple(offer_ids),
            bases=tuple(bases),
            dropped=tuple(dropped),
        )

    # --- the per-subscriber loop ---------------------------------------------------------------

    def subscriber_writer(
        self,
        rng: random.Random,
        batches: tuple[list[Sequence[str]], list[Sequence[str]], list[Sequence[str]]],
    ) -> Callable[[str], str]:
        """A function that draws one subscriber, appends their rows to ``batches`` and returns
        the segment. Locals bound once and per-segment tables precomputed: this runs 200,000
        times."""
        rnd = rng.random
        getrandbits = rng.getrandbits
        bisect_right = bisect.bisect_right
        profiles, affinities, contacts = batches
        # Noise on the affinities and ARPU per segment, drawn once as tables (lognormal).
        # Each row multiplies its bases with a window of the noise at a random offset.
        window = max(64, len(self.catalog.offers))
        noise = [math.exp(rng.gauss(0.0, _NOISE_SIGMA)) for _ in range((1 << _NOISE_BITS) + window)]
        arpu_texts: dict[str, list[str]] = {}
        for code, persona in self.personas.items():
            median, sigma = _ARPU[persona.tier]
            median *= _ARPU_BY_PRICE[persona.price] * _ARPU_BY_FASHION[persona.fashion]
            arpu_texts[code] = [
                f"{median * rng.lognormvariate(0.0, sigma):.2f}" for _ in range(1 << _ARPU_BITS)
            ]
        # Scores as text by 1/10,000: a lookup, not a format, per row (capped at 0.95).
        top = max((c.base for combo in self._all_combos() for c in combo.candidates), default=0.0)
        top *= max(_STAGE_AFFINITY.values()) * max(noise) * 10_000
        score_texts = [f"{min(i, 9_500) / 10_000:.4f}" for i in range(int(top) + 2)]
        noise_bits = _NOISE_BITS
        arpu_bits = _ARPU_BITS
        pool_bits = _POOL_BITS
        mul = operator.mul
        not_called = {s.code for s in self.catalog.segments if not s.outbound}
        pref_tables = {
            name: ([p for p, _ in table], _cumulative([w for _, w in table]))
            for name, table in _PREFS.items()
        }
        arrears_rate = {"high": 0.01, "middle": 0.025, "low": 0.055}
        segments = []
        for code in self.segment_codes:
            persona = self.personas[code]
            brand_codes, brand_cum = self.brand_tables[code]
            p_mms, p_data, p_3g = _HANDSET[persona.fashion]
            p_3g *= _3G_BY_TIER[persona.tier]
            p_2g = 1.0 - p_3g
            handsets = {  # 3G handsets do MMS and data too
                "mms;data;3g": p_3g,
                "mms;data": p_2g * p_mms * p_data,
                "mms": p_2g * p_mms * (1 - p_data),
                "data": p_2g * (1 - p_mms) * p_data,
                "": p_2g * (1 - p_mms) * (1 - p_data),
            }
            prefs = pref_tables["low_learning" if persona.learning == "low" else persona.fashion]
            callable_segment = code not in not_called
            segments.append(
                (
                    code,
                    brand_codes,
                    brand_cum,
                    list(handsets),
                    _cumulative(list(handsets.values())),
                    arpu_texts[code],
                    prefs[0],
                    prefs[1],
                    0.028 if callable_segment else 0.036,  # do not disturb
                    arrears_rate[persona.tier],
                    0.19 if callable_segment else 0.04,  # telemarketing in the last 120 days
                )
            )
        segment_cum = self.segment_cum
        region_cum = self.region_cum
        regions = [name for name, _, _, _ in _REGIONS]
        stores = self.stores
        combos = self._combos
        build_combo = self.combo
        situation = self.situation
        days = self.days
        sale_channels = ("store", "store", "store", "inbound", "outbound", "sms")
        cancel_channels = ("inbound", "inbound", "store", "sms")

        def stamp(low: int, high: int) -> str:
            """A time on a day ``low``..``high`` days before as_of, in business hours."""
            day = days[low + int(rnd() * (high - low + 1))]
            second = 30_600 + int(rnd() * 43_200)  # 08:30 to 20:30
            return f"{day}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+08:00"

        def draw(msisdn: str) -> str:
            (segment, brand_codes, brand_cum, handset_codes, handset_cum, arpus,
             pref_codes, pref_cum, p_dnd, p_arrears, p_called) = segments[
                bisect_right(segment_cum, rnd())
            ]  # fmt: skip
            brand = brand_codes[bisect_right(brand_cum, rnd())]
            handset = handset_codes[bisect_right(handset_cum, rnd())]
            r = bisect_right(region_cum, rnd())
            region_stores = stores[r]
            store = region_stores[int(rnd() * len(region_stores))]

            key = (segment, brand, handset)
            combo = combos.get(key) or build_combo(*key)
            slot = getrandbits(pool_bits)
            found = combo.pool[slot]
            if found is None:
                found = combo.pool[slot] = situation(combo, rnd)
            offset = getrandbits(noise_bits)
            noisy = map(mul, found.bases, noise[offset : offset + window])
            scored = sorted(zip(noisy, found.offer_ids, strict=True), reverse=True)
            keep = scored[: 6 + int(rnd() * 5)]
            affinities.extend([(msisdn, o, score_texts[int(s)]) for s, o in keep])

            dnd = rnd() < p_dnd
            complaint = rnd() < 0.01
            arrears = rnd() < p_arrears
            if dnd or complaint or arrears:
                flags = ";".join(
                    f for f, on in (("dnd", dnd), ("complaint", complaint), ("arrears", arrears))
                    if on
                )  # fmt: skip
            else:
                flags = ""

            # Contacts the warehouse reports from other systems.
            pitched = keep[0][1] if keep else ""
            if not dnd:
                x = rnd()
                if x < p_called:  # telemarketing, last 120 days
                    offer = pitched if rnd() < 0.7 else ""
                    contacts.append((msisdn, "outbound", offer, "contacted", stamp(1, 120)))
                elif x < 0.21:  # and the older calls
                    contacts.append((msisdn, "outbound", "", "contacted", stamp(121, 180)))
                if rnd() < 0.08:  # SMS campaigns
                    contacts.append((msisdn, "sms", pitched, "contacted", stamp(1, 180)))
            for offer_id in found.held:
                if rnd() < 0.08:  # recent sales the warehouse saw
                    channel = sale_channels[int(rnd() * 6)]
                    contacts.append((msisdn, channel, offer_id, "subscribed", stamp(1, 180)))
            for offer_id in found.dropped:
                if rnd() < 0.12:
                    channel = cancel_channels[int(rnd() * 4)]
                    contacts.append((msisdn, channel, offer_id, "cancelled", stamp(1, 180)))
            if scored and rnd() < 0.008:  # subscribed elsewhere, then cancelled
                gone = scored[int(rnd() * len(scored))][1]
                contacts.append((msisdn, "inbound", gone, "cancelled", stamp(1, 180)))
            if rnd() < (0.5 if complaint else 0.006):
                about = found.held[0] if found.held and rnd() < 0.4 else ""
                contacts.append((msisdn, "inbound", about, "complaint", stamp(1, 180)))

            profiles.append(
                (
                    msisdn,
                    segment,
                    brand,
                    regions[r],
                    store,
                    arpus[getrandbits(arpu_bits)],
                    handset,
                    found.subscriptions,
                    found.lifecycle,
                    pref_codes[bisect_right(pref_cum, rnd())],
                    flags,
                )
            )
            return segment

        return draw

    # --- the reserved examples -----------------------------------------------------------------

    def _code(self, segment: str) -> str:
        return segment if self.catalog.segment(segment) else self.segment_codes[0]

    def _brand(self, brand: str) -> str:
        return brand if self.catalog.brand(brand) else self.catalog.brands[0].code

    def _offers(self, ids: Sequence[str]) -> str:
        return ";".join(i for i in ids if self.catalog.offer(i))

    def example_profiles(self) -> list[tuple[str, ...]]:
        return [
            (
                "13800000001", self._code("fashionable_high_end"), self._brand("gotone"),
                "Nanjing", "NJ-0001", "186.50", "mms;data;3g", self._offers(["missed_call_alert"]),
                "crbt:potential;data:potential;music_club:potential;mms:potential;"
                "missed_call:active;mobile_tv:potential",
                "store;inbound;outbound", "",
            ),
            (
                "13800000002", self._code("traditional_conservative"), self._brand("easyown"),
                "Suzhou", "SZ-0007", "42.30", "mms;data",
                self._offers(["crbt_open", "data_30mb"]),
                "crbt:silent;data:active;newspaper:potential;bill_guard:potential",
                "store;outbound", "dnd;complaint",
            ),
            (
                "13800000003", self._code("rational_follower"), self._brand("mzone"),
                "Wuxi", "WX-0003", "76.00", "mms;data", "",
                "crbt:potential;data:potential;fetion:potential;sms:potential",
                "outbound;store", "",
            ),
        ]  # fmt: skip

    def examples(self) -> tuple[list[Sequence[str]], list[Sequence[str]], list[Sequence[str]]]:
        """The three reserved subscribers' rows: profiles, affinities, contacts."""
        scores = {
            "13800000001": (
                ("crbt_open", 0.62), ("music_club_vip", 0.48), ("data_100mb", 0.41),
                ("mms_pack", 0.33), ("mobile_tv", 0.27), ("gotone_vip", 0.22),
                ("newspaper", 0.18), ("fetion", 0.15),
            ),
            "13800000002": (
                ("crbt_music_box", 0.35), ("newspaper", 0.30), ("missed_call_alert", 0.28),
                ("data_cap", 0.25), ("weather", 0.20), ("sms_50", 0.12),
            ),
            "13800000003": (
                ("crbt_open", 0.45), ("mzone_youth_data", 0.38), ("data_30mb", 0.30),
                ("fetion", 0.26), ("mms_pack", 0.20), ("newspaper", 0.15),
                ("mzone_sms_300", 0.14),
            ),
        }  # fmt: skip
        affinity: list[Sequence[str]] = [
            (msisdn, offer_id, f"{score:.4f}")
            for msisdn, pairs in scores.items()
            for offer_id, score in pairs
            if self.catalog.offer(offer_id)
        ]
        contacts: list[Sequence[str]] = [
            ("13800000002", "inbound", "", "complaint", f"{self.days[45]}T14:12:05+08:00"),
            ("13800000003", "outbound", "", "contacted", f"{self.days[20]}T08:40:00+08:00"),
        ]
        profiles: list[Sequence[str]] = list(self.example_profiles())
        return profiles, affinity, contacts


def _appeal(persona: Persona, trait: _Trait) -> float:
    """How much this persona likes this kind of service, 1.0 for an average one."""
    appeal = _TIER_APPEAL[persona.tier]
    for tag in trait.tags:
        table = _APPEAL[tag]
        for driver in (persona.fashion, persona.price, persona.learning):
            appeal *= table.get(driver, 1.0)
    return appeal


def _base_affinity(persona: Persona, offer: Offer, trait: _Trait) -> float:
    """The propensity before noise and lifecycle: what the warehouse's models approximate."""
    base = 0.075 * _appeal(persona, trait) * math.sqrt(offer.prior / 0.05)
    if offer.lifecycle and set(offer.lifecycle) <= _TARGETED:
        base *= 3.0  # reactivation, retention and win-back offers hit a precise need
    if offer.price >= 10:
        base *= {"high": 1.3, "middle": 0.85, "low": 0.5}[persona.tier]
    if persona.price == "frugal":
        base *= 1.25 if offer.price <= 2 else 0.75 if offer.price > 5 else 1.0
    elif persona.price == "insensitive" and offer.price >= 10:
        base *= 1.2
    if offer.segments:
        base *= 1.3  # made for this persona
    if offer.brands:
        base *= 1.15  # a brand's own product
    return base


def main(argv: list[str] | None = None) -> int:
    """``python -m nextbest.synth --out DIR [--size N] [--seed S] [--as-of YYYY-MM-DD]``."""
    parser = argparse.ArgumentParser(
        prog="python -m nextbest.synth", description="Write a synthetic warehouse extract."
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--size", type=int, default=200_000, help="subscribers (default 200000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    parser.add_argument("--catalog", type=Path, default=None, help="catalog.toml to use")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be at least 1")
    report = generate(
        args.out, size=args.size, seed=args.seed, as_of=args.as_of, catalog_path=args.catalog
    )
    print(
        f"wrote {report.out_dir}: {report.profiles} profiles, {report.affinities} affinities, "
        f"{report.contacts} contacts in {report.seconds:.2f}s (seed {report.seed}, "
        f"as of {report.as_of})"
    )
    total = max(1, report.profiles)
    for code, n in sorted(report.segments.items(), key=lambda item: -item[1]):
        print(f"  {code:<26} {n:>8}  {n / total:6.1%}")
    for number, what in report.examples.items():
        print(f"  try {number}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
