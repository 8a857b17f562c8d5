"""The real server with some of a decision's I/O taken away: how high the ratio could go.

Not a product mode: a measuring instrument for scripts/bench/run.py --ladder. The app is the
one `nextbest serve` runs (same routes, front door, decision core, response), built from the
same settings; then, per NEXTBEST_BENCH_WITHOUT (a comma list), one kind of I/O is answered
from memory instead of the database:

- ``rollups``: the decision rows are written, their report counts are not (not on the
  ladder; for a look at what the counts cost, docs/performance.md);
- ``impressions``: what was served is not written (no decision row, no report counts);
- ``reads``: the customer's warehouse data comes from memory (the benchmark's numbers, read
  once at start through the real reader) and the live history is taken to be empty;
- ``key``: the benchmark's key is checked once at start, not on every request;
- ``core``: no decision is made: every request gets the answer of one decision made at start.

With impressions, reads and key gone a decision is the framework, the front door and the
pure core: the most any implementation on this stack could reach, whatever it did about
storage. With ``core`` too, what is left is the framework and the front door carrying a
decision-sized answer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from litestar import Litestar

from nextbest.api.asgi import server_app
from nextbest.api.auth import Authenticator
from nextbest.clock import SystemClock
from nextbest.impressions import Impression, ImpressionWriter
from nextbest.keys import Actor, authenticate
from nextbest.msisdn import normalize
from nextbest.settings import Settings
from nextbest.storage.raw import RawReader
from nextbest.storage.warehouse import CustomerData, LiveHistory
from nextbest.wire import DecisionRequest, DecisionResponse

KINDS = frozenset({"rollups", "impressions", "reads", "key", "core"})


class _NoImpressions(ImpressionWriter):
    def submit(self, impression: Impression) -> None:
        del impression


class _NoReads:
    """Stands in for the Database where the decision service opens its read connection."""

    @contextmanager
    def raw_read(self) -> Iterator[None]:
        yield None


def app_factory() -> Litestar:
    without = {w for w in os.environ.get("NEXTBEST_BENCH_WITHOUT", "").split(",") if w}
    if without - KINDS:
        raise SystemExit(f"NEXTBEST_BENCH_WITHOUT: unknown {sorted(without - KINDS)}")
    settings = Settings.from_env()
    app = server_app(settings)
    services = app.state.services
    db = services.db
    numbers = Path(os.environ["NEXTBEST_BENCH_NUMBERS"]).read_text().split()
    if "rollups" in without:
        import nextbest.impressions

        nextbest.impressions.upsert_with = lambda *args, **kwargs: None  # type: ignore[assignment]
    if "impressions" in without:
        services.decisions.impressions = _NoImpressions(db, 0)
    if "reads" in without:
        reader = services.reader
        active = reader.active()
        reader._check_every = 1e9  # the active version is not re-read either
        resident: dict[str, CustomerData] = {}
        for number in numbers:
            msisdn = normalize(number)
            resident[msisdn] = reader.customer(active.id, msisdn)
        nothing = LiveHistory([], False)

        def from_memory(
            version_id: int, msisdn: str, since: datetime, reads: RawReader
        ) -> tuple[CustomerData, LiveHistory]:
            del version_id, since, reads
            return resident[msisdn], nothing

        reader.customer_and_history = from_memory  # type: ignore[method-assign]
        services.decisions.db = _NoReads()
    actor = authenticate(db, os.environ["NEXTBEST_BENCH_KEY"], SystemClock().now())
    assert actor is not None, "NEXTBEST_BENCH_KEY is not a valid key"
    if "core" in without:
        first = DecisionRequest(msisdn=numbers[0], channel="store")
        answer = services.decisions.decide(actor, first)

        def constant(*args: Any, **kwargs: Any) -> DecisionResponse:
            del args, kwargs
            return answer

        services.decisions.decide = constant
    if "key" in without:
        authenticator = next(
            m.kwargs["authenticator"]
            for m in app.middleware
            if isinstance(getattr(m, "kwargs", {}).get("authenticator"), Authenticator)
        )

        async def known(scope: Any, *args: Any) -> Actor:
            del args
            scope["user"] = actor
            scope["auth"] = actor.key_id
            return actor

        authenticator.actor = known
    return app
