"""Report speed with millions of stored outcomes, on SQLite and PostgreSQL.

Bulk-loads a synthetic history (executemany on SQLite, COPY on PostgreSQL): decisions over
--days days, two offers shown per decision with one outcome each (so --outcomes / 2
decisions), the sales of the accepted ones with their provisioning status, a few audit flags;
then builds the rollups with the real `nextbest rollup --rebuild` code (timed), and times
each report's query in-process (the endpoint's service call, without HTTP), median of --runs.
For comparison it also times the one query the rollups replace: conversion by agent and offer
counted from the raw ledgers.

    python scripts/bench/reports.py --db sqlite --outcomes 5000000
    python scripts/bench/reports.py --db postgres --outcomes 5000000

Prints a markdown table and writes var/bench/reports-<db>-<outcomes>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nextbest.catalog import load_catalog  # noqa: E402
from nextbest.clock import FixedClock  # noqa: E402
from nextbest.reports import ReportService  # noqa: E402
from nextbest.rollups import rebuild, record_decision, record_outcome, report_day  # noqa: E402
from nextbest.settings import Settings  # noqa: E402
from nextbest.storage.db import Database  # noqa: E402
from nextbest.storage.models import Decision, Outcome, Subscription  # noqa: E402
from nextbest.storage.shown import ShownOffer, encode_offers  # noqa: E402
from nextbest.synth import DEMO_CATALOG  # noqa: E402

VAR = Path(os.environ.get("NEXTBEST_BENCH_DIR", ROOT / "var" / "bench"))
PG_BASE = os.environ.get("NEXTBEST_BENCH_PG", "postgresql://127.0.0.1:5432")
END = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 23:00 in China on the last day
# The demo operator's catalog: offers with their prices, and the persona segments.
CATALOG = load_catalog(DEMO_CATALOG)
OFFERS = [o.id for o in CATALOG.offers]
PRICES = {o.id: o.price for o in CATALOG.offers}
SEGMENTS = [seg.code for seg in CATALOG.segments]
# outcome kind, weight (one outcome per offer shown)
KINDS = (
    ("presented", 40),
    ("accepted", 15),
    ("declined", 35),
    ("considering", 5),
    ("no_answer", 5),
)
SALE_STATUS = (("active", 80), ("cancelled", 10), ("failed", 5), ("pending", 5))
FAIL_REASONS = ("BOSS: service not open in region", "BOSS: timeout after 8 attempts")
FLAGS = ("arrears", "not_billed", "complaint_after", "already_held")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class People:
    def __init__(self, rng: random.Random, agents: int, stores: int, campaigns: int) -> None:
        self.agents: list[tuple[str, str, str | None]] = []  # (user, channel, store)
        clerks = int(agents * 0.8)
        for i in range(agents):
            if i < clerks:
                self.agents.append((f"clerk-{i:04d}", "store", f"ST-{i % stores:04d}"))
            else:
                channel = "inbound" if i % 2 else "outbound"
                self.agents.append((f"agent-{i:04d}", channel, None))
        self.campaigns = [f"camp-{i:02d}" for i in range(campaigns)]
        self.rng = rng


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in table], [w for _, w in table])[0]


def history(
    outcomes: int, days: int, people: People, chunk: int = 50_000
) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """Chunks of (decisions, outcomes, subscriptions, audit_flags) rows."""
    rng = people.rng
    decisions_total = outcomes // 2
    start = END - timedelta(days=days)
    span = (END - start).total_seconds()
    outcome_id = 0
    sale_id = 0
    for first in range(0, decisions_total, chunk):
        d_rows: list[tuple[Any, ...]] = []
        o_rows: list[tuple[Any, ...]] = []
        s_rows: list[tuple[Any, ...]] = []
        f_rows: list[tuple[Any, ...]] = []
        for n in range(first, min(first + chunk, decisions_total)):
            at = start + timedelta(seconds=span * n / decisions_total)
            user, channel, store = rng.choice(people.agents)
            decision_id = f"{n:032x}"
            rng.randrange(10**8)  # (kept: the draws, so a seed gives the same history)
            # One decision per number: two sales of one offer to one number would break the
            # live-subscription unique index (7,919 is prime to 10^8, so this never repeats).
            msisdn = f"139{n * 7919 % 10**8:08d}"
            segment = rng.choice(SEGMENTS)
            campaign = rng.choice(people.campaigns) if channel == "outbound" else None
            arm = "control" if rng.random() < 0.1 else "model"
            shown: dict[str, ShownOffer] = {}
            for rank, offer in enumerate(rng.sample(OFFERS, 2), start=1):
                p = round(rng.uniform(0.02, 0.6), 6)
                shown[offer] = ShownOffer(rank, p * 10, p)
                outcome_id += 1
                kind = _weighted(rng, KINDS)
                o_at = at + timedelta(seconds=30)
                o_rows.append(
                    (outcome_id, decision_id, offer, msisdn, channel, kind, user, store, o_at)
                )
                if kind == "accepted":
                    sale_id += 1
                    status = _weighted(rng, SALE_STATUS)
                    cancelled = (
                        o_at + timedelta(days=rng.uniform(1, 120))
                        if status == "cancelled"
                        else None
                    )
                    reason = rng.choice(FAIL_REASONS) if status == "failed" else None
                    s_rows.append(
                        (sale_id, msisdn, offer, offer.split("_")[0], PRICES[offer], decision_id,
                         outcome_id, user, store, channel, status, reason, o_at, o_at, cancelled)
                    )  # fmt: skip
                    if rng.random() < 0.02:
                        f_rows.append((sale_id, rng.choice(FLAGS), "bench", o_at))
            offers = encode_offers(shown)
            who = (user, store, segment, campaign)
            d_rows.append((decision_id, at, msisdn, channel, *who, "bench", arm, offers))
        yield d_rows, o_rows, s_rows, f_rows


_COLUMNS = {
    "decisions": "id, created_at, msisdn, channel, user_id, store_id, segment, campaign_id, "
    "experiment, arm, role, known, catalog_hash, events, customer_flags, offers",
    "outcomes": "id, decision_id, offer_id, msisdn, channel, outcome, user_id, store_id, "
    "created_at",
    "subscriptions": "id, msisdn, offer_id, service, price, decision_id, outcome_id, user_id, "
    "store_id, channel, status, status_reason, created_at, updated_at, cancelled_at",
    "audit_flags": "subscription_id, flag, detail, created_at",
}


def _decision_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    role = "clerk" if row[3] == "store" else "agent"
    return (*row[:-1], role, True, "bench", "", "", row[-1])


def _sqlite_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def load_sqlite(path: Path, chunks: Iterator[tuple[list[tuple[Any, ...]], ...]]) -> int:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=OFF",
        "PRAGMA foreign_keys=OFF",
        "PRAGMA cache_size=-524288",
    ):
        conn.execute(pragma)
    total = 0
    for parts in chunks:
        conn.execute("BEGIN")
        for table, rows in zip(_COLUMNS, parts, strict=True):
            if table == "decisions":
                rows = [_decision_row(r) for r in rows]
            rows = [tuple(_sqlite_time(v) for v in r) for r in rows]
            marks = ", ".join("?" for _ in _COLUMNS[table].split(","))
            conn.executemany(f"INSERT INTO {table} ({_COLUMNS[table]}) VALUES ({marks})", rows)
            if table == "outcomes":
                total += len(rows)
        conn.execute("COMMIT")
        say(f"  {total:,} outcomes")
    conn.execute("ANALYZE")
    conn.close()
    return total


def load_postgres(url: str, chunks: Iterator[tuple[list[tuple[Any, ...]], ...]]) -> int:
    import psycopg

    total = 0
    with psycopg.connect(url) as conn:
        for parts in chunks:
            with conn.cursor() as cursor:
                for table, rows in zip(_COLUMNS, parts, strict=True):
                    if table == "decisions":
                        rows = [_decision_row(r) for r in rows]
                    with cursor.copy(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    if table == "outcomes":
                        total += len(rows)
            conn.commit()
            say(f"  {total:,} outcomes")
        for table in ("outcomes", "subscriptions", "audit_flags"):
            # keep the sequences ahead of the ids written explicitly
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return total


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median and max wall time of ``fn`` in milliseconds (one warm-up call first)."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def raw_conversion(db: Database, since: date, until: date) -> Any:
    """Conversion by agent and offer counted from the ledgers (what the rollups replace)."""
    from sqlalchemy import text

    from nextbest.rollups import utc_bounds

    start, end = utc_bounds(since, until)
    sql = text(
        "SELECT d.user_id, o.offer_id, "
        "COUNT(DISTINCT CASE WHEN o.outcome <> 'no_answer' THEN o.decision_id END), "
        "COUNT(DISTINCT CASE WHEN o.outcome = 'accepted' THEN o.decision_id END) "
        "FROM outcomes o JOIN decisions d ON d.id = o.decision_id "
        "WHERE d.created_at >= :start AND d.created_at < :end "
        "GROUP BY d.user_id, o.offer_id"
    )
    params: dict[str, Any] = {"start": start, "end": end}
    if db.is_sqlite:
        params = {k: _sqlite_time(v) for k, v in params.items()}
    with db.read() as session:
        return session.execute(sql, params).all()


class _RolledBack(Exception):
    pass


def hook_cost(db: Database, runs: int = 2000) -> dict[str, float]:
    """Median microseconds of the rollup hooks inside a write transaction, on the big tables."""
    now = END
    decision_times, outcome_times = [], []
    base = 10**9
    for i in range(runs):
        decision = Decision(
            id=f"f{base + i:031x}", created_at=now, msisdn="13900000001", channel="store",
            user_id="clerk-0001", role="clerk", store_id="ST-0001", known=True,
            segment="careful_calculator", data_version=1, catalog_hash="bench", events="",
            customer_flags="", campaign_id=None, experiment="bench", arm="model",
        )  # fmt: skip
        try:
            with db.write(durable=False) as session:
                session.add(decision)
                session.flush()
                started = time.perf_counter()
                record_decision(session, decision)
                decision_times.append((time.perf_counter() - started) * 1e6)
                outcome = Outcome(
                    decision_id=decision.id, offer_id="weather", msisdn="13900000001",
                    channel="store", outcome="accepted", user_id="clerk-0001", store_id="ST-0001",
                    created_at=now,
                )  # fmt: skip
                session.add(outcome)
                session.flush()
                sale = Subscription(price=2.0)
                started = time.perf_counter()
                record_outcome(session, decision, outcome, sale)
                outcome_times.append((time.perf_counter() - started) * 1e6)
                raise _RolledBack  # leave the big tables as they were
        except _RolledBack:
            pass
    return {
        "record_decision_us": round(statistics.median(decision_times), 1),
        "record_outcome_us": round(statistics.median(outcome_times), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--outcomes", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep an existing loaded database")
    args = parser.parse_args(argv)

    VAR.mkdir(parents=True, exist_ok=True)
    name = f"reports-{args.db}-{args.outcomes}"
    if args.db == "sqlite":
        path = VAR / f"{name}.db"
        url = f"sqlite:///{path}"
        fresh = not (args.reuse and path.is_file())
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        import psycopg

        dbname = f"nextbest_bench_{name.replace('-', '_')}"
        url = f"{PG_BASE}/{dbname}"
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            fresh = not (args.reuse and exists)
            if fresh:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{dbname}"')
    settings = Settings(database_url=url, db_pool_size=4)
    db = Database(settings)
    db.create_schema()
    figures: dict[str, Any] = {"db": args.db, "outcomes": args.outcomes, "days": args.days}
    if fresh:
        say(f"loading {args.outcomes:,} outcomes into {args.db} ...")
        people = People(random.Random(args.seed), args.agents, args.stores, args.campaigns)
        chunks = history(args.outcomes, args.days, people)
        started = time.perf_counter()
        if args.db == "sqlite":
            db.dispose()
            loaded = load_sqlite(path, chunks)
        else:
            loaded = load_postgres(url, chunks)
        figures["load_seconds"] = round(time.perf_counter() - started, 1)
        figures["loaded_outcomes"] = loaded
        say("rebuilding the rollups from the ledgers ...")
        db = Database(settings)
        report = rebuild(db)
        figures["rebuild_seconds"] = report.seconds
        figures["rollup_rows"] = report.rows
    clock = FixedClock(END)
    reports = ReportService(db, clock)
    last = report_day(END)
    month = (last - timedelta(days=29), last)
    quarter = (last - timedelta(days=args.days - 1), last)
    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("conversion?by=agent&by=offer", "30 days",
         lambda: reports.conversion(since=month[0], until=month[1], by=["agent", "offer"])),
        ("conversion?by=day&by=offer", "90 days",
         lambda: reports.conversion(since=quarter[0], until=quarter[1], by=["day", "offer"])),
        ("conversion?by=store&channel=store", "90 days",
         lambda: reports.conversion(since=quarter[0], until=quarter[1], by=["store"],
                                    filters={"channel": "store"})),
        ("conversion?by=segment&by=campaign", "90 days",
         lambda: reports.conversion(since=quarter[0], until=quarter[1],
                                    by=["segment", "campaign"])),
        ("revenue?by=offer", "90 days",
         lambda: reports.revenue(since=quarter[0], until=quarter[1], by=["offer"])),
        ("funnel", "30 days", lambda: reports.funnel(since=month[0], until=month[1])),
        ("funnel?by=channel", "90 days",
         lambda: reports.funnel(since=quarter[0], until=quarter[1], by=["channel"])),
        ("funnel?by=campaign", "90 days",
         lambda: reports.funnel(since=quarter[0], until=quarter[1], by=["campaign"])),
        ("agents", "30 days", lambda: reports.agents(since=month[0], until=month[1])),
        ("lift?by=offer", "90 days",
         lambda: reports.lift(since=quarter[0], until=quarter[1], by=["offer"])),
        ("provisioning-failures?by=offer", "30 days",
         lambda: reports.failures(since=month[0], until=month[1], by=["offer"])),
        ("audit-flags?by=agent", "30 days",
         lambda: reports.audit_flags(since=month[0], until=month[1], by=["agent"])),
        ("(raw ledgers) conversion by agent, offer", "30 days",
         lambda: raw_conversion(db, *month)),
    ]  # fmt: skip
    results = []
    for label, period, fn in cases:
        median, worst = timed(fn, args.runs if not label.startswith("(raw") else 1)
        results.append({"report": label, "period": period, "median_ms": round(median, 1),
                        "max_ms": round(worst, 1)})  # fmt: skip
        say(f"  {label:<42} {period:>8} {median:>9.1f} ms")
    figures["reports"] = results
    figures["hooks"] = hook_cost(db)
    db.dispose()
    out = VAR / f"{name}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print("| report | period | median ms | max ms |\n| --- | --- | --- | --- |")
    for r in results:
        print(f"| `{r['report']}` | {r['period']} | {r['median_ms']} | {r['max_ms']} |")
    print(json.dumps({k: v for k, v in figures.items() if k != "reports"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
