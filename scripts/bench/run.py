"""Decision service benchmark: the real server against a bare Litestar endpoint, side by side.

One command: generate (or reuse) a synthetic operator of --size subscribers, load it into
SQLite or PostgreSQL, start `nextbest serve` with --workers uvicorn workers, warm it, drive it
with wrk over loopback for --duration seconds, then the same for the bare endpoint
(scripts/bench/bare_app.py) served the same way, --runs times alternating; then durable
outcomes/s, server-side latency at half the saturating load, and peak RSS per worker.
Prints a table of medians and writes var/bench/results-<db>-<size>.json.

    python scripts/bench/run.py --size 200000 --db sqlite
    python scripts/bench/run.py --size 1000000 --db postgres --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from paced import paced

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("NEXTBEST_BENCH_DIR", ROOT / "var" / "bench"))
PG_BASE = os.environ.get("NEXTBEST_BENCH_PG", "postgresql://127.0.0.1:5432")

DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,'
    .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


# --ladder: the real server without its impression writes, then also without its reads, then
# also without the key check, then also without the decision itself: the same answer every time
# (scripts/bench/ceiling_app.py).
LADDER = ["impressions", "impressions,reads", "impressions,reads,key", "impressions,reads,key,core"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def nextbest(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "nextbest.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"nextbest {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def prepare(size: int, seed: int, db: str) -> tuple[dict[str, str], Path]:
    """Extract generated once per (size, seed); database loaded once per (db, size, seed)."""
    VAR.mkdir(parents=True, exist_ok=True)
    extract = VAR / f"extract-{size}-{seed}"
    marker = extract / ".complete"
    # A load test drives one key far past a clerk's look-up limit: turn the limit off.
    # Impressions batched as in contrib/production/nextbest.env.
    env = {
        "NEXTBEST_IMPRESSION_BATCH_MS": "5",
        **os.environ,
        "NEXTBEST_LOG_LEVEL": "warning",
        "NEXTBEST_RATE_LIMIT_PER_MINUTE": "0",
    }
    if not marker.is_file():
        shutil.rmtree(extract, ignore_errors=True)
        say(f"generating {size} subscribers ...")
        started = time.perf_counter()
        nextbest(["generate", "--out", str(extract), "--size", str(size), "--seed", str(seed)], env)
        say(f"  generated in {time.perf_counter() - started:.1f}s")
        marker.write_text("ok")
    if db == "sqlite":
        path = VAR / f"nextbest-{size}-{seed}.db"
        env["NEXTBEST_DATABASE_URL"] = f"sqlite:///{path}"
        loaded = VAR / f".loaded-sqlite-{size}-{seed}"
    else:
        import psycopg

        name = f"nextbest_bench_{size}_{seed}"
        env["NEXTBEST_DATABASE_URL"] = f"{PG_BASE}/{name}"
        loaded = VAR / f".loaded-pg-{size}-{seed}"
        with psycopg.connect(f"{PG_BASE}/test", autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
                loaded.unlink(missing_ok=True)
    if not loaded.is_file():
        say(f"loading into {db} ...")
        started = time.perf_counter()
        out = nextbest(["load", str(extract)], env)
        say(f"  {out.strip()} (wall {time.perf_counter() - started:.1f}s)")
        loaded.write_text("ok")
    return env, extract


def sample_numbers(extract: Path, count: int, seed: int) -> list[str]:
    numbers: list[str] = []
    with (extract / "profiles.csv").open() as handle:
        next(handle)
        for line in handle:
            numbers.append(line.split(",", 1)[0])
    rng = random.Random(seed)
    picked = rng.sample(numbers, min(count, len(numbers)))
    # A few unknown numbers too, as at a real counter.
    picked += [f"1700000{i:04d}" for i in range(max(1, len(picked) // 50))]
    return picked


def decision_lua(numbers: list[str], key: str, path: Path) -> None:
    table = ",".join(f'"{n}"' for n in numbers)
    path.write_text(
        f"local numbers = {{{table}}}\n"
        f'local headers = {{["Content-Type"]="application/json", '
        f'["Authorization"]="Bearer {key}"}}\n'
        "math.randomseed(7)\n"
        "request = function()\n"
        "  local n = numbers[math.random(#numbers)]\n"
        '  return wrk.format("POST", "/v1/decisions", headers, '
        '\'{"msisdn":"\' .. n .. \'","channel":"store"}\')\n'
        "end\n" + DONE_LUA
    )


def outcome_lua(pairs: list[tuple[str, str]], key: str, path: Path) -> None:
    """`presented` outcomes on random (decision, offer) pairs, each with an Idempotency-Key of
    its own, as the counter widget sends them (so each is a new outcome and its answer is
    remembered)."""
    table = ",".join(f'{{"{d}","{o}"}}' for d, o in pairs)
    path.write_text(
        f"local pairs_ = {{{table}}}\n"
        f'local headers = {{["Content-Type"]="application/json", '
        f'["Authorization"]="Bearer {key}"}}\n'
        "local threads = 0\n"
        "function setup(thread)\n"
        "  threads = threads + 1\n"
        '  thread:set("tid", threads)\n'
        "end\n"
        "local sent = 0\n"
        "local run = os.time()\n"
        "math.randomseed(11)\n"
        "request = function()\n"
        "  local p = pairs_[math.random(#pairs_)]\n"
        "  sent = sent + 1\n"
        '  headers["Idempotency-Key"] = "bench-" .. run .. "-" .. (tid or 0) .. "-" .. sent\n'
        '  return wrk.format("POST", "/v1/decisions/" .. p[1] .. "/outcomes", headers, '
        '\'{"offer_id":"\' .. p[2] .. \'","outcome":"presented"}\')\n'
        "end\n" + DONE_LUA
    )


class Server:
    def __init__(self, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.command = command
        self.env = env
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.5)  # let every worker come up
                    return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit("server did not start in 60 s")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if ppid == self.proc.pid and b"resource_tracker" not in cmdline:
                pids.append(int(entry.name))
        return pids or [self.proc.pid]

    def peak_rss_mb(self) -> list[float]:
        peaks = []
        for pid in self.worker_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
            except OSError:
                pass
        return peaks

    def private_mb(self) -> list[float]:
        """Each worker's anonymous (private) resident memory now: the Python heap, caches
        and buffers, without the file pages SQLite maps (PRAGMA mmap_size), which VmHWM
        counts although they are the OS page cache of the database file."""
        sizes = []
        for pid in self.worker_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        sizes.append(int(line.split()[1]) / 1024)
            except OSError:
                pass
        return sizes

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def uvicorn_command(target: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning",
        "--no-access-log",
    ]  # fmt: skip


def wrk(port: int, script: Path, duration: float, connections: int, threads: int) -> dict[str, Any]:
    result = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "-s",
            str(script),
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("WRK "):
            data: dict[str, Any] = json.loads(line[4:])
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise SystemExit(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def make_decisions(
    env: dict[str, str], key: str, numbers: list[str], port: int, count: int
) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for n in numbers[:count]:
            response = client.post(
                "/v1/decisions",
                json={"msisdn": n, "channel": "store"},
                headers={"Authorization": f"Bearer {key}"},
            )
            body = response.json()
            for offer in body.get("offers", []):
                pairs.append((body["decision_id"], offer["offer_id"]))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--half-load-seconds", type=float, default=10.0)
    parser.add_argument(
        "--ladder",
        action="store_true",
        help="also measure the real server with the impressions, then the reads, then the key "
        "check, then the decision itself answered from memory (scripts/bench/ceiling_app.py), "
        "in the same runs",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    env, extract = prepare(args.size, args.seed, args.db)
    key = nextbest(
        ["keys", "create", "--role", "clerk", "--user", "bench", "--store", "B-1"], env
    ).strip()
    numbers = sample_numbers(extract, 20_000, args.seed)
    work = VAR / f"work-{args.db}-{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    decision_lua(numbers, key, work / "decisions.lua")
    (work / "bare.lua").write_text((work / "decisions.lua").read_text())
    log = work / "server.log"
    log.unlink(missing_ok=True)
    server_env = {**env, "PYTHONPATH": str(ROOT / "scripts" / "bench")}
    (work / "numbers.txt").write_text("\n".join(numbers))
    rungs = LADDER if args.ladder else []
    decisions: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    ladder: dict[str, list[dict[str, Any]]] = {rung: [] for rung in rungs}
    rss: list[float] = []
    private: list[float] = []

    def biggest(a: list[float], b: list[float]) -> list[float]:
        return max(a, b, key=lambda r: max(r, default=0))

    for run in range(1, args.runs + 1):
        port = free_port()
        with Server(
            uvicorn_command("nextbest.api.asgi:app_from_env", port, args.workers),
            server_env,
            port,
            log,
        ) as server:
            warm = min(3.0, args.duration)
            wrk(port, work / "decisions.lua", warm, args.connections, args.threads)
            decisions.append(
                wrk(port, work / "decisions.lua", args.duration, args.connections, args.threads)
            )
            rss = biggest(rss, server.peak_rss_mb())
            private = biggest(private, server.private_mb())
        for rung in rungs:
            port = free_port()
            rung_env = {
                **server_env,
                "NEXTBEST_BENCH_WITHOUT": rung,
                "NEXTBEST_BENCH_NUMBERS": str(work / "numbers.txt"),
                "NEXTBEST_BENCH_KEY": key,
            }
            command = uvicorn_command("ceiling_app:app_factory", port, args.workers)
            with Server(command, rung_env, port, log):
                wrk(port, work / "decisions.lua", warm, args.connections, args.threads)
                ladder[rung].append(
                    wrk(port, work / "decisions.lua", args.duration, args.connections, args.threads)
                )
            say(f"run {run}: without {rung}: {ladder[rung][-1]['rps']:.0f}/s")
        port = free_port()
        with Server(
            uvicorn_command("bare_app:app_factory", port, args.workers), server_env, port, log
        ):
            wrk(port, work / "bare.lua", warm, args.connections, args.threads)
            bare.append(wrk(port, work / "bare.lua", args.duration, args.connections, args.threads))
        say(f"run {run}: decisions {decisions[-1]['rps']:.0f}/s, bare {bare[-1]['rps']:.0f}/s")

    port = free_port()
    with Server(
        uvicorn_command("nextbest.api.asgi:app_from_env", port, args.workers), server_env, port, log
    ) as server:
        saturating = statistics.median(d["rps"] for d in decisions)
        cpu = time.process_time()
        half_load = asyncio.run(
            paced("127.0.0.1", port, key, numbers, saturating / 2, args.half_load_seconds)
        )
        client_cpu = (time.process_time() - cpu) / args.half_load_seconds
        durations = half_load.server_ms
        pairs = make_decisions(env, key, numbers, port, 2000)
        outcome_lua(pairs, key, work / "outcomes.lua")
        # Warmed as the decisions are (each worker's first outcomes open its connections).
        wrk(port, work / "outcomes.lua", warm, args.connections, args.threads)
        outcomes = [
            wrk(port, work / "outcomes.lua", args.duration, args.connections, args.threads)
            for _ in range(args.runs)
        ]
        rss = biggest(rss, server.peak_rss_mb())
        private = biggest(private, server.private_mb())

    med = statistics.median
    result = {
        "db": args.db,
        "size": args.size,
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "runs": args.runs,
        "decisions_per_s": med(d["rps"] for d in decisions),
        "bare_per_s": med(b["rps"] for b in bare),
        "ratio": med(d["rps"] / b["rps"] for d, b in zip(decisions, bare, strict=True)),
        "decision_latency_ms": {
            q: med(d[k] for d in decisions) / 1000
            for q, k in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"))
        },
        "decision_errors": sum(d["errors"] + d["non2xx"] for d in decisions),
        "half_load_rate": round(saturating / 2),
        "half_load_server_ms": {
            "requests": len(durations),
            "failed": half_load.failed,
            "client_cpu_share": round(client_cpu, 3),  # of one core, the load generator's
            "p50": percentile(durations, 50),
            "p99": percentile(durations, 99),
            "p99.9": percentile(durations, 99.9),
        },
        "outcomes_per_s": med(o["rps"] for o in outcomes),
        "outcome_errors": sum(o["errors"] + o["non2xx"] for o in outcomes),
        "peak_rss_mb_per_worker": [round(r, 1) for r in rss],
        "private_rss_mb_per_worker": [round(r, 1) for r in private],
        "ladder": {
            rung: {
                "decisions_per_s": med(r["rps"] for r in runs),
                "ratio": med(r["rps"] / b["rps"] for r, b in zip(runs, bare, strict=True)),
                "errors": sum(r["errors"] + r["non2xx"] for r in runs),
            }
            for rung, runs in ladder.items()
        },
    }
    out = VAR / f"results-{args.db}-{args.size}.json"
    out.write_text(json.dumps(result, indent=2))
    lat = result["decision_latency_ms"]
    half = result["half_load_server_ms"]
    print(
        f"\nnextbest bench: {args.db}, {args.size} subscribers, {args.workers} workers, "
        f"{args.connections} connections, {args.duration:.0f}s x {args.runs} runs (medians)\n"
        f"  decisions/s        {result['decisions_per_s']:.0f}\n"
        f"  bare endpoint/s    {result['bare_per_s']:.0f}\n"
        f"  ratio              {result['ratio']:.2f}\n"
        f"  latency ms (client, saturated)  p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  "
        f"p99 {lat['p99']:.2f}  p99.9 {lat['p99.9']:.2f}\n"
        f"  server-side ms at {result['half_load_rate']}/s (half load)  p50 {half['p50']:.2f}  "
        f"p99 {half['p99']:.2f}  p99.9 {half['p99.9']:.2f}  ({half['requests']} requests, "
        f"{half['failed']} failed; client used {half['client_cpu_share']:.0%} of a core)\n"
        f"  durable outcomes/s {result['outcomes_per_s']:.0f}\n"
        f"  errors             decisions {result['decision_errors']}, "
        f"outcomes {result['outcome_errors']}\n"
        f"  peak RSS per worker MB {result['peak_rss_mb_per_worker']}\n"
        f"  private (anonymous) RSS per worker MB {result['private_rss_mb_per_worker']}\n"
        f"  written to {out}"
    )
    if rungs:
        print("  the same server with some I/O answered from memory (ceiling_app.py):")
        for rung, figures in result["ladder"].items():
            print(
                f"    without {rung:<26} {figures['decisions_per_s']:>7.0f}/s  "
                f"ratio {figures['ratio']:.2f}  errors {figures['errors']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
