"""Retention: drop the look-up trail past ``NEXTBEST_LOOKUP_RETENTION_DAYS`` and sessions that
have ended. Run by ``nextbest purge`` and, once a day, by each server process's housekeeper
(deleting what another node already deleted is harmless)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import msgspec

from nextbest.clock import Clock
from nextbest.lookups import purge_lookups
from nextbest.sessions import purge_sessions
from nextbest.settings import Settings
from nextbest.storage.db import Database

__all__ = ["Housekeeper", "Purged", "purge"]

log = logging.getLogger("nextbest.retention")

DAY_SECONDS = 86_400.0


class Purged(msgspec.Struct, frozen=True):
    lookups: int
    sessions: int


def purge(db: Database, clock: Clock, settings: Settings) -> Purged:
    now = clock.now()
    cutoff = now - timedelta(days=settings.lookup_retention_days)
    return Purged(lookups=purge_lookups(db, cutoff), sessions=purge_sessions(db, now))


class Housekeeper:
    """Purges once at start and then every ``every_seconds`` until stopped."""

    def __init__(
        self, db: Database, clock: Clock, settings: Settings, every_seconds: float = DAY_SECONDS
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.every_seconds = every_seconds
        self.passes = 0
        self.passed = threading.Event()  # set after each pass (tests wait on it)

    def run_once(self) -> Purged:
        purged = purge(self.db, self.clock, self.settings)
        self.passes += 1
        self.passed.set()
        if purged.lookups or purged.sessions:
            log.info(
                "purged %d look-up(s) older than %d days and %d ended session(s)",
                purged.lookups,
                self.settings.lookup_retention_days,
                purged.sessions,
            )
        return purged

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("purge failed; trying again at the next pass")
            stop.wait(self.every_seconds)
