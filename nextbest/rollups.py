"""Report rollups: counts kept current in the same transaction as the decision or outcome they
count, so reports sum a few thousand pre-aggregated rows instead of scanning the ledgers.

What is counted, per day (the decision's day, China Standard Time) and per grain:
- a decision served: one contact (``decisions``) on every grain without the offer dimension;
- the first outcome of an offer of a decision that shows it was put to the customer
  (presented, accepted, declined, considering, callback; not no_answer): one offer
  ``presented``, and the ranking's estimate before learning into ``expected_micro``; if it is
  the decision's first such outcome, one contact presented (``contacts_presented``);
- the first ``accepted`` outcome of an offer of a decision: one offer ``accepted`` with the
  sale's monthly price in ``revenue_fen``, and, if the decision's first, ``contacts_accepted``.

Everything is attributed to the decision (its day, agent, store, channel, campaign, segment,
experiment arm), so a rate never mixes contacts of one day with answers of another.

Grains are the 15 pairs of the six dimensions below (a report by one dimension, or by none,
sums a pair); the learning loop reads one more, ``channel+offer+segment``. ``rebuild``
recomputes every row from the ledgers (``nextbest rollup --rebuild``).
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Protocol

import msgspec
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from nextbest.learning import CellCounts, CellKey
from nextbest.storage.db import Database
from nextbest.storage.models import Decision, Outcome, Subscription
from nextbest.storage.raw import fetch, insert_values, pg_array_types
from nextbest.storage.report_models import ReportRollup
from nextbest.storage.shown import decode_offers, expected

__all__ = [
    "DIMENSIONS",
    "LEARNING_GRAIN",
    "LOCK_SQL",
    "PAIR_GRAINS",
    "PRESENTED_KINDS",
    "REPORT_TZ",
    "ContactKey",
    "DecisionKeys",
    "Measures",
    "RebuildReport",
    "RollupRow",
    "add_contacts",
    "contact_key",
    "contact_rows",
    "contact_rows_for",
    "day_sql",
    "grain_for",
    "learning_counts",
    "merged",
    "outcome_rows",
    "read_rollups",
    "rebuild",
    "record_decision",
    "record_outcome",
    "report_day",
    "snapshot",
    "upsert_rollups",
    "upsert_with",
    "utc_bounds",
]

# Report days are the operator's days: China Standard Time (no daylight saving).
REPORT_TZ = timezone(timedelta(hours=8), "CST")
DIMENSIONS: tuple[str, ...] = ("agent", "store", "channel", "offer", "campaign", "segment")
PAIR_GRAINS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(DIMENSIONS, 2))
LEARNING_GRAIN: tuple[str, str, str] = ("channel", "offer", "segment")
_CONTACT_DIMS = tuple(d for d in DIMENSIONS if d != "offer")
_CONTACT_GRAINS = tuple(g for g in PAIR_GRAINS if "offer" not in g)
# The pair read for a report by one dimension (or none): the other member keeps it small.
_COMPANION = {
    "agent": ("agent", "store"),
    "store": ("store", "channel"),
    "channel": ("channel", "campaign"),
    "offer": ("channel", "offer"),
    "campaign": ("channel", "campaign"),
    "segment": ("channel", "segment"),
}
_TOTALS = ("channel", "campaign")
# Only the grains the lift report reads keep the experiment and arm apart (elsewhere they are
# '', which halves those grains' rows).
ARM_GRAINS = frozenset({("channel", "campaign"), ("channel", "offer")})
# Outcomes that mean the offer was put to the customer.
PRESENTED_KINDS = frozenset({"presented", "accepted", "declined", "considering", "callback"})
# PostgreSQL: rows per key a decision's counts may land in (by a hash of its id), so that
# concurrent transactions do not queue on the lock of one hot row. SQLite has one writer.
PG_SHARDS = 8
MEASURES = (
    "decisions",
    "contacts_presented",
    "contacts_accepted",
    "presented",
    "accepted",
    "revenue_fen",
    "expected_micro",
)
_KEY_COLUMNS = ("grain", "day", "k1", "k2", "k3", "experiment", "arm", "shard")
_UPSERT_HEAD = f"INSERT INTO report_rollups ({', '.join(_KEY_COLUMNS + MEASURES)})"
_UPSERT_TYPES = pg_array_types(ReportRollup.__table__, _KEY_COLUMNS + MEASURES)  # type: ignore[arg-type]
_UPSERT_TAIL = f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET " + ", ".join(
    f"{m} = report_rollups.{m} + excluded.{m}" for m in MEASURES
)


def grain_name(dims: Sequence[str]) -> str:
    return "+".join(dims)


def report_day(at: datetime) -> date:
    return at.astimezone(REPORT_TZ).date()


def grain_for(dims: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The grain that holds a report over ``dims`` (at most two of DIMENSIONS) and its
    dimensions in column order (k1, k2)."""
    wanted = set(dims)
    unknown = wanted - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"unknown dimension(s): {', '.join(sorted(unknown))}")
    if len(wanted) > 2:
        raise ValueError("at most two dimensions can be combined")
    if len(wanted) == 2:
        pair = tuple(d for d in DIMENSIONS if d in wanted)
    elif len(wanted) == 1:
        pair = _COMPANION[next(iter(wanted))]
    else:
        pair = _TOTALS
    return grain_name(pair), pair


class _Facts(msgspec.Struct, frozen=True):
    """What a decision contributes to every row key."""

    day: str  # ISO date
    dims: dict[str, str]
    experiment: str
    arm: str
    shard: int


def _facts_for(decision: DecisionKeys, *, sqlite: bool) -> _Facts:
    return _facts_of(
        contact_key(
            decision_id=decision.id,
            created_at=decision.created_at,
            user_id=decision.user_id,
            store_id=decision.store_id,
            channel=decision.channel,
            campaign_id=decision.campaign_id,
            segment=decision.segment,
            experiment=decision.experiment,
            arm=decision.arm,
            sqlite=sqlite,
        )
    )


# What a served decision counts under: (day, agent, store, channel, campaign, segment,
# experiment, arm, shard). Decisions with the same key add to the same rollup rows.
ContactKey = tuple[str, str, str, str, str, str, str, str, int]


def contact_key(
    *,
    decision_id: str,
    created_at: datetime,
    user_id: str,
    store_id: str | None,
    channel: str,
    campaign_id: str | None,
    segment: str | None,
    experiment: str | None,
    arm: str | None,
    sqlite: bool,
) -> ContactKey:
    shards = 1 if sqlite else PG_SHARDS
    return (
        report_day(created_at).isoformat(),
        user_id,
        store_id or "",
        channel,
        campaign_id or "",
        segment or "",
        experiment or "",
        arm or "",
        zlib.crc32(decision_id.encode()) % shards if shards > 1 else 0,
    )


def _facts_of(key: ContactKey) -> _Facts:
    day, agent, store, channel, campaign, segment, experiment, arm, shard = key
    return _Facts(
        day=day,
        dims={
            "agent": agent,
            "store": store,
            "channel": channel,
            "campaign": campaign,
            "segment": segment,
        },
        experiment=experiment,
        arm=arm,
        shard=shard,
    )


def _key(facts: _Facts, grain: Sequence[str], values: Mapping[str, str]) -> tuple[Any, ...]:
    keys = [values[d] for d in grain] + [""] * (3 - len(grain))
    arm = (facts.experiment, facts.arm) if tuple(grain) in ARM_GRAINS else ("", "")
    return (grain_name(grain), facts.day, *keys, *arm, facts.shard)


def _upsert(session: Session, rows: list[tuple[Any, ...]]) -> None:
    cursor = session.connection().connection.cursor()
    try:
        upsert_with(cursor, rows, sqlite=session.get_bind().dialect.name == "sqlite")
    finally:
        cursor.close()


def upsert_with(cursor: Any, rows: list[tuple[Any, ...]], *, sqlite: bool) -> None:
    """Add rollup rows (keys distinct) on a DB-API cursor, in its transaction."""
    if not rows:
        return
    # Every writer takes the row locks in the same (sorted) order: no deadlock on PostgreSQL.
    rows.sort()
    if not sqlite:
        rows = [(r[0], date.fromisoformat(r[1]), *r[2:]) for r in rows]
    insert_values(cursor, _UPSERT_HEAD, rows, _UPSERT_TAIL, sqlite=sqlite, pg_types=_UPSERT_TYPES)


def record_decision(session: Session, decision: Decision) -> None:
    """The decision hook: count the contact, in the decision's transaction (the batched
    impressions count their decisions together, nextbest/impressions.py)."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    add_contacts(session, contact_rows(decision, sqlite=sqlite))


def contact_rows(decision: Decision, *, sqlite: bool) -> list[tuple[Any, ...]]:
    """The rollup rows one served decision adds (one contact on every grain without offers)."""
    return _contact_rows(_facts_for(decision, sqlite=sqlite), 1)


def contact_rows_for(key: ContactKey, decisions: int) -> list[tuple[Any, ...]]:
    """The rollup rows of ``decisions`` served decisions that share ``key``."""
    return _contact_rows(_facts_of(key), decisions)


def _contact_rows(facts: _Facts, decisions: int) -> list[tuple[Any, ...]]:
    zero = (0,) * (len(MEASURES) - 1)
    return [(*_key(facts, g, facts.dims), decisions, *zero) for g in _CONTACT_GRAINS]


def add_contacts(session: Session, rows: Iterable[tuple[Any, ...]]) -> None:
    """Add rows built by ``contact_rows`` (of one decision or of a batch of them): rows with
    the same key are summed first, so a batch costs one upsert per distinct key."""
    _upsert(session, merged(rows))


def merged(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rollup rows with the same key summed into one."""
    width = len(MEASURES)
    sums: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        key = row[:-width]
        total = sums.get(key)
        if total is None:
            sums[key] = list(row[-width:])
        else:
            for i, value in enumerate(row[-width:]):
                total[i] += value
    return [(*key, *measures) for key, measures in sums.items()]


_PRIOR_SQL = "SELECT offer_id, outcome FROM outcomes WHERE decision_id = ? AND id <> ?"
LOCK_SQL = "SELECT id FROM decisions WHERE id = ? FOR NO KEY UPDATE"
_OFFERS_SQL = "SELECT offers FROM decisions WHERE id = ?"


class DecisionKeys(Protocol):
    """What the counts of a decision are attributed to (a Decision row, or a lighter copy)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def user_id(self) -> str: ...
    @property
    def store_id(self) -> str | None: ...
    @property
    def channel(self) -> str: ...
    @property
    def campaign_id(self) -> str | None: ...
    @property
    def segment(self) -> str | None: ...
    @property
    def experiment(self) -> str | None: ...
    @property
    def arm(self) -> str | None: ...


def record_outcome(
    session: Session, decision: Decision, outcome: Outcome, subscription: Subscription | None
) -> None:
    """The outcome hook: count what this outcome is the first of. Same transaction as the
    outcome (already flushed, so it has its id)."""
    if session.get_bind().dialect.name != "sqlite":
        # Outcomes of one decision count one after the other (SQLite has a single writer).
        # NO KEY UPDATE: the outcome's foreign key already holds KEY SHARE on this row, which
        # a plain FOR UPDATE would wait on (two concurrent outcomes would deadlock).
        fetch(session, LOCK_SQL, (decision.id,))
    prior = fetch(session, _PRIOR_SQL, (decision.id, outcome.id))
    found = fetch(session, _OFFERS_SQL, (decision.id,))
    shown = decode_offers(found[0][0] if found else None).get(outcome.offer_id)
    rows = outcome_rows(
        decision,
        kind=outcome.outcome,
        offer_id=outcome.offer_id,
        price=subscription.price if subscription else None,
        prior=[(offer_id, kind) for offer_id, kind in prior],
        estimate=expected(shown) if shown is not None else None,
        sqlite=session.get_bind().dialect.name == "sqlite",
    )
    upsert_rollups(session, rows)


def outcome_rows(
    decision: DecisionKeys,
    *,
    kind: str,
    offer_id: str,
    price: float | None,
    prior: Sequence[tuple[str, str]],
    estimate: float | None,
    sqlite: bool,
) -> list[tuple[Any, ...]]:
    """The rollup rows an outcome adds: what it is the first of, given the decision's earlier
    outcomes ``prior`` (offer id, kind), the sale's ``price`` (accepted) and the ranking's
    estimate before learning for the offer (``estimate``). Empty if it is the first of
    nothing."""
    first_presented = kind in PRESENTED_KINDS and not any(
        o == offer_id and k in PRESENTED_KINDS for o, k in prior
    )
    first_accepted = kind == "accepted" and not any(
        o == offer_id and k == "accepted" for o, k in prior
    )
    if not (first_presented or first_accepted):
        return []
    contact_presented = first_presented and not any(k in PRESENTED_KINDS for _, k in prior)
    contact_accepted = first_accepted and not any(k == "accepted" for _, k in prior)
    revenue = round(price * 100) if first_accepted and price is not None else 0
    expected = round(estimate * 1e6) if first_presented and estimate is not None else 0
    facts = _facts_for(decision, sqlite=sqlite)
    values = {**facts.dims, "offer": offer_id}
    offer_measures = (int(first_presented), int(first_accepted), revenue, expected)
    contact_measures = (0, int(contact_presented), int(contact_accepted))
    no_contacts = (0, 0, 0)  # grains with the offer dimension count offers, not contacts
    return [
        (
            *_key(facts, g, values),
            *(no_contacts if "offer" in g else contact_measures),
            *offer_measures,
        )
        for g in (*PAIR_GRAINS, LEARNING_GRAIN)
    ]


def upsert_rollups(session: Session, rows: Iterable[tuple[Any, ...]]) -> None:
    """Add rollup rows (of one outcome or of many: rows with the same key are summed first)."""
    add_contacts(session, rows)


# ---------------------------------------------------------------------------------------------
# Rebuild from the ledgers


class RebuildReport(msgspec.Struct, frozen=True, kw_only=True):
    rows: int
    seconds: float
    # Keys whose counts differed from the rollups before the rebuild (with check=True).
    differences: int | None = None


_PRESENTED_SQL = ", ".join(f"'{k}'" for k in sorted(PRESENTED_KINDS))


def day_sql(dialect: str, column: str) -> str:
    offset = REPORT_TZ.utcoffset(None)
    assert offset is not None
    minutes = int(offset.total_seconds() // 60)
    if dialect == "sqlite":
        return f"date({column}, '{minutes:+d} minutes')"
    return f"CAST(({column} AT TIME ZONE 'UTC') + INTERVAL '{minutes} minutes' AS DATE)"


def _shown_sql(dialect: str, position: int) -> str:
    """Item ``position`` of what ``decisions.offers`` (d) holds for offer ``p.offer_id``
    (nextbest/storage/shown.py): 2 the probability served, 3 the one before learning."""
    if dialect == "sqlite":
        return f"json_extract(d.offers, '$.\"' || p.offer_id || '\"[{position}]')"
    return f"CAST(d.offers::json -> p.offer_id ->> {position} AS DOUBLE PRECISION)"


def _rebuild_statements(dialect: str) -> list[str]:
    day = day_sql(dialect, "d.created_at")
    temp = "CREATE TEMP TABLE"
    dims = (
        "d.user_id AS agent, COALESCE(d.store_id, '') AS store, d.channel AS channel, "
        "COALESCE(d.campaign_id, '') AS campaign, COALESCE(d.segment, '') AS segment, "
        "COALESCE(d.experiment, '') AS experiment, COALESCE(d.arm, '') AS arm"
    )
    statements = [
        "DROP TABLE IF EXISTS rb_pairs",
        "DROP TABLE IF EXISTS rb_facts",
        # One row per (decision, offer) with outcomes: was it presented, accepted, the first
        # acceptance (whose sale carries the price).
        f"{temp} rb_pairs AS SELECT o.decision_id AS decision_id, o.offer_id AS offer_id, "
        f"MAX(CASE WHEN o.outcome IN ({_PRESENTED_SQL}) THEN 1 ELSE 0 END) AS presented, "
        "MAX(CASE WHEN o.outcome = 'accepted' THEN 1 ELSE 0 END) AS accepted, "
        "MIN(CASE WHEN o.outcome = 'accepted' THEN o.id END) AS first_accept "
        "FROM outcomes o GROUP BY o.decision_id, o.offer_id",
        # Facts: one row per decision (offer '') and one per offer presented.
        f"{temp} rb_facts AS "
        f"SELECT {day} AS day, {dims}, '' AS offer, 1 AS decisions, "
        "COALESCE(c.presented, 0) AS contacts_presented, "
        "COALESCE(c.accepted, 0) AS contacts_accepted, 0 AS presented, 0 AS accepted, "
        "0 AS revenue_fen, 0 AS expected_micro "
        "FROM decisions d LEFT JOIN (SELECT decision_id, MAX(presented) AS presented, "
        "MAX(accepted) AS accepted FROM rb_pairs GROUP BY decision_id) c "
        "ON c.decision_id = d.id "
        "UNION ALL "
        f"SELECT {day} AS day, {dims}, p.offer_id AS offer, 0, 0, 0, p.presented, p.accepted, "
        "COALESCE(CAST(ROUND(s.price * 100) AS BIGINT), 0), "
        f"CAST(ROUND(COALESCE({_shown_sql(dialect, 3)}, {_shown_sql(dialect, 2)}, 0) "
        "* 1000000) AS BIGINT) "
        "FROM rb_pairs p JOIN decisions d ON d.id = p.decision_id "
        "LEFT JOIN subscriptions s ON s.outcome_id = p.first_accept "
        "WHERE p.presented = 1",
        "DELETE FROM report_rollups",
    ]
    sums = ", ".join(f"SUM({m})" for m in MEASURES)
    for grain in (*PAIR_GRAINS, LEARNING_GRAIN):
        keys = [*grain, *(["''"] * (3 - len(grain)))]
        where = " WHERE offer <> ''" if "offer" in grain else ""
        arm, by_arm = ("experiment, arm", ", experiment, arm")
        if grain not in ARM_GRAINS:
            arm, by_arm = "'', ''", ""
        statements.append(
            f"INSERT INTO report_rollups ({', '.join(_KEY_COLUMNS + MEASURES)}) "
            f"SELECT '{grain_name(grain)}', day, {', '.join(keys)}, {arm}, 0, {sums} "
            f"FROM rb_facts{where} GROUP BY day, {', '.join(grain)}{by_arm}"
        )
    statements += ["DROP TABLE rb_pairs", "DROP TABLE rb_facts"]
    return statements


def rebuild(db: Database, *, check: bool = False) -> RebuildReport:
    """Recompute every rollup row from the ledgers, in one write transaction.

    On PostgreSQL the rollup table is locked first: decisions and outcomes arriving meanwhile
    wait and count on top of the rebuilt rows (their ledger rows are not yet visible to it).
    ``check``: compare with the rollups as they were, report the number of keys that
    differed, and keep the old rows (nothing is written).
    """
    started = time.perf_counter()

    class _Rollback(Exception):
        pass

    result: RebuildReport | None = None
    try:
        with db.write() as session:
            dialect = session.get_bind().dialect.name
            if dialect != "sqlite":
                session.connection().exec_driver_sql(
                    "LOCK TABLE report_rollups IN SHARE ROW EXCLUSIVE MODE"
                )
            before = snapshot(session) if check else None
            for statement in _rebuild_statements(dialect):
                session.connection().exec_driver_sql(statement)
            rows = int(session.scalar(select(func.count()).select_from(ReportRollup)) or 0)
            differences = None
            if before is not None:
                after = snapshot(session)
                differences = sum(
                    1 for key in before.keys() | after.keys() if before.get(key) != after.get(key)
                )
            result = RebuildReport(
                rows=rows,
                seconds=round(time.perf_counter() - started, 2),
                differences=differences,
            )
            if check:
                raise _Rollback
    except _Rollback:
        pass
    assert result is not None
    return result


def snapshot(session: Session) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Every rollup key (shards summed) with its measures; all-zero keys left out."""
    columns = [getattr(ReportRollup, c) for c in _KEY_COLUMNS if c != "shard"]
    query = select(*columns, *(func.sum(getattr(ReportRollup, m)) for m in MEASURES)).group_by(
        *columns
    )
    found: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for row in session.execute(query):
        measures = tuple(int(v) for v in row[len(columns) :])
        if any(measures):
            found[tuple(row[: len(columns)])] = measures
    return found


# ---------------------------------------------------------------------------------------------
# Reads


class Measures(msgspec.Struct, kw_only=True):
    decisions: int = 0
    contacts_presented: int = 0
    contacts_accepted: int = 0
    presented: int = 0
    accepted: int = 0
    revenue_fen: int = 0
    expected_micro: int = 0

    def add(self, other: Measures) -> None:
        for m in MEASURES:
            setattr(self, m, getattr(self, m) + getattr(other, m))


class RollupRow(msgspec.Struct, kw_only=True):
    keys: dict[str, str]  # dimension -> value ('' for none)
    day: date | None
    arm: str | None
    measures: Measures


def read_rollups(
    session: Session,
    *,
    dims: Sequence[str],
    since: date,
    until: date,
    filters: Mapping[str, str] | None = None,
    by_day: bool = False,
    by_arm: bool = False,
    experiment: str | None = None,
    arms: Sequence[str] | None = None,
    within: Mapping[str, Collection[str] | Select[Any]] | None = None,
) -> list[RollupRow]:
    """Sums over the days ``since``..``until`` (inclusive), grouped by ``dims`` (and the day,
    the experiment arm); ``filters`` keep one value of a dimension, ``within`` several (a list,
    or a subquery that returns them: still one query). ``dims`` and the dimensions filtered
    either way are at most two together; the arm is kept by ARM_GRAINS only."""
    filters = dict(filters or {})
    within = dict(within or {})
    grain, pair = grain_for({*dims, *filters, *within})
    if (by_arm or experiment is not None or arms is not None) and pair not in ARM_GRAINS:
        raise ValueError(f"the grain {grain} does not keep experiment arms apart")
    column = {d: getattr(ReportRollup, f"k{i + 1}") for i, d in enumerate(pair)}
    groups: list[Any] = [column[d] for d in dims]
    if by_day:
        groups.append(ReportRollup.day)
    if by_arm:
        groups.append(ReportRollup.arm)
    query = select(*groups, *(func.sum(getattr(ReportRollup, m)).label(m) for m in MEASURES)).where(
        ReportRollup.grain == grain, ReportRollup.day >= since, ReportRollup.day <= until
    )
    for dim, value in filters.items():
        query = query.where(column[dim] == value)
    for dim, values in within.items():
        query = query.where(column[dim].in_(values))
    if experiment is not None:
        query = query.where(ReportRollup.experiment == experiment)
    if arms is not None:
        query = query.where(ReportRollup.arm.in_(list(arms)))
    if groups:
        query = query.group_by(*groups).order_by(*groups)
    out: list[RollupRow] = []
    for row in session.execute(query):
        values = list(row)
        keys = {d: str(values[i]) for i, d in enumerate(dims)}
        i = len(dims)
        day = None
        if by_day:
            day = _as_date(values[i])
            i += 1
        arm = None
        if by_arm:
            arm = str(values[i])
            i += 1
        sums = values[i:]
        if all(v is None for v in sums):  # no rows at all: SUM over nothing
            continue
        measures = Measures(**{m: int(v or 0) for m, v in zip(MEASURES, sums, strict=True)})
        out.append(RollupRow(keys=keys, day=day, arm=arm, measures=measures))
    return out


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def learning_counts(session: Session, since: date) -> dict[CellKey, CellCounts]:
    """Presented, accepted and expected acceptances per (channel, offer, segment) since a day."""
    query = (
        select(
            ReportRollup.k1,
            ReportRollup.k2,
            ReportRollup.k3,
            func.sum(ReportRollup.presented),
            func.sum(ReportRollup.accepted),
            func.sum(ReportRollup.expected_micro),
        )
        .where(ReportRollup.grain == grain_name(LEARNING_GRAIN), ReportRollup.day >= since)
        .group_by(ReportRollup.k1, ReportRollup.k2, ReportRollup.k3)
    )
    return {
        (channel, offer, segment): CellCounts(
            presented=int(n or 0), accepted=int(k or 0), expected=int(e or 0) / 1e6
        )
        for channel, offer, segment, n, k, e in session.execute(query)
        if n
    }


def utc_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """The UTC instants that begin ``since`` and end ``until`` (report days, inclusive)."""
    start = datetime(since.year, since.month, since.day, tzinfo=REPORT_TZ).astimezone(UTC)
    end_day = until + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=REPORT_TZ).astimezone(UTC)
    return start, end
