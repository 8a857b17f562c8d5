"""The `nextbest` command: generate, load, keys, serve, demo.

argparse (standard library) rather than typer: a handful of sub-commands do not justify a
dependency in every production install.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from nextbest import load_command
from nextbest.clock import SystemClock
from nextbest.keys import ROLES, create_key, key_state, list_keys, revoke_key
from nextbest.settings import Settings, SettingsError
from nextbest.storage.db import Database

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"nextbest: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(settings, args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextbest",
        description="Next-best-offer decisions. Settings come from NEXTBEST_* variables "
        "(NEXTBEST_DATABASE_URL, NEXTBEST_HOST, NEXTBEST_PORT...).",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    gen = sub.add_parser("generate", help="write a synthetic warehouse extract")
    gen.add_argument("--out", type=Path, required=True, help="folder to write the extract into")
    gen.add_argument("--size", type=int, default=200_000, help="subscribers (default 200000)")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    gen.set_defaults(func=_generate)

    load = sub.add_parser("load", help="load a warehouse extract folder as the new data version")
    load_command.add_arguments(load)
    load.set_defaults(func=load_command.run)

    migrate = sub.add_parser("migrate", help="create or update the database schema (Alembic)")
    migrate.add_argument(
        "--check", action="store_true", help="exit 1 if the database differs from the models"
    )
    migrate.add_argument(
        "--autogenerate",
        metavar="MESSAGE",
        default=None,
        help="developers: write a new revision with what the models changed",
    )
    migrate.set_defaults(func=_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(metavar="ACTION")
    kc = keys_sub.add_parser("create", help="print a new key on stdout")
    kc.add_argument("--role", required=True, choices=ROLES)
    kc.add_argument("--user", required=True, help="the clerk's, agent's or person's id")
    kc.add_argument("--store", default=None, help="bind a clerk key to a store")
    kc.add_argument("--team", default=None, help="bind an agent key to a team")
    kc.add_argument("--expires-days", type=int, default=None)
    kc.set_defaults(func=_keys_create)
    kl = keys_sub.add_parser("list", help="list keys (never the secrets)")
    kl.set_defaults(func=_keys_list)
    kr = keys_sub.add_parser("revoke", help="revoke a key (and its sessions) at once")
    kr.add_argument("id", type=int, help="the key's id (first column of `keys list`)")
    kr.set_defaults(func=_keys_revoke)

    purge = sub.add_parser(
        "purge", help="drop look-ups older than NEXTBEST_LOOKUP_RETENTION_DAYS, ended sessions"
    )
    purge.set_defaults(func=_purge)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="deliver accepted sales to provisioning (outbox)")
    worker.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    worker.set_defaults(func=_worker)

    rollup = sub.add_parser("rollup", help="recompute the reports' rollups from the ledgers")
    rollup.add_argument(
        "--rebuild", action="store_true", help="replace every rollup row by a recount"
    )
    rollup.add_argument("--check", action="store_true", help="recount and compare, writing nothing")
    rollup.set_defaults(func=_rollup)

    from nextbest.campaigns import add_cli as add_campaign_commands

    add_campaign_commands(sub)  # nextbest campaigns targets|rehearse|list

    demo = sub.add_parser("demo", help="generate and load a demo operator, print keys, serve")
    demo.add_argument("--size", type=int, default=200_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--dir", type=Path, default=Path("var/demo"))
    demo.add_argument("--fresh", action="store_true", help="regenerate even if present")
    demo.add_argument("--no-serve", action="store_true", help="prepare and print, do not serve")
    demo.set_defaults(func=_demo)
    return parser


def _generate(settings: Settings, args: argparse.Namespace) -> int:
    from nextbest.synth import generate

    if args.size < 1:
        print("nextbest generate: --size must be at least 1", file=sys.stderr)
        return 2
    report = generate(args.out, size=args.size, seed=args.seed, as_of=args.as_of)
    print(f"wrote {args.out}: {report}")
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from nextbest.migrations import run_command

    return run_command(settings, check=args.check, autogenerate=args.autogenerate)


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings)
    db.create_schema()
    now = datetime.now(UTC)
    expires = now + timedelta(days=args.expires_days) if args.expires_days else None
    if args.expires_days is not None and args.expires_days < 1:
        print("nextbest keys create: --expires-days must be at least 1", file=sys.stderr)
        db.dispose()
        return 2
    try:
        key = create_key(
            db,
            role=args.role,
            user_id=args.user,
            store_id=args.store,
            team_id=args.team,
            now=now,
            expires_at=expires,
        )
    except ValueError as exc:
        print(f"nextbest keys create: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(key)
    return 0


def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings)
    db.create_schema()
    now = datetime.now(UTC)
    for row in list_keys(db):
        print(
            f"{row.id}\t{row.prefix}...\t{row.role}\t{row.user_id}\t{row.store_id or '-'}"
            f"\t{row.team_id or '-'}\t{key_state(row, now)}"
        )
    db.dispose()
    return 0


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings)
    db.create_schema()
    try:
        row = revoke_key(db, args.id, datetime.now(UTC))
    finally:
        db.dispose()
    if row is None:
        print(f"nextbest keys revoke: no key {args.id}", file=sys.stderr)
        return 2
    print(f"revoked key {row.id} ({row.prefix}..., {row.role} {row.user_id})")
    return 0


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    from nextbest.retention import purge

    db = Database(settings)
    db.create_schema()
    try:
        purged = purge(db, SystemClock(), settings)
    finally:
        db.dispose()
    print(
        f"purged {purged.lookups} look-up(s) older than {settings.lookup_retention_days} days "
        f"and {purged.sessions} ended session(s)"
    )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import logging.config
    import math

    import uvicorn

    from nextbest.logs import logging_config

    host = args.host or settings.host
    port = args.port or settings.port
    # JSON lines (or text) with the request id and masked numbers, for uvicorn's lines too;
    # uvicorn's access log is replaced by ours (nextbest.access). On SIGTERM uvicorn stops
    # accepting, lets requests in flight finish (up to the timeout), then runs the app's
    # shutdown hooks: the outbox worker finishes the delivery in hand and stops.
    log_config = logging_config(settings)
    logging.config.dictConfig(log_config)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": settings.log_level,
        "log_config": log_config,
        "access_log": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_timeout_seconds),
    }
    if args.workers > 1:
        uvicorn.run("nextbest.api.asgi:app_from_env", factory=True, workers=args.workers, **options)
        return 0
    from nextbest.api.asgi import server_app

    uvicorn.run(server_app(settings), **options)
    return 0


def _rollup(settings: Settings, args: argparse.Namespace) -> int:
    from nextbest.rollups import rebuild

    if args.rebuild == args.check:
        print("nextbest rollup: give one of --rebuild or --check", file=sys.stderr)
        return 2
    db = Database(settings)
    db.create_schema()
    try:
        report = rebuild(db, check=args.check)
    finally:
        db.dispose()
    if args.check:
        print(
            f"recounted in {report.seconds}s: {report.differences} of the rollup keys differ "
            "from the ledgers" + ("" if not report.differences else "; run --rebuild")
        )
        return 1 if report.differences else 0
    print(f"rebuilt {report.rows} rollup rows from the ledgers in {report.seconds}s")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    import signal
    import threading

    from nextbest.outbox import OutboxWorker
    from nextbest.provisioning import load_provisioner

    try:
        provisioner = load_provisioner(settings)
    except SettingsError as exc:
        print(f"nextbest worker: {exc}", file=sys.stderr)
        return 2
    db = Database(settings)
    db.create_schema()
    worker = OutboxWorker(db, provisioner, SystemClock(), settings)
    if args.once:
        total = 0
        while n := worker.run_once():
            total += n
        print(f"attempted {total}: {worker.delivered} delivered, {worker.failed} failed")
        db.dispose()
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("outbox worker running; SIGTERM or Ctrl-C stops it after the delivery in hand")
    worker.run_forever(stop)
    db.dispose()
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from nextbest.demo import prepare_demo

    if "NEXTBEST_DATABASE_URL" not in os.environ:
        args.dir.mkdir(parents=True, exist_ok=True)
        settings = msgspec.structs.replace(
            settings, database_url=f"sqlite:///{args.dir / 'nextbest.db'}"
        )
    summary = prepare_demo(settings, args.dir, size=args.size, seed=args.seed, fresh=args.fresh)
    print(summary, flush=True)
    if args.no_serve:
        return 0
    args.host = None
    args.port = None
    args.workers = 1
    if "NEXTBEST_LOG_FORMAT" not in os.environ:
        # A person watches the demo's terminal: plain lines (numbers masked all the same).
        settings = msgspec.structs.replace(settings, log_format="text")
    return _serve(settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
