"""The services the handlers use, built once per app, and the dependency providers."""

from __future__ import annotations

import threading
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from nextbest.clock import Clock
from nextbest.decisions import DecisionService
from nextbest.keys import Actor
from nextbest.outbox import OutboxWorker
from nextbest.outcomes import OutcomeService
from nextbest.provisioning import Provisioner
from nextbest.sales import SalesService
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.warehouse import WarehouseReader

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
        self.decisions = DecisionService(db, self.reader, clock)
        self.outcomes = OutcomeService(db, self.reader, clock)
        self.sales = SalesService(db, clock)

    def start_worker(self) -> None:
        if self.settings.worker_in_process and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.worker.run_forever, args=(self._stop,), name="outbox", daemon=True
            )
            self._thread.start()

    def stop_worker(self) -> None:
        """Let the delivery in hand finish; what is left is picked up at the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_actor(request: Request[Actor, Any, Any]) -> Actor:
    return request.user


# Handler parameters injected by name (app.py registers the providers).
ServicesDep = NamedDependency[Services]
ActorDep = NamedDependency[Actor]
