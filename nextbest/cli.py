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

import msgspec

from nextbest.clock import SystemClock
from nextbest.keys import ROLES, create_key, list_keys
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
    load.add_argument("directory", type=Path)
    load.set_defaults(func=_load)

    migrate = sub.add_parser("migrate", help="create or update the database schema")
    migrate.set_defaults(func=_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(metavar="ACTION")
    kc = keys_sub.add_parser("create", help="print a new key on stdout")
    kc.add_argument("--role", required=True, choices=ROLES)
    kc.add_argument("--user", required=True, help="the clerk's, agent's or person's id")
    kc.add_argument("--store", default=None, help="bind a clerk key to a store")
    kc.add_argument("--expires-days", type=int, default=None)
    kc.set_defaults(func=_keys_create)
    kl = keys_sub.add_parser("list", help="list keys (never the secrets)")
    kl.set_defaults(func=_keys_list)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="deliver accepted sales to provisioning (outbox)")
    worker.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    worker.set_defaults(func=_worker)

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


def _load(settings: Settings, args: argparse.Namespace) -> int:
    from nextbest.loader import LoadError, load_extract

    db = Database(settings)
    try:
        report = load_extract(db, args.directory, SystemClock(), progress=_progress)
    except LoadError as exc:
        print(f"nextbest load: refused, nothing of it is served:\n{exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(
        f"loaded data version {report.version_id} (catalog {report.catalog_version}): "
        f"{report.profiles} profiles, {report.affinities} affinities, "
        f"{report.contacts} contacts in {report.seconds}s"
    )
    if report.ignored_columns:
        print(f"ignored columns: {', '.join(report.ignored_columns)}")
    return 0


def _progress(message: str) -> None:
    print(f"  loading {message} ...", file=sys.stderr, flush=True)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings)
    db.create_schema()
    db.dispose()
    print("schema is up to date")
    return 0


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings)
    db.create_schema()
    now = datetime.now(UTC)
    expires = now + timedelta(days=args.expires_days) if args.expires_days else None
    try:
        key = create_key(
            db, role=args.role, user_id=args.user, store_id=args.store, now=now, expires_at=expires
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
    for row in list_keys(db):
        state = "revoked" if row.revoked_at else "active"
        print(
            f"{row.id}\t{row.prefix}...\t{row.role}\t{row.user_id}\t{row.store_id or '-'}\t{state}"
        )
    db.dispose()
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    if args.workers > 1:
        uvicorn.run(
            "nextbest.api.asgi:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_level=settings.log_level,
        )
        return 0
    from nextbest.api.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level)
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
    return _serve(settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
