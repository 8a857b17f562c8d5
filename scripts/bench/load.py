"""Load benchmark: `nextbest load` beside the databases' own bulk import of the same files.

One command, one run: generate (or reuse) an extract of --size subscribers with --affinities
scores each (plain CSV, plus a typed Parquet copy), then for SQLite and PostgreSQL in turn
time `nextbest load` of the CSV extract and of the Parquet extract into a fresh database, and
the database's own import of the same CSV files into tables of the same shape and keys
(sqlite3's `.import`, psql's `\\copy`). Reports rows/s, their ratio, the loader's peak memory
and the stored size per row; prints a Markdown table and writes
var/bench/load-results-<size>.json.

    python scripts/bench/load.py --size 1000000 --affinities 10
    python scripts/bench/load.py --size 20000 --db sqlite          # a quick look

The generator is this script's own (fast, uniform random data in the demo catalog's codes),
so the benchmark does not depend on `nextbest generate`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("NEXTBEST_BENCH_DIR", ROOT / "var" / "bench"))
PG_BASE = os.environ.get("NEXTBEST_BENCH_PG", "postgresql://127.0.0.1:5432")
CATALOG = ROOT / "nextbest" / "data" / "catalog.toml"
sys.path.insert(0, str(ROOT))

from nextbest.loader import AFFINITY_COLUMNS, CONTACT_COLUMNS, PROFILE_COLUMNS  # noqa: E402

REGIONS = ("Nanjing", "Suzhou", "Wuxi", "Changzhou", "Nantong", "Xuzhou", "Yangzhou")
HANDSETS = ("", "mms", "mms;data", "mms;data;3g", "data;3g")
CHANNEL_PREFS = ("store", "store;outbound", "outbound;store", "inbound;store;sms", "sms")
FLAGS = ("",) * 90 + ("dnd",) * 4 + ("complaint",) * 2 + ("arrears",) * 3 + ("dnd;complaint",)
STAGES = ("potential", "active", "silent", "churn_risk", "churned")
CONTACT_KINDS = ("contacted",) * 6 + ("subscribed", "cancelled", "complaint")
CHANNELS = ("store", "inbound", "outbound", "sms")
FIRST = 13_900_000_000
CHUNK = 20_000


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the extract ------------------------------------------------------------------------------


def write_extract(
    out: Path,
    *,
    size: int,
    affinities: int = 10,
    contacts_per_100: int = 30,
    seed: int = 7,
    catalog: Path = CATALOG,
) -> dict[str, int]:
    """Write catalog.toml, profiles.csv, affinity.csv and contacts.csv for ``size``
    subscribers (numbers 13900000000 + i, in order) with ``affinities`` scores each. Returns
    the rows written per file."""
    from nextbest.catalog import load_catalog

    parsed = load_catalog(catalog)
    segments = [s.code for s in parsed.segments]
    brands = [b.code for b in parsed.brands]
    offers = [o.id for o in parsed.offers]
    services = [s.code for s in parsed.services]
    if affinities > len(offers):
        raise SystemExit(f"--affinities {affinities}: the catalog has {len(offers)} offers")
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(catalog, out / "catalog.toml")
    # A few hundred precomputed variants of the costly parts; rows pick among them.
    lifecycles = [
        ";".join(f"{s}:{rng.choice(STAGES)}" for s in rng.sample(services, rng.randint(0, 3)))
        for _ in range(256)
    ]
    holdings = ["" for _ in range(200)] + [rng.choice(offers) for _ in range(56)]
    offer_sets = [rng.sample(offers, affinities) for _ in range(256)]
    counts = {"profiles": 0, "affinity": 0, "contacts": 0}
    with (
        (out / "profiles.csv").open("w", encoding="utf-8", newline="") as pf,
        (out / "affinity.csv").open("w", encoding="utf-8", newline="") as af,
        (out / "contacts.csv").open("w", encoding="utf-8", newline="") as cf,
    ):
        pf.write(",".join(PROFILE_COLUMNS) + "\n")
        af.write(",".join(AFFINITY_COLUMNS) + "\n")
        cf.write(",".join(CONTACT_COLUMNS) + "\n")
        for start in range(0, size, CHUNK):
            stop = min(start + CHUNK, size)
            plines, alines, clines = [], [], []
            for i in range(start, stop):
                msisdn = FIRST + i
                region = REGIONS[i % len(REGIONS)]
                plines.append(
                    f"{msisdn},{rng.choice(segments)},{rng.choice(brands)},{region},"
                    f"{region[:2].upper()}-{i % 997:04d},{rng.randint(5, 400)}.{i % 10},"
                    f"{rng.choice(HANDSETS)},{rng.choice(holdings)},{rng.choice(lifecycles)},"
                    f"{rng.choice(CHANNEL_PREFS)},{rng.choice(FLAGS)}\n"
                )
                for offer in rng.choice(offer_sets):
                    alines.append(f"{msisdn},{offer},0.{rng.randint(1, 999):03d}\n")
                if rng.randrange(100) < contacts_per_100:
                    kind = rng.choice(CONTACT_KINDS)
                    offer_id = rng.choice(offers) if kind in ("subscribed", "cancelled") else ""
                    day = rng.randint(1, 28)
                    clines.append(
                        f"{msisdn},{rng.choice(CHANNELS)},{offer_id},{kind},"
                        f"2026-10-{day:02d}T{rng.randint(8, 20):02d}:00:00+08:00\n"
                    )
            pf.writelines(plines)
            af.writelines(alines)
            cf.writelines(clines)
            counts["profiles"] += len(plines)
            counts["affinity"] += len(alines)
            counts["contacts"] += len(clines)
    return counts


def write_parquet(csv_dir: Path, out: Path) -> None:
    """The same extract as typed Parquet files (numbers as doubles, times as timestamps),
    converted in a stream."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(csv_dir / "catalog.toml", out / "catalog.toml")
    types: dict[str, Any] = {
        "msisdn": pa.string(),
        "arpu": pa.float64(),
        "score": pa.float64(),
        "at": pa.timestamp("us", tz="UTC"),
    }
    for stem, columns in (
        ("profiles", PROFILE_COLUMNS),
        ("affinity", AFFINITY_COLUMNS),
        ("contacts", CONTACT_COLUMNS),
    ):
        convert = pcsv.ConvertOptions(
            column_types={c: types.get(c, pa.string()) for c in columns},
            strings_can_be_null=False,
        )
        reader = pcsv.open_csv(
            csv_dir / f"{stem}.csv",
            read_options=pcsv.ReadOptions(block_size=16 << 20),
            convert_options=convert,
        )
        with pq.ParquetWriter(out / f"{stem}.parquet", reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)


def prepare(size: int, affinities: int, seed: int) -> tuple[Path, Path, dict[str, int]]:
    base = VAR / f"load-extract-{size}x{affinities}-{seed}"
    csv_dir, parquet_dir = base / "csv", base / "parquet"
    marker = base / "counts.json"
    if not marker.is_file():
        shutil.rmtree(base, ignore_errors=True)
        started = time.perf_counter()
        counts = write_extract(csv_dir, size=size, affinities=affinities, seed=seed)
        say(f"generated {counts} in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        write_parquet(csv_dir, parquet_dir)
        say(f"wrote the Parquet copy in {time.perf_counter() - started:.1f}s")
        marker.write_text(json.dumps(counts))
    counts = json.loads(marker.read_text())
    return csv_dir, parquet_dir, counts


# --- measuring --------------------------------------------------------------------------------


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command; returns (seconds, peak RSS in MB of that process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{out}\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def nextbest_load(url: str, extract: Path) -> tuple[float, float]:
    """`nextbest load`, leaving the version it retires in place (its drop is timed apart)."""
    env = {**os.environ, "NEXTBEST_DATABASE_URL": url, "NEXTBEST_LOG_LEVEL": "warning"}
    return timed([sys.executable, "-m", "nextbest.cli", "load", "--no-wait", str(extract)], env)


# The same columns and keys as the loader's tables, without the version column. (Empty CSV
# fields arrive as NULL in psql's CSV mode, so only the keys are NOT NULL.)
NATIVE_DDL = {
    "profiles": "msisdn VARCHAR(16) NOT NULL, segment VARCHAR(40), brand VARCHAR(20), "
    "region VARCHAR(60), store_id VARCHAR(40), arpu FLOAT, handset TEXT, subscriptions TEXT, "
    "lifecycle TEXT, channel_pref TEXT, flags TEXT, PRIMARY KEY (msisdn)",
    "affinity": "msisdn VARCHAR(16) NOT NULL, offer_id VARCHAR(64) NOT NULL, score FLOAT, "
    "PRIMARY KEY (msisdn, offer_id)",
    "contacts": "msisdn VARCHAR(16) NOT NULL, channel VARCHAR(16), offer_id VARCHAR(64), "
    "kind VARCHAR(16), at {time}",
}


def sqlite_native(csv_dir: Path, work: Path) -> float:
    if shutil.which("sqlite3") is None:
        raise FileNotFoundError("sqlite3")
    path = work / "native.db"
    script = ["PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;"]
    for stem, ddl in NATIVE_DDL.items():
        rowid = "" if stem == "contacts" else " WITHOUT ROWID"
        script.append(f"CREATE TABLE {stem} ({ddl.format(time='TEXT')}){rowid};")
    script.append("CREATE INDEX contacts_by_msisdn ON contacts (msisdn);")
    subprocess.run(
        ["sqlite3", str(path)], input="\n".join(script), text=True, check=True, capture_output=True
    )
    total = 0.0
    for stem in NATIVE_DDL:
        seconds, _ = timed(
            ["sqlite3", str(path), f".import --csv --skip 1 {csv_dir / stem}.csv {stem}"]
        )
        total += seconds
    return total


def psql_native(csv_dir: Path, url: str) -> float:
    if shutil.which("psql") is None:
        raise FileNotFoundError("psql")
    ddl = [
        f"CREATE TABLE {stem} ({text.format(time='TIMESTAMPTZ')});"
        for stem, text in NATIVE_DDL.items()
    ]
    ddl.append("CREATE INDEX contacts_by_msisdn ON contacts (msisdn);")
    subprocess.run(["psql", "-q", "-X", url, "-c", "\n".join(ddl)], check=True)
    total = 0.0
    for stem in NATIVE_DDL:
        copy = f"\\copy {stem} FROM '{csv_dir / stem}.csv' WITH (FORMAT csv, HEADER true)"
        seconds, _ = timed(["psql", "-q", "-X", url, "-c", copy])
        total += seconds
    return total


def pg_create(name: str) -> str:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_BASE}/{name}"


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_sizes(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            table: int(
                conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]
            )
            for table in ("profiles", "affinities", "warehouse_contacts")
        }


def sqlite_size(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


DROP_SCRIPT = """
import sys, time
from datetime import UTC, datetime
from nextbest.loader import drop_expired_versions
from nextbest.settings import Settings
from nextbest.storage.db import Database
db = Database(Settings(database_url=sys.argv[1]))
print(drop_expired_versions(db, datetime.now(UTC), 0))
db.dispose()
"""


def run_db(db: str, csv_dir: Path, parquet_dir: Path, rows: int, work: Path) -> dict[str, Any]:
    """CSV into a fresh database; then Parquet beside it (a second version, as every night);
    then the first version dropped; then the native import into a fresh database."""
    result: dict[str, Any] = {"rows": rows}
    name = f"nextbest_load_{uuid.uuid4().hex[:8]}"
    if db == "sqlite":
        for leftover in work.glob("nextbest.db*"):
            leftover.unlink()
        url = f"sqlite:///{work / 'nextbest.db'}"
    else:
        url = pg_create(name)
    try:
        for fmt, extract in (("csv", csv_dir), ("parquet", parquet_dir)):
            say(f"{db}: nextbest load ({fmt}) ...")
            seconds, rss = nextbest_load(url, extract)
            result[f"nextbest_{fmt}_s"] = round(seconds, 1)
            result[f"nextbest_{fmt}_rows_per_s"] = round(rows / seconds)
            result[f"nextbest_{fmt}_peak_rss_mb"] = round(rss)
            if fmt == "csv":
                result["stored_bytes"] = (
                    {"file": sqlite_size(work / "nextbest.db")} if db == "sqlite" else pg_sizes(url)
                )
        say(f"{db}: dropping the first version ...")
        seconds, _ = timed([sys.executable, "-c", DROP_SCRIPT, url])
        result["drop_version_s"] = round(seconds, 1)
    finally:
        if db == "postgres":
            pg_drop(name)
    try:
        if db == "sqlite":
            for leftover in work.glob("native.db*"):
                leftover.unlink()
            say("sqlite: sqlite3 .import ...")
            native = sqlite_native(csv_dir, work)
        else:
            name = f"nextbest_native_{uuid.uuid4().hex[:8]}"
            url = pg_create(name)
            try:
                say("postgres: psql \\copy ...")
                native = psql_native(csv_dir, url)
            finally:
                pg_drop(name)
    except FileNotFoundError as exc:
        say(f"{db}: {exc} is not installed; no native import figure")
        return result
    result["native_s"] = round(native, 1)
    result["native_rows_per_s"] = round(rows / native)
    result["ratio_csv"] = round(native / result["nextbest_csv_s"], 2)
    return result


def table(size: int, affinities: int, counts: dict[str, int], results: dict[str, Any]) -> str:
    names = {"sqlite": "SQLite (WAL)", "postgres": "PostgreSQL 15"}
    dbs = list(results)
    lines = [
        f"{size:,} profiles x {affinities} affinities = {counts['affinity']:,} affinity rows, "
        f"{counts['contacts']:,} contacts; {sum(counts.values()):,} rows in all",
        "",
        "| figure | " + " | ".join(names[d] for d in dbs) + " |",
        "| --- |" + " --- |" * len(dbs),
    ]

    def row(label: str, key: str, fmt: str = "{:,}") -> None:
        cells = [fmt.format(results[d][key]) if key in results[d] else "n/a" for d in dbs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("`nextbest load`, CSV: seconds", "nextbest_csv_s")
    row("`nextbest load`, CSV: rows/s", "nextbest_csv_rows_per_s")
    row("`nextbest load`, Parquet, beside the first: seconds", "nextbest_parquet_s")
    row("`nextbest load`, Parquet, beside the first: rows/s", "nextbest_parquet_rows_per_s")
    row("dropping the first version afterwards: seconds", "drop_version_s")
    row("native import (`.import` / `\\copy`): seconds", "native_s")
    row("native import: rows/s", "native_rows_per_s")
    row("ratio nextbest CSV / native", "ratio_csv", "**{}**")
    row("peak RSS of `nextbest load` (CSV), MB", "nextbest_csv_peak_rss_mb")
    row("peak RSS of `nextbest load` (Parquet), MB", "nextbest_parquet_peak_rss_mb")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--affinities", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args(argv)
    csv_dir, parquet_dir, counts = prepare(args.size, args.affinities, args.seed)
    rows = sum(counts.values())
    work = VAR / f"load-work-{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        results[db] = run_db(db, csv_dir, parquet_dir, rows, work)
    shutil.rmtree(work, ignore_errors=True)
    report = table(args.size, args.affinities, counts, results)
    print(report)
    out = VAR / f"load-results-{args.size}.json"
    out.write_text(
        json.dumps(
            {
                "size": args.size,
                "affinities": args.affinities,
                "counts": counts,
                "results": results,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
    )
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
