"""The services the handlers use, built once per app, and the dependency providers."""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import timedelta
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from nextbest.campaigns import CampaignService
from nextbest.catalog import Catalog
from nextbest.clock import Clock
from nextbest.decisions import DecisionService
from nextbest.impressions import ImpressionWriter
from nextbest.keys import Actor
from nextbest.learning import Learner
from nextbest.lookups import LookupService
from nextbest.outbox import OutboxWorker
from nextbest.outcomes import OutcomeService
from nextbest.provisioning import Provisioner
from nextbest.reports import ReportService
from nextbest.retention import Housekeeper
from nextbest.sales import SalesService
from nextbest.sessions import SessionBook
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.group_commit import GroupCommitter
from nextbest.storage.warehouse import WarehouseReader
from nextbest.tasks import TaskService

__all__ = [
    "EVERYONE",
    "FRONT_LINE",
    "MANAGERS",
    "ActorDep",
    "Services",
    "ServicesDep",
    "provide_actor",
    "provide_services",
]

log = logging.getLogger("nextbest.services")

FRONT_LINE = ("clerk", "agent")
MANAGERS = ("supervisor", "admin")
EVERYONE = ("clerk", "agent", "supervisor", "admin")


class Services:
    """What the handlers need, built once per app."""

    def __init__(
        self, settings: Settings, db: Database, clock: Clock, provisioner: Provisioner
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.worker = OutboxWorker(db, provisioner, clock, settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reader = WarehouseReader(
            db,
            cache_size=settings.cache_size,
            version_check_seconds=settings.version_check_seconds,
        )
        self.learner = Learner(db, clock)
        self._learning_stop = threading.Event()
        self._learning_thread: threading.Thread | None = None
        # Impressions of decisions served, written in batches (nextbest/impressions.py).
        self.impressions = ImpressionWriter(db, settings.impression_batch_ms / 1000)
        self.decisions = DecisionService(db, self.reader, clock, self.learner, self.impressions)
        # Outcomes of concurrent requests commit together (NEXTBEST_GROUP_COMMIT).
        self.committer = GroupCommitter(db)
        self.outcomes = OutcomeService(db, self.reader, clock, self.impressions, self.committer)
        self.sales = SalesService(db, clock)
        self.reports = ReportService(db, clock, self.impressions.flush)
        # Campaigns and the outbound call queue (nextbest/campaigns.py, nextbest/tasks.py).
        self.campaigns = CampaignService(db, self.reader, clock)
        self.tasks = TaskService(
            db,
            clock,
            self.decisions,
            self.outcomes,
            lease_seconds=settings.task_lease_seconds,
            callback_grace_seconds=settings.task_callback_grace_seconds,
        )
        # Security: the look-up trail, widget sessions, and the daily purge.
        self.lookups = LookupService(db, self.impressions.flush)
        self.sessions = SessionBook(
            db, clock, _session_secret(settings), timedelta(minutes=settings.session_ttl_minutes)
        )
        self.housekeeper = Housekeeper(db, clock, settings)
        self._housekeeping_stop = threading.Event()
        self._housekeeping: threading.Thread | None = None

    def start_impressions(self) -> None:
        self.impressions.start()
        if self.settings.group_commit_on():
            self.committer.start()

    def stop_impressions(self) -> None:
        """Write what is pending before the process ends (graceful shutdown)."""
        self.committer.stop()
        self.impressions.stop()

    def start_worker(self) -> None:
        if self.settings.worker_in_process and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.worker.run_forever, args=(self._stop,), name="outbox", daemon=True
            )
            self._thread.start()

    def start_learning(self) -> None:
        """Refresh what outcomes taught every NEXTBEST_LEARNING_REFRESH_SECONDS (one thread)."""
        every = self.settings.learning_refresh_seconds
        if every > 0 and self._learning_thread is None:
            self._learning_stop.clear()

            def active() -> tuple[int, Catalog]:
                version = self.reader.active()
                return version.id, version.catalog

            self._learning_thread = threading.Thread(
                target=self.learner.run_forever,
                args=(self._learning_stop, active, every),
                name="learning",
                daemon=True,
            )
            self._learning_thread.start()

    def stop_learning(self) -> None:
        self._learning_stop.set()
        if self._learning_thread is not None:
            self._learning_thread.join(timeout=30)
            self._learning_thread = None

    def stop_worker(self) -> None:
        """Let the delivery in hand finish; what is left is picked up at the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
            log.info("outbox worker stopped")

    def start_housekeeping(self) -> None:
        """With the in-process worker: purge the look-up trail past its retention, and ended
        sessions, at start and then once a day."""
        if self.settings.worker_in_process and self._housekeeping is None:
            self._housekeeping_stop.clear()
            self._housekeeping = threading.Thread(
                target=self.housekeeper.run_forever,
                args=(self._housekeeping_stop,),
                name="housekeeping",
                daemon=True,
            )
            self._housekeeping.start()

    def stop_housekeeping(self) -> None:
        self._housekeeping_stop.set()
        if self._housekeeping is not None:
            self._housekeeping.join(timeout=30)
            self._housekeeping = None


def _session_secret(settings: Settings) -> str:
    if settings.session_secret:
        return settings.session_secret
    log.warning(
        "NEXTBEST_SESSION_SECRET is not set: widget sessions are signed with a random secret "
        "of this process, so they end when it restarts and do not work across workers or "
        "nodes; set it to 32+ random characters"
    )
    return secrets.token_urlsafe(32)


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_actor(request: Request[Actor, Any, Any], services: ServicesDep) -> Actor:
    """``services`` is not used: naming it puts the two providers in sequence. Litestar
    resolves independent dependencies of a handler concurrently, in an anyio task group: two
    tasks per request for two trivial lookups, measured at 7-9% of a decision's or an
    outcome's CPU (py-spy)."""
    del services
    return request.user


# Handler parameters injected by name (app.py registers the providers).
ServicesDep = NamedDependency[Services]
ActorDep = NamedDependency[Actor]
