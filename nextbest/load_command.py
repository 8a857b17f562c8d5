"""`nextbest load DIR`: the loader behind a terminal: progress bar, rejects, grace period.

The progress bar is one line on stderr, rewritten in place on a terminal (plain lines every
few seconds otherwise, for logs), with the file, how far through it, rows and rows/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

from nextbest.clock import SystemClock
from nextbest.loader import (
    LoadError,
    LoadProgress,
    LoadReport,
    drop_expired_versions,
    load_extract,
    pending_drop,
)
from nextbest.settings import Settings
from nextbest.storage.db import Database

__all__ = ["ProgressBar", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--max-rejects",
        type=int,
        default=None,
        metavar="N",
        help="malformed rows that may be skipped and listed; one more refuses the load "
        "(default: NEXTBEST_LOAD_MAX_REJECTS, 0)",
    )
    parser.add_argument(
        "--rejects-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="write every rejected row there as file:line: column X: reason",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait out the grace period of the version this load retires (the next "
        "load drops it)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    max_rejects = settings.load_max_rejects if args.max_rejects is None else args.max_rejects
    if max_rejects < 0:
        print("nextbest load: --max-rejects must be 0 or more", file=sys.stderr)
        return 2
    grace = settings.version_grace_seconds
    bar = ProgressBar(sys.stderr)
    db = Database(settings)
    clock = SystemClock()
    try:
        sink = (
            args.rejects_file.open("w", encoding="utf-8")
            if args.rejects_file is not None
            else nullcontext(None)
        )
        with sink as rejects_to:
            try:
                report = load_extract(
                    db,
                    args.directory,
                    clock,
                    progress=bar.start,
                    max_rejects=max_rejects,
                    grace_seconds=grace,
                    meter=bar.update,
                    rejects_to=rejects_to,
                )
            except LoadError as exc:
                bar.finish()
                print(f"nextbest load: refused, nothing of it is served:\n{exc}", file=sys.stderr)
                return 2
        _print_report(report, max_rejects, args.rejects_file)
        if report.retired is not None and grace > 0 and not args.no_wait:
            _wait_and_drop(db, report.retired, grace)
    finally:
        db.dispose()
    return 0


def _print_report(report: LoadReport, max_rejects: int, rejects_file: Path | None) -> None:
    print(
        f"loaded data version {report.version_id} (catalog {report.catalog_version}): "
        f"{report.profiles} profiles, {report.affinities} affinities, "
        f"{report.contacts} contacts in {report.seconds}s"
    )
    if report.ignored_columns:
        print(f"ignored columns: {', '.join(report.ignored_columns)}")
    if report.rejected:
        print(f"skipped {report.rejected} malformed row(s) (at most {max_rejects} allowed):")
        for line in report.rejects:
            print(f"  {line}")
        if report.rejected > len(report.rejects):
            more = report.rejected - len(report.rejects)
            where = f" (all of them in {rejects_file})" if rejects_file else ""
            print(f"  ... and {more} more{where}")
    if report.dropped:
        print(f"dropped the rows of retired data version(s) {report.dropped}")


def _wait_and_drop(db: Database, retired: int, grace: float) -> None:
    due = pending_drop(db, grace).get(retired)
    if due is None:
        return
    clock = SystemClock()
    wait = (due - clock.now()).total_seconds()
    if wait > 0:
        print(
            f"data version {retired} stays readable for {wait:.0f}s "
            "(NEXTBEST_VERSION_GRACE_SECONDS) for decisions in flight; its rows are dropped "
            "then (interrupt: the next load drops them)",
            flush=True,
        )
        try:
            time.sleep(wait)
        except KeyboardInterrupt:
            print("not waiting: the next load drops them", flush=True)
            return
    dropped = drop_expired_versions(db, clock.now(), grace)
    if dropped:
        print(f"dropped the rows of retired data version(s) {dropped}")


class ProgressBar:
    """Rows loaded, rows/s and how far through the file, on one line of ``stream``."""

    WIDTH = 24
    # Without a terminal, a plain line at most this often (and one per finished file).
    PLAIN_EVERY = 5.0

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last_plain = 0.0
        self._open = False

    def start(self, file: str) -> None:
        self.finish()
        self._write(f"  {file} ...", final=not self.tty)
        self._last_plain = time.monotonic()

    def update(self, progress: LoadProgress) -> None:
        rate = progress.rows / progress.seconds if progress.seconds > 0 else 0.0
        rejected = f", {progress.rejected:,} rejected" if progress.rejected else ""
        if progress.done:
            self._write(
                f"  {progress.file}: {progress.rows:,} rows in {progress.seconds:.1f}s "
                f"({rate:,.0f} rows/s){rejected}",
                final=True,
            )
            return
        fraction = progress.fraction
        if fraction is None:
            bar, percent = "", ""
        else:
            filled = int(fraction * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            percent = f"{fraction:4.0%} "
        line = (
            f"  {progress.file} {bar}{percent}{progress.rows:>12,} rows "
            f"{rate:>9,.0f} rows/s {_clock(progress.seconds)}{rejected}"
        )
        if self.tty:
            self._write(line, final=False)
        elif time.monotonic() - self._last_plain >= self.PLAIN_EVERY:
            self._last_plain = time.monotonic()
            self._write(line, final=True)

    def finish(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            self.stream.write(f"\r\x1b[K{line}")
            self._open = not final
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"
