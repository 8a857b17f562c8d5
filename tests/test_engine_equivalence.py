"""The optimised decision core gives exactly the answers of the code it replaced.

tests/engine_oracle.py keeps that code (screen, rank, the scripts, propose) as it was before the
per-catalog forms, lazy reasons and script caches. Thousands of varied decisions, on the demo
catalog, the test catalog and variants built to reach every rule (control groups, dated
offers, ties, templates that read each context field in every way), must give the same output,
compared field by field as the API would encode it; a second pass hits the warm caches.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import engine_oracle as oracle
import msgspec
import pytest
from conftest import NOW, TEST_CATALOG

from nextbest.catalog import Catalog, Experiment, Objection, Offer, Script, load_catalog
from nextbest.engine import propose
from nextbest.experiments import assign
from nextbest.learning import CellCounts, LearnedTable, build_table
from nextbest.pitch import render_script
from nextbest.policy import screen
from nextbest.ranking import rank
from nextbest.records import OUTCOMES, ContactEvent, Profile
from nextbest.synth import DEMO_CATALOG, generate

KINDS = ("contacted", "subscribed", "cancelled", "complaint", *OUTCOMES)
CHANNELS = ("store", "inbound", "outbound")
STAGES = ("potential", "active", "silent", "churn_risk", "churned", "none")
# Templates that read the context in every way the script cache has to get right.
TRICKY = (
    "{{ customer.masked }}: {{ offer.name }} at {{ offer.price }}",
    "  {{ customer['masked'] }}  ",
    "{{ customer.masked|upper }} / {{ customer.masked|length }}",
    "{% set m = customer.masked %}{{ m[:3] }}",
    "{% for e in events %}[{{ e }} {{ customer.masked }}]{% endfor %}{{ stage }}",
    "{{ customer }}",
    "{{ customer.items()|list|length }} {{ segment|dictsort }}",
    "{% if customer.known %}{{ customer.brand }} {{ customer.arpu }}{% else %}guest{% endif %}",
    "{{ segment.name }}: {{ segment.selling_point }} ({{ channel }}, {{ customer.region }})",
    "{{ events|join(',') }}|{{ events|length }}|{{ 'handset_mms' in events }}",
    "{% if stage == 'silent' %}quiet{% elif stage == 'none' %}new{% endif %} {{ stage|title }}",
    "{% filter upper %}{{ customer.masked }} {{ offer.id }}{% endfilter %}",
    "{% macro m() %}{{ customer.masked }}{% endmacro %}{{ m() }}{{ m()|length }}",
    "{{ customer.masked }}{{ customer.masked }}{{ offer.service }}",
    "Plain words, no fields at all.",
)


# --- what is compared ------------------------------------------------------------------------


def both(catalog: Catalog, **kwargs: Any) -> tuple[Any, Any]:
    new = msgspec.to_builtins(propose(catalog, **kwargs))
    old = msgspec.to_builtins(oracle.propose(catalog, **kwargs))
    return new, old


def assert_same(catalog: Catalog, case: dict[str, Any]) -> None:
    new, old = both(catalog, **case)
    assert new == old, case
    assert _types(new) == _types(old), case  # 0 and 0.0 are equal, but encode differently


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


# --- catalogs --------------------------------------------------------------------------------


def _with_experiment(catalog: Catalog, baseline: Literal["random", "none"] = "random") -> Catalog:
    experiment = Experiment(name="lift-1", control_share=0.5, baseline=baseline)
    return msgspec.structs.replace(catalog, experiment=experiment)


def _tricky(catalog: Catalog) -> Catalog:
    """The test catalog bent to reach every branch: future and past dates, several brands and
    capabilities, equal scores, a stage boost per stage, and scripts built from TRICKY."""
    offers = list(catalog.offers)
    changed: list[Offer] = []
    for i, offer in enumerate(offers):
        pitch, opening, closing = TRICKY[i % len(TRICKY)], TRICKY[(i + 3) % len(TRICKY)], ""
        closing = TRICKY[(i + 7) % len(TRICKY)]
        objections = (
            Objection(
                objection=TRICKY[(i + 1) % len(TRICKY)], answer=TRICKY[(i + 5) % len(TRICKY)]
            ),
        )
        scripts = (
            Script(
                channels=("store", "inbound", "outbound"),
                pitch=pitch,
                opening=opening,
                closing=closing,
                objections=objections,
            ),
            Script(
                channels=("store", "inbound", "outbound"),
                pitch=closing,
                opening=pitch,
                closing=opening,
                lang="zh",
            ),
            Script(channels=("store",), segments=("fashionable_high_end",), pitch=opening),
        )
        changes: dict[str, Any] = {"scripts": scripts}
        if i % 4 == 0:
            changes["valid_from"] = NOW.date() + timedelta(days=2)
        if i % 5 == 1:
            changes["valid_to"] = NOW.date() - timedelta(days=1)
            changes["valid_from"] = date(2026, 1, 1)
        if i % 3 == 0:
            changes["brands"] = ("gotone", "mzone")
        if i % 3 == 1:
            changes["requires"] = ("mms", "3g")
        changed.append(msgspec.structs.replace(offer, **changes))
    # Twins: the same numbers under other ids (exact ties, by id), for a service and across.
    for twin, base in (("aa_twin", changed[1]), ("zz_twin", changed[1]), ("mm_twin", changed[3])):
        changed.append(msgspec.structs.replace(base, id=twin, group=""))
    ranking = msgspec.structs.replace(
        catalog.ranking,
        stage_boost={"potential": 1.1, "silent": 1.3, "churn_risk": 1.5, "none": 0.9},
        channel_fit=(1.0, 0.8),
    )
    return msgspec.structs.replace(catalog, offers=tuple(changed), ranking=ranking)


def _catalogs() -> dict[str, Catalog]:
    demo = load_catalog(DEMO_CATALOG)
    test = load_catalog(TEST_CATALOG)
    return {
        "demo": demo,
        "demo_control": _with_experiment(demo),
        "test": test,
        "test_control_none": _with_experiment(test, "none"),
        "tricky": _with_experiment(_tricky(test)),
    }


CATALOGS = _catalogs()


# --- inputs ----------------------------------------------------------------------------------


def _learned(rng: random.Random, catalog: Catalog) -> LearnedTable:
    counts: dict[tuple[str, str, str], CellCounts] = {}
    segments = [s.code for s in catalog.segments] + [""]
    for offer in catalog.offers:
        for channel in CHANNELS:
            for segment in rng.sample(segments, 2):
                presented = rng.choice([0, 5, 29, 30, 31, 200])
                accepted = rng.randint(0, presented)
                expected = presented * rng.choice([0.0, 0.05, 0.3])
                counts[(channel, offer.id, segment)] = CellCounts(
                    presented=presented, accepted=accepted, expected=expected
                )
    return build_table(counts, catalog.learning, version=1, refreshed_at=NOW)


def _profile(rng: random.Random, catalog: Catalog, msisdn: str) -> Profile:
    offers = [o.id for o in catalog.offers]
    return Profile(
        msisdn=msisdn,
        segment=rng.choice([s.code for s in catalog.segments] + ["no_such_segment"]),
        brand=rng.choice([b.code for b in catalog.brands] + ["no_such_brand"]),
        region=rng.choice(["Nanjing", "Suzhou", ""]),
        arpu=rng.choice([0.0, -0.0, 88.0, 120, round(rng.uniform(5, 300), 2)]),
        handset=tuple(c for c in ("mms", "data", "3g") if rng.random() < 0.6),
        subscriptions=tuple(rng.sample(offers, rng.choice([0, 0, 1, 2]))),
        lifecycle={s.code: rng.choice(STAGES) for s in catalog.services if rng.random() < 0.7},
        channel_pref=tuple(rng.sample([*CHANNELS, "sms"], rng.randint(0, 4))),
        flags=tuple(
            f
            for f, share in (("dnd", 0.04), ("complaint", 0.04), ("arrears", 0.1))
            if rng.random() < share
        ),
    )


def _affinities(rng: random.Random, catalog: Catalog) -> dict[str, float]:
    picked = rng.sample(list(catalog.offers), rng.randint(0, len(catalog.offers)))
    shared = rng.random()
    return {
        o.id: rng.choice([rng.random(), shared, 0.25, 0.5, 0.0, 0.015, 0.99, 1.0, 0.2499999])
        for o in picked
    }


def _history(rng: random.Random, catalog: Catalog, now: datetime) -> list[ContactEvent]:
    ids = [o.id for o in catalog.offers] + ["no_such_offer"]
    return [
        ContactEvent(
            channel=rng.choice([*CHANNELS, "sms"]),
            kind=rng.choice(KINDS),
            at=now - timedelta(days=rng.uniform(0, 400)),
            offer_id=rng.choice([*ids, None]),
            source=rng.choice(["warehouse", "nextbest"]),
        )
        for _ in range(rng.choice([0, 0, 1, 2, 5]))
    ]


def _msisdn(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["", "123", " 13812345678 ", "1381234567x"])
    return f"1{rng.randint(3, 9)}{rng.randint(0, 10**9 - 1):09d}"


def cases(catalog: Catalog, seed: int, count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    learned = _learned(rng, catalog)
    events = [e.code for e in catalog.events] + ["no_such_event"]
    for _ in range(count):
        msisdn = _msisdn(rng)
        now = NOW + timedelta(days=rng.choice([0, 0, 0, 1, 3, -400]), hours=rng.randint(0, 23))
        known = rng.random() < 0.85
        yield {
            "msisdn": msisdn,
            "profile": _profile(rng, catalog, msisdn) if known else None,
            "affinities": _affinities(rng, catalog) if known or rng.random() < 0.2 else {},
            "history": _history(rng, catalog, now),
            "channel": rng.choice([*CHANNELS, *CHANNELS, "sms"]),
            "events": rng.sample(events, rng.choice([0, 0, 1, 2])),
            "now": now,
            "limit": rng.choice([None, None, 0, 1, 2, 5]),
            "lang": rng.choice(["en", "zh"]),
            "learned": learned if rng.random() < 0.4 else None,
            "assignment": assign(catalog.experiment, msisdn),
        }


# --- the comparisons -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_propose_matches_the_reference(name: str) -> None:
    catalog = CATALOGS[name]
    generated = list(cases(catalog, seed=sorted(CATALOGS).index(name), count=1500))
    for _ in range(2):  # cold, then every cache warm
        for case in generated:
            assert_same(catalog, case)


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_screen_and_rank_match_the_reference(name: str) -> None:
    """The parts on their own, as campaigns and outcomes call them: rank on shuffled, partial
    and foreign offer lists, with the floor overridden."""
    catalog = CATALOGS[name]
    rng = random.Random(7)
    foreign = [msgspec.structs.replace(o, prior=0.3) for o in catalog.offers[:3]]
    for case in cases(catalog, seed=11, count=600):
        args = (case["profile"], case["history"], case["channel"], case["now"])
        screened = screen(catalog, *args)
        assert msgspec.to_builtins(screened) == msgspec.to_builtins(oracle.screen(catalog, *args))
        offers = list(screened.allowed) + rng.sample(foreign, rng.randint(0, 2))
        rng.shuffle(offers)
        limit = rng.choice([0, 1, 3, 10])
        floor = rng.choice([None, 0.0, 0.05])
        ranked = [
            f(
                catalog,
                offers,
                case["profile"],
                case["affinities"],
                case["channel"],
                case["events"],
                limit,
                learned=case["learned"],
                min_probability=floor,
            )
            for f in (rank, oracle.rank)
        ]
        assert msgspec.to_builtins(ranked[0]) == msgspec.to_builtins(ranked[1])


def test_scripts_of_foreign_offers_match_the_reference() -> None:
    """An offer that is not the catalog's own object is rendered afresh, and still alike."""
    catalog = CATALOGS["tricky"]
    for case in cases(catalog, seed=5, count=200):
        for offer in catalog.offers[:5]:
            twin = msgspec.structs.replace(offer, name=offer.name + " (copy)")
            for candidate in (offer, twin):
                args = (
                    catalog,
                    candidate,
                    case["profile"],
                    case["msisdn"],
                    case["channel"],
                    case["events"],
                    case["lang"],
                )
                assert msgspec.to_builtins(render_script(*args)) == msgspec.to_builtins(
                    oracle.render_script(*args)
                )


def test_ties_in_score_are_ordered_as_before() -> None:
    """Scores that differ below the sixth decimal (rounded equal) and exact ties."""
    catalog = CATALOGS["tricky"]
    profile = Profile(msisdn="13900000001", segment="careful_calculator", brand="gotone")
    ids = [o.id for o in catalog.offers]
    for base in (0.3, 0.123456, 0.5000004, 0.2):
        for step in (0.0, 1e-9, 4e-7, 5e-7, 1e-6, 3e-6):
            affinities = {oid: base + k * step for k, oid in enumerate(ids)}
            for channel in CHANNELS:
                assert_same(
                    catalog,
                    {
                        "msisdn": "13900000001",
                        "profile": profile,
                        "affinities": affinities,
                        "history": [],
                        "channel": channel,
                        "events": [],
                        "now": NOW,
                        "limit": 10,
                        "assignment": None,
                    },
                )


# --- real customers of a generated operator --------------------------------------------------


def _synth_customers(directory: Path) -> list[tuple[str, Profile, dict[str, float], list[Any]]]:
    def split(value: str) -> tuple[str, ...]:
        return tuple(value.split(";")) if value else ()

    with (directory / "profiles.csv").open(newline="", encoding="utf-8") as handle:
        profiles = {
            row["msisdn"]: Profile(
                msisdn=row["msisdn"],
                segment=row["segment"],
                brand=row["brand"],
                region=row["region"],
                store_id=row["store_id"],
                arpu=float(row["arpu"]),
                handset=split(row["handset"]),
                subscriptions=split(row["subscriptions"]),
                lifecycle=dict(pair.split(":", 1) for pair in split(row["lifecycle"])),
                channel_pref=split(row["channel_pref"]),
                flags=split(row["flags"]),
            )
            for row in csv.DictReader(handle)
        }
    affinities: dict[str, dict[str, float]] = {}
    with (directory / "affinity.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            affinities.setdefault(row["msisdn"], {})[row["offer_id"]] = float(row["score"])
    contacts: dict[str, list[ContactEvent]] = {}
    with (directory / "contacts.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            contacts.setdefault(row["msisdn"], []).append(
                ContactEvent(
                    channel=row["channel"],
                    kind=row["kind"],
                    at=datetime.fromisoformat(row["at"]),
                    offer_id=row["offer_id"] or None,
                )
            )
    return [
        (number, profile, affinities.get(number, {}), contacts.get(number, []))
        for number, profile in profiles.items()
    ]


def test_generated_customers_match_the_reference(tmp_path: Path) -> None:
    generate(tmp_path, size=400, seed=3, as_of=NOW.date())
    customers = _synth_customers(tmp_path)
    learned = _learned(random.Random(1), CATALOGS["demo"])
    for name in ("demo", "demo_control"):
        catalog = CATALOGS[name]
        for number, profile, affinities, history in [*customers, *customers[:50]]:
            for channel in CHANNELS:
                for lang in ("en", "zh"):
                    assert_same(
                        catalog,
                        {
                            "msisdn": number,
                            "profile": profile,
                            "affinities": affinities,
                            "history": history,
                            "channel": channel,
                            "events": ["handset_mms"] if number.endswith("7") else [],
                            "now": NOW,
                            "lang": lang,
                            "learned": learned if number.endswith(("1", "2")) else None,
                            "assignment": assign(catalog.experiment, number),
                        },
                    )
