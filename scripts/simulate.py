"""Decision-quality simulator: a synthetic operator with a known ground truth, run through the
real decision and outcome code, under four policies.

The truth: every customer i has a true probability of accepting offer o,

    q(i, o) = sigmoid(alpha_o + beta[segment(i), o] + u_i + e_io)

(offer appeal, how the persona segment takes to it, how receptive the customer is, and a
personal taste); a contact on channel c succeeds with q(i, o) * g(service(o), c) * fit(i, c)
* skill: how well the service sells on that channel (a ring-back tone demonstrated at the
counter, data explained on the phone), how the customer likes the channel (their channel_pref),
and the skill of the clerk or agent. The warehouse sees q through its models: its affinity is
logit(a) = logit(q) + bias[segment, o] + noise_io, a systematic error per segment and offer
(its models were fitted elsewhere) plus personal noise; it knows nothing of g, and has no
score at all for some (customer, offer) pairs (the offer's prior applies). Learning can fix
the systematic parts (bias, g), never the personal noise.

Each policy gets a fresh SQLite database, the same customers, the same contacts in the same
order (customer, channel, clerk or agent) and the same random draw per contact; each contact is
a real ``DecisionService.decide`` (limit 1: one offer pitched) and a real
``OutcomeService.record`` of accepted or declined, with a FixedClock moving through the
working day, so the contact rules, the cooldowns and the held offers all apply:

- random: the control group's baseline for everyone (catalog [experiment] control_share = 1);
- warehouse: nextbest's ranking on the warehouse's affinity alone ([learning] enabled = false);
- learning: nextbest with learning, refreshed once a simulated day, with a 10% random control
  group (which also shows the learning every offer now and then); its rate is the model arm's;
- oracle: the same code given the true q as affinity, neutral ranking weights and no cap on
  the offers shown (the best of each service); the simulated clerk pitches the one with the
  highest true q * g: the best eligible offer for each contact.

Every policy ranks by acceptance (value_exponent = 0): the figure compared is the acceptance
rate, and nextbest's product setting (0.5) deliberately trades a little of it for value.

    python scripts/simulate.py                         # the run in docs/decision-quality.md
    python scripts/simulate.py --customers 2000 --days 10 --per-day 200 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nextbest.catalog import Experiment, parse_catalog  # noqa: E402
from nextbest.clock import FixedClock  # noqa: E402
from nextbest.decisions import DecisionService  # noqa: E402
from nextbest.experiments import assign  # noqa: E402
from nextbest.keys import Actor  # noqa: E402
from nextbest.learning import Learner  # noqa: E402
from nextbest.loader import (  # noqa: E402
    AFFINITY_COLUMNS,
    CONTACT_COLUMNS,
    PROFILE_COLUMNS,
    load_extract,
)
from nextbest.outcomes import OutcomeService  # noqa: E402
from nextbest.reports import ReportService  # noqa: E402
from nextbest.settings import Settings  # noqa: E402
from nextbest.storage.db import Database  # noqa: E402
from nextbest.storage.warehouse import WarehouseReader  # noqa: E402
from nextbest.wire import DecisionRequest, OutcomeRequest  # noqa: E402

DEMO_CATALOG = ROOT / "nextbest" / "data" / "catalog.toml"
POLICIES = ("random", "warehouse", "learning", "oracle")
CHANNELS = (("store", 0.6), ("inbound", 0.25), ("outbound", 0.15))
CHANNEL_FIT = (1.0, 0.85, 0.7)  # the true effect of the channel's place in channel_pref
CHANNEL_UNLISTED = 0.6
START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in China
WORKDAY_HOURS = 10.0
CONTROL_SHARE = 0.1  # the learning run's control group
CRBT_STAGES = (
    ("potential", 0.3),
    ("active", 0.25),
    ("silent", 0.12),
    ("churn_risk", 0.06),
    ("churned", 0.07),
)
OTHER_STAGES = (("potential", 0.25), ("active", 0.1))


@dataclass(frozen=True)
class Truth:
    """The knobs of the ground truth (logit scale unless said otherwise)."""

    offer_base: float = -3.0  # alpha_o is drawn around this
    offer_sd: float = 0.5
    segment_sd: float = 0.9  # beta[segment, offer]
    customer_sd: float = 0.5  # u_i
    taste_sd: float = 1.1  # e_io
    warehouse_bias_sd: float = 0.8  # bias[segment, offer]: learnable
    warehouse_noise_sd: float = 0.9  # noise_io: not learnable
    warehouse_coverage: float = 0.75  # share of pairs the warehouse scores
    channel_service_sd: float = 0.5  # log g(service, channel)
    skill_low: float = 0.6  # clerks' and agents' skill multiplies acceptance
    skill_high: float = 1.4


@dataclass
class World:
    catalog_text: str
    profiles: list[list[str]]
    # msisdn -> offer -> true q (before channel and skill)
    truth: dict[str, dict[str, float]]
    warehouse: dict[str, dict[str, float]]
    channel_pref: dict[str, tuple[str, ...]]
    agents: dict[str, list[tuple[Actor, float]]]  # channel -> (actor, skill)
    channel_effect: dict[tuple[str, str], float]  # (offer, channel) -> g(service, channel)
    numbers: list[str] = field(default_factory=list)

    def chance(self, msisdn: str, offer_id: str, channel: str) -> float:
        """The true acceptance before the customer's channel fit and the agent's skill."""
        return self.truth[msisdn][offer_id] * self.channel_effect[(offer_id, channel)]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _ranking_for_acceptance(text: str) -> str:
    """The demo catalog, ranking by acceptance alone (value_exponent = 0)."""
    changed, n = re.subn(r"(?m)^value_exponent = [0-9.]+", "value_exponent = 0.0", text)
    assert n == 1, "the demo catalog's [ranking] value_exponent moved"
    return changed


def _neutral_ranking(text: str) -> str:
    """The oracle's catalog: the estimate is the affinity as given (the truth), unscaled."""
    block = re.search(r"(?ms)^\[ranking\]\n.*?(?=^\[)", text)
    assert block is not None, "the demo catalog has no [ranking] table"
    neutral = (
        "[ranking]\nchannel_fit = [1.0, 1.0, 1.0]\nchannel_fit_unlisted = 1.0\n"
        "context_boost = 1.0\nstage_boost = {}\nvalue_exponent = 0.0\nmin_probability = 0.0\n\n"
    )
    text = text[: block.start()] + neutral + text[block.end() :]
    text, n = re.subn(r"(?m)^max_offers = [0-9]+", "max_offers = 30", text)
    assert n >= 3, "the demo catalog's channel policies moved"
    return text


def catalog_for(policy: str, base: str, prior_strength: float) -> str:
    text = _ranking_for_acceptance(base)
    if policy == "oracle":
        text = _neutral_ranking(text)
    sections = {
        "random": '[experiment]\nname = "sim-random"\ncontrol_share = 1.0\nbaseline = "random"\n'
        "[learning]\nenabled = false\n",
        "warehouse": "[learning]\nenabled = false\n",
        "learning": f'[experiment]\nname = "sim-holdout"\ncontrol_share = {CONTROL_SHARE}\n'
        f'baseline = "random"\n[learning]\nenabled = true\nprior_strength = {prior_strength}\n'
        "window_days = 30\n",
        "oracle": "[learning]\nenabled = false\n",
    }
    return text + "\n" + sections[policy]


def build_world(customers: int, seed: int, truth: Truth) -> World:
    rng = random.Random(f"world:{seed}")
    base_text = DEMO_CATALOG.read_text(encoding="utf-8")
    catalog = parse_catalog(base_text.encode())
    offers = [o for o in catalog.offers]
    segments = [s.code for s in catalog.segments]
    alpha = {o.id: rng.gauss(truth.offer_base, truth.offer_sd) for o in offers}
    beta = {(s, o.id): rng.gauss(0, truth.segment_sd) for s in segments for o in offers}
    bias = {(s, o.id): rng.gauss(0, truth.warehouse_bias_sd) for s in segments for o in offers}
    services = [s.code for s in catalog.services]
    g = {
        (service, channel): math.exp(rng.gauss(0, truth.channel_service_sd))
        for service in services
        for channel in ("store", "inbound", "outbound")
    }
    plain_offers = [o.id for o in offers if not o.lifecycle and not o.group]
    world = World(
        catalog_text=base_text,
        profiles=[],
        truth={},
        warehouse={},
        channel_pref={},
        agents={},
        channel_effect={
            (o.id, c): g[(o.service, c)] for o in offers for c in ("store", "inbound", "outbound")
        },
    )
    for n in range(customers):
        msisdn = f"139{n:08d}"
        segment = rng.choice(segments)
        brand = rng.choices(("gotone", "mzone", "easyown"), (0.3, 0.35, 0.35))[0]
        handset = [c for c, p in (("mms", 0.7), ("data", 0.6), ("3g", 0.25)) if rng.random() < p]
        lifecycle = []
        for service in services:
            stages = CRBT_STAGES if service == "crbt" else OTHER_STAGES
            x = rng.random()
            for stage, p in stages:
                if x < p:
                    lifecycle.append(f"{service}:{stage}")
                    break
                x -= p
        held = rng.sample(plain_offers, rng.choice((0, 0, 1, 2)))
        prefs = rng.sample(("store", "inbound", "outbound"), rng.choice((1, 2, 3)))
        flags = [f for f, p in (("dnd", 0.02), ("arrears", 0.01)) if rng.random() < p]
        world.profiles.append(
            [
                msisdn,
                segment,
                brand,
                "Nanjing",
                f"NJ-{n % 24:04d}",
                f"{rng.uniform(20, 200):.1f}",
                ";".join(handset),
                ";".join(held),
                ";".join(lifecycle),
                ";".join(prefs),
                ";".join(flags),
            ]
        )
        world.numbers.append(msisdn)
        world.channel_pref[msisdn] = tuple(prefs)
        u = rng.gauss(0, truth.customer_sd)
        truths: dict[str, float] = {}
        scores: dict[str, float] = {}
        for offer in offers:
            logit_q = alpha[offer.id] + beta[(segment, offer.id)] + u + rng.gauss(0, truth.taste_sd)
            truths[offer.id] = _sigmoid(logit_q)
            if rng.random() < truth.warehouse_coverage:
                seen = logit_q + bias[(segment, offer.id)]
                scores[offer.id] = round(_sigmoid(seen + rng.gauss(0, truth.warehouse_noise_sd)), 4)
        world.truth[msisdn] = truths
        world.warehouse[msisdn] = scores
    key = 0
    for channel, count, role in (
        ("store", 24, "clerk"),
        ("inbound", 10, "agent"),
        ("outbound", 10, "agent"),
    ):
        team = []
        for i in range(count):
            key += 1
            store = f"NJ-{i:04d}" if channel == "store" else None
            actor = Actor(key_id=key, user_id=f"{channel}-{i:02d}", role=role, store_id=store)
            team.append((actor, rng.uniform(truth.skill_low, truth.skill_high)))
        world.agents[channel] = team
    return world


def _write_extract(world: World, directory: Path, policy: str, prior_strength: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "catalog.toml").write_text(
        catalog_for(policy, world.catalog_text, prior_strength), encoding="utf-8"
    )
    scores = world.truth if policy == "oracle" else world.warehouse
    with (directory / "profiles.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PROFILE_COLUMNS)
        writer.writerows(world.profiles)
    with (directory / "affinity.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(AFFINITY_COLUMNS)
        for msisdn in world.numbers:
            for offer_id, score in scores[msisdn].items():
                writer.writerow([msisdn, offer_id, f"{score:.6f}"])
    with (directory / "contacts.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(CONTACT_COLUMNS)
    return directory


@dataclass
class Result:
    policy: str
    contacts: int = 0
    pitched: int = 0
    accepted: int = 0
    # the second half of the days (learning has warmed up)
    late_pitched: int = 0
    late_accepted: int = 0
    control_pitched: int = 0  # the learning run's control group
    control_accepted: int = 0
    lift_report: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def model_pitched(self) -> int:
        return self.pitched - self.control_pitched

    @property
    def model_accepted(self) -> int:
        return self.accepted - self.control_accepted

    def rate(self) -> float:
        return self.model_accepted / self.model_pitched if self.model_pitched else 0.0

    def late_rate(self) -> float:
        return self.late_accepted / self.late_pitched if self.late_pitched else 0.0


def run_policy(
    policy: str,
    *,
    customers: int,
    days: int,
    per_day: int,
    seed: int,
    truth: Truth,
    prior_strength: float,
    workdir: Path,
) -> Result:
    started = time.perf_counter()
    world = build_world(customers, seed, truth)
    extract = _write_extract(world, workdir / f"extract-{policy}", policy, prior_strength)
    settings = Settings(
        database_url=f"sqlite:///{workdir / f'{policy}.db'}",
        sqlite_synchronous="OFF",  # a simulation: durability is not what is measured
        cache_size=customers + 100,
    )
    db = Database(settings)
    db.create_schema()
    clock = FixedClock(START)
    load_extract(db, extract, clock)
    reader = WarehouseReader(db, cache_size=customers + 100, version_check_seconds=1e9)
    learner = Learner(db, clock)
    decisions = DecisionService(db, reader, clock, learner)
    outcomes = OutcomeService(db, reader, clock)
    contacts = random.Random(f"contacts:{seed}")  # the same contacts for every policy
    draws = random.Random(f"draws:{seed}")  # the same dice for every policy
    result = Result(policy=policy)
    names = [c for c, _ in CHANNELS]
    weights = [w for _, w in CHANNELS]
    step = timedelta(hours=WORKDAY_HOURS) / per_day
    for day in range(days):
        clock.at = START + timedelta(days=day)
        if policy == "learning":
            active = reader.active()
            learner.refresh(active.id, active.catalog)
        for _ in range(per_day):
            clock.advance(seconds=step.total_seconds())
            msisdn = contacts.choice(world.numbers)
            channel = contacts.choices(names, weights)[0]
            actor, skill = contacts.choice(world.agents[channel])
            dice = draws.random()
            result.contacts += 1
            limit = None if policy == "oracle" else 1  # the oracle sees every eligible service
            answer = decisions.decide(
                actor,
                DecisionRequest(msisdn=msisdn, channel=channel, limit=limit),  # type: ignore[arg-type]
            )
            if not answer.offers:
                continue
            offer_id = max(
                (o.offer_id for o in answer.offers),
                key=lambda o: world.chance(msisdn, o, channel),
            )
            prefs = world.channel_pref[msisdn]
            fit = CHANNEL_FIT[prefs.index(channel)] if channel in prefs else CHANNEL_UNLISTED
            p = min(0.99, world.chance(msisdn, offer_id, channel) * fit * skill)
            accepted = dice < p
            outcomes.record(
                actor,
                answer.decision_id,
                OutcomeRequest(offer_id=offer_id, outcome="accepted" if accepted else "declined"),
            )
            control = policy == "learning" and _in_control(msisdn)
            result.pitched += 1
            result.accepted += accepted
            if policy == "learning" and control:
                result.control_pitched += 1
                result.control_accepted += accepted
            elif day >= days // 2:
                result.late_pitched += 1
                result.late_accepted += accepted
    if policy == "learning":
        lift = ReportService(db, clock).lift(experiment="sim-holdout", since=START.date())
        if lift.rows:
            result.lift_report = msgspec.to_builtins(lift.rows[0])
    db.dispose()
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def _in_control(msisdn: str) -> bool:
    assignment = assign(Experiment(name="sim-holdout", control_share=CONTROL_SHARE), msisdn)
    return assignment is not None and assignment.arm == "control"


def _run(args: tuple[str, dict[str, Any]]) -> Result:
    policy, kwargs = args
    return run_policy(policy, **kwargs)


def simulate(
    *,
    customers: int = 20_000,
    days: int = 60,
    per_day: int = 800,
    seed: int = 11,
    prior_strength: float = 50.0,
    jobs: int = 1,
    policies: tuple[str, ...] = POLICIES,
    truth: Truth | None = None,
    workdir: Path | None = None,
) -> dict[str, Result]:
    truth = truth or Truth()
    own = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix="nextbest-sim-"))
    kwargs = {
        "customers": customers,
        "days": days,
        "per_day": per_day,
        "seed": seed,
        "truth": truth,
        "prior_strength": prior_strength,
        "workdir": work,
    }
    try:
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(_run, [(p, kwargs) for p in policies]))
        else:
            results = [run_policy(p, **kwargs) for p in policies]  # type: ignore[arg-type]
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return {r.policy: r for r in results}


def summary(results: dict[str, Result]) -> dict[str, Any]:
    rates = {p: r.rate() for p, r in results.items()}
    late = {p: r.late_rate() for p, r in results.items()}
    out: dict[str, Any] = {
        "rates": {p: round(v, 4) for p, v in rates.items()},
        "late_rates": {p: round(v, 4) for p, v in late.items()},
        "pitched": {p: r.model_pitched for p, r in results.items()},
        "accepted": {p: r.model_accepted for p, r in results.items()},
        "seconds": {p: r.seconds for p, r in results.items()},
    }
    if "random" in rates and rates["random"] > 0:
        out["lift_over_random"] = {
            p: round(v / rates["random"], 2) for p, v in rates.items() if p != "random"
        }
    if {"warehouse", "learning", "oracle"} <= rates.keys():
        gap = rates["oracle"] - rates["warehouse"]
        out["gap_closed"] = (
            round((rates["learning"] - rates["warehouse"]) / gap, 3) if gap else None
        )
        late_gap = late["oracle"] - late["warehouse"]
        out["late_gap_closed"] = (
            round((late["learning"] - late["warehouse"]) / late_gap, 3) if late_gap else None
        )
    if "learning" in results:
        r = results["learning"]
        out["learning_control"] = {
            "pitched": r.control_pitched,
            "accepted": r.control_accepted,
            "rate": round(r.control_accepted / r.control_pitched, 4) if r.control_pitched else None,
            "all_contacts_rate": round(r.accepted / r.pitched, 4) if r.pitched else None,
            "lift_report": r.lift_report,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=800, help="contacts per simulated day")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--prior-strength", type=float, default=50.0)
    parser.add_argument("--jobs", type=int, default=1, help="policies run side by side")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies: {', '.join(sorted(unknown))}")
    results = simulate(
        customers=args.customers,
        days=args.days,
        per_day=args.per_day,
        seed=args.seed,
        prior_strength=args.prior_strength,
        jobs=args.jobs,
        policies=policies,
    )
    out = summary(results)
    print(f"{'policy':<10} {'pitched':>8} {'accepted':>8} {'rate':>7} {'2nd half':>8}")
    for policy, r in results.items():
        print(
            f"{policy:<10} {r.model_pitched:>8} {r.model_accepted:>8} {r.rate():>7.2%} "
            f"{r.late_rate():>8.2%}"
        )
    print(json.dumps(out, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
