"""Learning from outcomes: how far the warehouse's estimates are off, per offer, persona segment
and channel, from what customers here actually said.

The warehouse's affinity is nightly and static; the outcomes recorded here are live. For every
cell (channel, offer, segment) the reports' rollups count the offers presented (n), accepted
(k), and the acceptances the ranking's estimate expected for those presentations (e, the sum
of its probabilities before learning). The cell's acceptance rate r gets a Beta prior centred
on the model's own average estimate a = e / n, worth ``prior_strength`` (m) presentations:

    r ~ Beta(m * a, m * (1 - a))   ->   after k of n:   E[r] = (k + m * a) / (n + m)

and each customer's estimate in that cell is scaled by E[r] / a. The warehouse still orders
customers within a cell (its individual signal is kept); outcomes correct its level per
offer, segment and channel, a little at first and fully once n is large against m.

The core (``estimate``, ``build_table``, ``LearnedTable.adjust``) is pure. ``Learner`` is the
door to the database: it refreshes the table in the background (a thread calls ``refresh``
every N seconds) and keeps it in memory per process, keyed by data version.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from nextbest.catalog import Catalog, Learning
from nextbest.clock import Clock

if TYPE_CHECKING:
    from nextbest.storage.db import Database

__all__ = [
    "Adjustment",
    "CellCounts",
    "CellKey",
    "Estimate",
    "LearnedTable",
    "Learner",
    "build_table",
    "estimate",
    "reason_text",
]

log = logging.getLogger("nextbest.learning")

# (channel, offer id, segment code); '' is the segment of numbers the warehouse does not know.
CellKey = tuple[str, str, str]
# Returns the active data version's id and its catalog (e.g. from the warehouse reader).
ActiveSource = Callable[[], tuple[int, Catalog]]


class CellCounts(msgspec.Struct, frozen=True, kw_only=True):
    presented: int
    accepted: int
    expected: float  # acceptances the ranking's estimates (before learning) expected


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    multiplier: float  # E[r] / a: how much to scale the ranking's estimate
    rate: float | None  # observed k / n (None without presentations)
    presented: int


class Adjustment(msgspec.Struct, frozen=True, kw_only=True):
    probability: float
    estimate: Estimate


def estimate(counts: CellCounts, prior_strength: float) -> Estimate:
    """The Beta-Binomial update of one cell (module docstring)."""
    n, k = counts.presented, counts.accepted
    if n <= 0:
        return Estimate(multiplier=1.0, rate=None, presented=0)
    a = counts.expected / n
    rate = k / n
    if a <= 0:  # nothing to scale: the model expected nothing
        return Estimate(multiplier=1.0, rate=rate, presented=n)
    posterior = (k + prior_strength * a) / (n + prior_strength)
    return Estimate(multiplier=posterior / a, rate=rate, presented=n)


class LearnedTable(msgspec.Struct, frozen=True, kw_only=True):
    version: int  # data version whose catalog's [learning] settings built it
    refreshed_at: datetime
    window_days: int
    min_presented: int
    counts: dict[CellKey, CellCounts]
    cells: dict[CellKey, Estimate]

    def adjust(self, channel: str, offer_id: str, segment: str, p: float) -> Adjustment | None:
        """The ranking's estimate ``p`` corrected by what was learned; None if nothing was."""
        cell = self.cells.get((channel, offer_id, segment))
        if cell is None:
            return None
        return Adjustment(probability=min(p * cell.multiplier, 0.99), estimate=cell)


def build_table(
    counts: Mapping[CellKey, CellCounts],
    learning: Learning,
    *,
    version: int,
    refreshed_at: datetime,
) -> LearnedTable:
    return LearnedTable(
        version=version,
        refreshed_at=refreshed_at,
        window_days=learning.window_days,
        min_presented=learning.min_presented,
        counts=dict(counts),
        cells={key: estimate(c, learning.prior_strength) for key, c in counts.items()},
    )


_WHERE = {
    "store": ("at the counter", "在营业厅"),
    "inbound": ("when they called in", "来电时"),
    "outbound": ("on outbound calls", "外呼时"),
}


def reason_text(estimate: Estimate, channel: str, window_days: int) -> tuple[str, str] | None:
    """'Accepted by 34% of similar customers at the counter this month' (en, zh), or None."""
    if estimate.rate is None:
        return None
    pct = round(estimate.rate * 100)
    where, where_zh = _WHERE.get(channel, (f"on {channel}", channel))
    if 28 <= window_days <= 31:
        when, when_zh = "this month", "本月"
    elif window_days == 7:
        when, when_zh = "this week", "本周"
    else:
        when, when_zh = f"in the last {window_days} days", f"近{window_days}天"
    return (
        f"Accepted by {pct}% of similar customers {where} {when}",
        f"{when_zh}{where_zh}{pct}%的同类客户接受了此业务",
    )


class Learner:
    """The learned table of this process, refreshed from the rollups in the background."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        self._table: LearnedTable | None = None
        self.refreshes = 0

    def table(self, version: int, catalog: Catalog) -> LearnedTable | None:
        """The table for this data version (None when learning is off or nothing is learned
        yet). After a swap, the last counts are re-read under the new catalog's settings at
        once (no database read); the next refresh brings fresh counts."""
        if not catalog.learning.enabled:
            return None
        table = self._table
        if table is None or table.version == version:
            return table
        rebuilt = build_table(
            table.counts, catalog.learning, version=version, refreshed_at=table.refreshed_at
        )
        with self._lock:
            self._table = rebuilt
        return rebuilt

    def refresh(self, version: int, catalog: Catalog) -> LearnedTable | None:
        """Re-read the counts of the learning window; returns the new table."""
        from nextbest.rollups import learning_counts, report_day

        if not catalog.learning.enabled:
            return None
        now = self.clock.now()
        since = report_day(now) - timedelta(days=catalog.learning.window_days - 1)
        with self.db.read() as session:
            counts = learning_counts(session, since)
        table = build_table(counts, catalog.learning, version=version, refreshed_at=now)
        with self._lock:
            self._table = table
            self.refreshes += 1
        return table

    def run_forever(self, stop: threading.Event, active: ActiveSource, every: float) -> None:
        """Refresh every ``every`` seconds until ``stop`` is set (the in-process thread)."""
        while not stop.is_set():
            try:
                version, catalog = active()
                self.refresh(version, catalog)
            except Exception as exc:  # no data loaded yet, database restarting...
                log.debug("learning refresh skipped: %s", exc)
            stop.wait(every)
