"""Supervisor reports: conversion, the funnel, revenue, provisioning failures, commission audit
flags, agents against the team, and the model's lift over the control group.

Counts of contacts and offers come from the rollups (nextbest/rollups.py), kept current with
every decision and outcome; the sale-level figures (provisioned, still active at 90 days,
failures, audit flags) come from the sales ledger, which holds one row per sale, not per
outcome. Every rate is None where there is nothing to divide by, never an error.

Each report is a Struct with ``columns`` (the order of a table) and ``rows``; ``to_csv`` turns
any of them into CSV.

A supervisor bound to a store or a team (``ReportScope``, nextbest/keys.py) sees that store's
or team's rows only. On the rollups a store is the ``store`` dimension and a team the ``agent``
dimension kept to the team's members, so the scope takes one of the two dimensions a report
can combine. The sales-ledger figures keep the sales made in the store or by the team's
members. The lift cannot be cut either way and is refused to a scoped supervisor.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from statistics import NormalDist
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy import Select, and_, case, distinct, func, inspect, literal_column, or_, select
from sqlalchemy.orm import Session

from nextbest.audit import AUDIT_FLAGS
from nextbest.clock import Clock
from nextbest.errors import BadInput, ServiceError
from nextbest.keys import ReportScope, team_members
from nextbest.rollups import (
    DIMENSIONS,
    Measures,
    RollupRow,
    day_sql,
    read_rollups,
    report_day,
    utc_bounds,
)
from nextbest.sales import in_scope
from nextbest.storage.db import Database
from nextbest.storage.models import ApiKey, AuditFlag, Decision, Subscription

__all__ = [
    "AgentRow",
    "AgentsReport",
    "AuditFlagRow",
    "AuditReport",
    "ConversionReport",
    "ConversionRow",
    "FailureRow",
    "FailuresReport",
    "FunnelReport",
    "FunnelRow",
    "LiftReport",
    "LiftRow",
    "OutOfScope",
    "ReportService",
    "RevenueReport",
    "RevenueRow",
    "lift_interval",
    "rate",
    "splits",
    "to_csv",
    "wilson",
]

DEFAULT_DAYS = 30
# Sales that reached the operator's systems (cancelled ones were active first).
DELIVERED = ("active", "cancelled")

Dim = Literal["agent", "store", "channel", "offer", "campaign", "segment", "day"]

# ---------------------------------------------------------------------------------------------
# Statistics (pure)


def rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n > 0 else None


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion k/n; None for n = 0."""
    if n <= 0:
        return None
    z = _z(confidence)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def lift_interval(
    k1: int, n1: int, k0: int, n0: int, confidence: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """Ratio of two rates (k1/n1) / (k0/n0) and its interval (log method, Katz); None where a
    rate is undefined or a count is zero (no interval from zero successes)."""
    if n1 <= 0 or n0 <= 0 or k0 <= 0:
        return None, None, None
    ratio = (k1 / n1) / (k0 / n0)
    if k1 <= 0:
        return round(ratio, 4), None, None
    z = _z(confidence)
    se = math.sqrt(max(0.0, 1 / k1 - 1 / n1 + 1 / k0 - 1 / n0))
    log_ratio = math.log(ratio)
    return (
        round(ratio, 4),
        round(math.exp(log_ratio - z * se), 4),
        round(math.exp(log_ratio + z * se), 4),
    )


# ---------------------------------------------------------------------------------------------
# Report shapes. Dimension fields a report was not asked for are left out (UNSET).


class _Dims(msgspec.Struct, kw_only=True):
    day: date | UnsetType = UNSET
    agent: str | UnsetType | None = UNSET
    store: str | UnsetType | None = UNSET
    channel: str | UnsetType | None = UNSET
    offer: str | UnsetType | None = UNSET
    campaign: str | UnsetType | None = UNSET
    segment: str | UnsetType | None = UNSET


class ConversionRow(_Dims, kw_only=True):
    presented: int  # offers put to the customer (each offer of each contact once)
    accepted: int  # of those, accepted
    rate: float | None  # accepted / presented
    revenue: float  # monthly price of the sales, yuan


class ConversionReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    by: list[str]
    filters: dict[str, str]
    columns: list[str]
    rows: list[ConversionRow]
    total: ConversionRow
    # The store or team the rows are limited to (a scoped supervisor): {"store": ...} or
    # {"team": ...}; empty for everything.
    scope: dict[str, str] = msgspec.field(default_factory=dict)


class FunnelRow(_Dims, kw_only=True):
    targeted: int | None  # customers on campaign target lists (None: no campaign data)
    reached: int  # contacts: decisions served
    presented: int  # contacts in which at least one offer was presented
    accepted: int  # contacts with at least one acceptance
    provisioned: int  # contacts with a sale the operator's systems activated
    matured: int  # contacts with a delivered sale at least `retention_days` old
    retained: int  # of those, with a sale still active `retention_days` after it was made
    presented_rate: float | None  # presented / reached
    accepted_rate: float | None  # accepted / presented
    provisioned_rate: float | None  # provisioned / accepted
    retained_rate: float | None  # retained / matured


class FunnelReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    by: list[str]
    retention_days: int
    targeted_source: str
    columns: list[str]
    rows: list[FunnelRow]
    scope: dict[str, str] = msgspec.field(default_factory=dict)  # as ConversionReport's


class RevenueRow(_Dims, kw_only=True):
    sales: int
    revenue: float  # monthly price of the sales, yuan
    average_price: float | None


class RevenueReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    by: list[str]
    filters: dict[str, str]
    columns: list[str]
    rows: list[RevenueRow]
    total: RevenueRow
    scope: dict[str, str] = msgspec.field(default_factory=dict)  # as ConversionReport's


class AgentRow(msgspec.Struct, kw_only=True):
    agent: str
    presented: int
    accepted: int
    rate: float | None
    low: float | None  # Wilson interval of the rate
    high: float | None
    # What the ranking expected from the customers this agent served (before learning): a
    # rate far below it with an ordinary customer mix is a skill gap, not bad luck with leads.
    expected_rate: float | None
    gap_points: float | None  # (rate - team rate) in percentage points
    verdict: Literal["below", "within", "above", "no_data"]


class AgentsReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    filters: dict[str, str]
    confidence: float
    team_presented: int
    team_accepted: int
    team_rate: float | None
    columns: list[str]
    rows: list[AgentRow]
    scope: dict[str, str] = msgspec.field(default_factory=dict)  # as ConversionReport's


class LiftRow(_Dims, kw_only=True):
    model_n: int
    model_accepted: int
    model_rate: float | None
    control_n: int
    control_accepted: int
    control_rate: float | None
    lift: float | None  # model_rate / control_rate
    low: float | None
    high: float | None
    # 'higher' / 'lower': the interval lies entirely above / below 1.
    verdict: Literal["higher", "lower", "unclear", "no_data"]


class LiftReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    by: list[str]
    experiment: str | None
    unit: Literal["contacts", "offers"]
    confidence: float
    columns: list[str]
    rows: list[LiftRow]


class FailureRow(msgspec.Struct, kw_only=True):
    day: date | UnsetType = UNSET
    offer: str | UnsetType = UNSET
    store: str | UnsetType | None = UNSET
    agent: str | UnsetType = UNSET
    channel: str | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET
    sales: int
    failed: int
    share: float | None  # failed / sales
    revenue_lost: float  # monthly price of the failed sales, yuan


class FailuresReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    by: list[str]
    columns: list[str]
    rows: list[FailureRow]
    scope: dict[str, str] = msgspec.field(default_factory=dict)  # as ConversionReport's


class AuditFlagRow(msgspec.Struct, kw_only=True):
    flag: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    agent: str | UnsetType = UNSET
    store: str | UnsetType | None = UNSET
    offer: str | UnsetType = UNSET
    channel: str | UnsetType = UNSET
    flags: int
    sales_flagged: int


class AuditReport(msgspec.Struct, kw_only=True):
    since: date
    until: date
    by: list[str]
    columns: list[str]
    rows: list[AuditFlagRow]
    scope: dict[str, str] = msgspec.field(default_factory=dict)  # as ConversionReport's


Report = (
    ConversionReport
    | FunnelReport
    | RevenueReport
    | AgentsReport
    | LiftReport
    | FailuresReport
    | AuditReport
)


def to_csv(report: Report) -> str:
    """The report's rows as CSV, in its ``columns`` order (no value: empty cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(report.columns)
    for row in report.rows:
        values = msgspec.structs.asdict(row)
        writer.writerow([_cell(values.get(c)) for c in report.columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None or value is UNSET:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------
# The service


def _value(raw: str) -> str | None:
    return raw or None


def _dims(row: RollupRow, by: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for dim in by:
        values[dim] = row.day if dim == "day" else _value(row.keys[dim])
    return values


class OutOfScope(ServiceError):
    """A scoped supervisor asked for rows outside their store or team, or for a report that
    cannot be limited to them."""

    status = 403


_EVERYTHING = ReportScope()


def _bound(scope: ReportScope) -> dict[str, str]:
    """The rollup dimension each binding of a scope takes, and how to name the binding."""
    bound: dict[str, str] = {}
    if scope.store_id is not None:
        bound["store"] = f"store {scope.store_id}"
    if scope.team_id is not None:
        bound["agent"] = f"team {scope.team_id} (its agents)"
    return bound


def _scope_out(scope: ReportScope) -> dict[str, str]:
    out: dict[str, str] = {}
    if scope.store_id is not None:
        out["store"] = scope.store_id
    if scope.team_id is not None:
        out["team"] = scope.team_id
    return out


def _limits(scope: ReportScope) -> tuple[dict[str, str], dict[str, Select[str]]]:
    """The scope as ``read_rollups`` filters: a store is one value of the store dimension, a
    team the agent dimension kept to its members (a subquery, so still one query)."""
    filters = {"store": scope.store_id} if scope.store_id is not None else {}
    within = {"agent": team_members(scope.team_id)} if scope.team_id is not None else {}
    return filters, within


def splits(scope: ReportScope | None = None) -> tuple[str, ...]:
    """The dimensions a rollup report can be split by, one at a time, within a scope."""
    bound = _bound(scope if scope is not None else _EVERYTHING)
    return tuple(d for d in DIMENSIONS if len({d, *bound}) <= 2)


class _RollupQuery(msgspec.Struct, frozen=True):
    since: date
    until: date
    by: list[str]
    filters: dict[str, str]
    scope: ReportScope
    rows: list[RollupRow]
    total: Measures


# The days a report may ask for: the first and last day any ledger could hold (beyond them a
# day's bounds in UTC would not even be a date).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)


class ReportService:
    def __init__(
        self, db: Database, clock: Clock, settle: Callable[[], object] | None = None
    ) -> None:
        """``settle``: waits for this process's batched impressions (nextbest/impressions.py),
        so a report counts every decision this node has answered."""
        self.db = db
        self.clock = clock
        self.settle = settle

    # -- parameters --

    def period(self, since: date | None, until: date | None) -> tuple[date, date]:
        """Default: the last 30 days up to today (report days, China Standard Time). Every
        report starts here, so this is also where pending impressions are settled."""
        if self.settle is not None:
            self.settle()
        for name, value in (("since", since), ("until", until)):
            if value is not None and not EARLIEST_DAY <= value <= LATEST_DAY:
                raise BadInput(
                    f"{name}: {value} is outside {EARLIEST_DAY} to {LATEST_DAY}", field=name
                )
        until = until or report_day(self.clock.now())
        since = since or until - timedelta(days=DEFAULT_DAYS - 1)
        if since > until:
            raise BadInput(f"since: {since} is after until ({until})", field="since")
        return since, until

    @staticmethod
    def _by(
        by: Sequence[str],
        filters: Mapping[str, str],
        allowed: Sequence[str],
        scope: ReportScope = _EVERYTHING,
    ) -> list[str]:
        by = list(dict.fromkeys(by))
        for dim in by:
            if dim not in allowed:
                raise BadInput(
                    f"by: {dim!r} is not available here; use {', '.join(allowed)}", field="by"
                )
        dims = {d for d in by if d != "day"} | set(filters)
        if len(dims) > 2:
            raise BadInput(
                "by: at most two dimensions can be combined, counting the filtered ones "
                f"(asked: {', '.join(sorted(dims))})",
                field="by",
            )
        bound = _bound(scope)
        if len(dims | bound.keys()) > 2:
            takes = "one" if len(bound) == 1 else "both"
            raise BadInput(
                f"by: your reports are limited to {' and '.join(bound.values())}, which takes "
                f"{takes} of the two dimensions a report can combine, counting the filtered "
                f"ones (asked: {', '.join(sorted(dims))}); split by fewer",
                field="by",
            )
        return by

    def _check_filters(self, filters: Mapping[str, str], scope: ReportScope) -> None:
        """A filter outside the scope is refused rather than answered with an empty table,
        which would read as "no sales there"."""
        store = filters.get("store")
        if scope.store_id is not None and store is not None and store != scope.store_id:
            raise OutOfScope(
                f"store: your reports are limited to store {scope.store_id}; "
                f"{store!r} is outside it",
                field="store",
            )
        agent = filters.get("agent")
        if scope.team_id is not None and agent is not None:
            with self.db.read() as session:
                member = session.scalar(
                    team_members(scope.team_id).where(ApiKey.user_id == agent).limit(1)
                )
            if member is None:
                raise OutOfScope(
                    f"agent: your reports are limited to team {scope.team_id}; "
                    f"{agent!r} is not in it",
                    field="agent",
                )

    # -- conversion, revenue --

    def conversion(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        by: Sequence[str] = (),
        filters: Mapping[str, str] | None = None,
        scope: ReportScope | None = None,
    ) -> ConversionReport:
        q = self._rollup_query(since, until, by, filters, scope)
        return ConversionReport(
            since=q.since,
            until=q.until,
            by=q.by,
            filters=q.filters,
            columns=[*q.by, "presented", "accepted", "rate", "revenue"],
            rows=[ConversionRow(**_dims(r, q.by), **_conversion(r.measures)) for r in q.rows],
            total=ConversionRow(**_conversion(q.total)),
            scope=_scope_out(q.scope),
        )

    def revenue(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        by: Sequence[str] = (),
        filters: Mapping[str, str] | None = None,
        scope: ReportScope | None = None,
    ) -> RevenueReport:
        q = self._rollup_query(since, until, by, filters, scope)
        return RevenueReport(
            since=q.since,
            until=q.until,
            by=q.by,
            filters=q.filters,
            columns=[*q.by, "sales", "revenue", "average_price"],
            rows=[RevenueRow(**_dims(r, q.by), **_revenue(r.measures)) for r in q.rows],
            total=RevenueRow(**_revenue(q.total)),
            scope=_scope_out(q.scope),
        )

    def _rollup_query(
        self,
        since: date | None,
        until: date | None,
        by: Sequence[str],
        filters: Mapping[str, str] | None,
        scope: ReportScope | None,
    ) -> _RollupQuery:
        """The checked parameters and rows of a conversion or revenue table."""
        since, until = self.period(since, until)
        checked = dict(filters or {})
        scope = scope if scope is not None else _EVERYTHING
        by = self._by(by, checked, (*DIMENSIONS, "day"), scope)
        self._check_filters(checked, scope)
        rows, total = self._rollups(since, until, by, checked, scope)
        return _RollupQuery(since, until, list(by), checked, scope, rows, total)

    def _rollups(
        self,
        since: date,
        until: date,
        by: Sequence[str],
        filters: Mapping[str, str],
        scope: ReportScope,
    ) -> tuple[list[RollupRow], Measures]:
        dims = [d for d in by if d != "day"]
        forced, within = _limits(scope)
        with self.db.read() as session:
            rows = read_rollups(
                session,
                dims=dims,
                since=since,
                until=until,
                filters={**filters, **forced},
                by_day="day" in by,
                within=within,
            )
        total = Measures()
        for row in rows:
            total.add(row.measures)
        if "day" in by and by[0] == "day":
            rows.sort(key=lambda r: (r.day or date.min, *(r.keys[d] for d in dims)))
        return rows, total

    # -- funnel --

    def funnel(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        by: Sequence[str] = (),
        retention_days: int = 90,
        scope: ReportScope | None = None,
    ) -> FunnelReport:
        since, until = self.period(since, until)
        scope = scope if scope is not None else _EVERYTHING
        by = self._by(by, {}, ("agent", "store", "channel", "campaign", "segment", "day"), scope)
        if len([d for d in by if d != "day"]) > 1:
            raise BadInput("by: the funnel splits by one dimension (and the day)", field="by")
        if retention_days < 1:
            raise BadInput("retention_days: must be at least 1", field="retention_days")
        dims = [d for d in by if d != "day"]
        # The campaign queue's own figures: targets, and calls the customer answered. They
        # apply to the whole funnel and to a split by campaign (a target has no agent, store
        # or day), and so never within a store's or team's scope.
        bound = _bound(scope)
        use_queue = by in ([], ["campaign"]) and not bound
        forced, within = _limits(scope)
        with self.db.read() as session:
            contacts = read_rollups(
                session,
                dims=["campaign"] if use_queue else dims,
                since=since,
                until=until,
                filters=forced,
                by_day="day" in by,
                within=within,
            )
            sales = self._sales_funnel(session, since, until, by, retention_days, scope)
            queue = _campaign_queue(session, since, until) if use_queue else None
        keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in contacts:
            m = row.measures
            campaign = _value(row.keys.get("campaign", ""))
            entry = {
                "targeted": None,
                "reached": m.decisions,
                "presented": m.contacts_presented,
                "accepted": m.contacts_accepted,
            }
            if queue is not None and campaign in queue:
                entry["targeted"], entry["reached"] = queue[campaign]
            key: tuple[Any, ...] = tuple(_dims(row, by).values())
            if use_queue:
                key = (campaign,) if by == ["campaign"] else ()
            _merge(keyed, key, entry)
        for campaign, (targeted, reached) in (queue or {}).items():
            key = (campaign,) if by == ["campaign"] else ()  # a campaign without contacts
            if not any(r.keys.get("campaign") == campaign for r in contacts):
                entry = {"targeted": targeted, "reached": reached, "presented": 0, "accepted": 0}
                _merge(keyed, key, entry)
        for key, (provisioned, matured, retained) in sales.items():
            entry = keyed.setdefault(
                key, {"targeted": None, "reached": 0, "presented": 0, "accepted": 0}
            )
            entry.update(provisioned=provisioned, matured=matured, retained=retained)
        if not by and not keyed:
            keyed[()] = {"targeted": None, "reached": 0, "presented": 0, "accepted": 0}
        rows = []
        for key in sorted(keyed, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            e = keyed[key]
            provisioned = e.get("provisioned", 0)
            matured = e.get("matured", 0)
            retained = e.get("retained", 0)
            rows.append(
                FunnelRow(
                    **dict(zip(by, key, strict=True)),
                    targeted=e["targeted"],
                    reached=e["reached"],
                    presented=e["presented"],
                    accepted=e["accepted"],
                    provisioned=provisioned,
                    matured=matured,
                    retained=retained,
                    presented_rate=rate(e["presented"], e["reached"]),
                    accepted_rate=rate(e["accepted"], e["presented"]),
                    provisioned_rate=rate(provisioned, e["accepted"]),
                    retained_rate=rate(retained, matured),
                )
            )
        if queue is not None:
            source = (
                "campaigns: targeted is the target lists of the campaigns that ran in the period "
                "and reached the calls their customers answered (the call queue); contacts "
                "outside campaigns are reached when a decision is served"
            )
        else:
            where = f"within {' and '.join(bound.values())}" if bound else "for this split"
            source = (
                f"decisions: targeted is not known {where}; reached counts every "
                "decision served (a contact at the counter, on a call in, or a call out)"
            )
        return FunnelReport(
            since=since,
            until=until,
            by=by,
            retention_days=retention_days,
            targeted_source=source,
            columns=[*by, *_FUNNEL_COLUMNS],
            rows=rows,
            scope=_scope_out(scope),
        )

    def _sales_funnel(
        self,
        session: Session,
        since: date,
        until: date,
        by: Sequence[str],
        retention_days: int,
        scope: ReportScope,
    ) -> dict[tuple[Any, ...], tuple[int, int, int]]:
        """Per group: contacts with a delivered sale, with a sale old enough to tell, and with
        one still active ``retention_days`` after it was made (the sale's day and its seller)."""
        start, end = utc_bounds(since, until)
        cutoff = self.clock.now() - timedelta(days=retention_days)
        dialect = session.get_bind().dialect.name
        s = Subscription
        if dialect == "sqlite":
            lasted = func.julianday(s.cancelled_at) - func.julianday(s.created_at) >= retention_days
        else:
            lasted = s.cancelled_at - s.created_at >= timedelta(days=retention_days)
        delivered = s.status.in_(DELIVERED)
        matured = and_(delivered, s.created_at <= cutoff)
        retained = and_(matured, or_(s.cancelled_at.is_(None), lasted))
        columns = _sale_columns(dialect)
        groups = [columns[d] for d in by]
        query = select(
            *groups,
            func.count(distinct(case((delivered, s.decision_id)))),
            func.count(distinct(case((matured, s.decision_id)))),
            func.count(distinct(case((retained, s.decision_id)))),
        ).where(s.created_at >= start, s.created_at < end, *in_scope(scope))
        if {"campaign", "segment"} & set(by):
            query = query.join(Decision, Decision.id == s.decision_id)
        if groups:
            query = query.group_by(*groups)
        found: dict[tuple[Any, ...], tuple[int, int, int]] = {}
        for row in session.execute(query):
            values = list(row)
            key = tuple(
                _day(v) if d == "day" else _value(str(v or ""))
                for d, v in zip(by, values, strict=False)
            )
            p, m, r = (int(v or 0) for v in values[len(by) :])
            if p or m or r:
                found[key] = (p, m, r)
        return found

    # -- agents --

    def agents(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        filters: Mapping[str, str] | None = None,
        confidence: float = 0.95,
        scope: ReportScope | None = None,
    ) -> AgentsReport:
        """The team is everyone in the filter and the scope: a team-bound supervisor's agents
        are compared with their own team, a store-bound one's with their store."""
        since, until = self.period(since, until)
        filters = dict(filters or {})
        scope = scope if scope is not None else _EVERYTHING
        if "agent" in filters:
            raise BadInput("agent: compare agents without filtering on one", field="agent")
        self._by(["agent"], filters, ("agent",), scope)
        self._check_filters(filters, scope)
        _check_confidence(confidence)
        forced, within = _limits(scope)
        with self.db.read() as session:
            rows = read_rollups(
                session,
                dims=["agent"],
                since=since,
                until=until,
                filters={**filters, **forced},
                within=within,
            )
        team_n = sum(r.measures.presented for r in rows)
        team_k = sum(r.measures.accepted for r in rows)
        team = rate(team_k, team_n)
        out = []
        for row in rows:
            m = row.measures
            interval = wilson(m.accepted, m.presented, confidence)
            agent_rate = rate(m.accepted, m.presented)
            verdict: Literal["below", "within", "above", "no_data"] = "no_data"
            if interval is not None and team is not None:
                team_exact = team_k / team_n
                verdict = (
                    "below"
                    if interval[1] < team_exact
                    else "above"
                    if interval[0] > team_exact
                    else "within"
                )
            out.append(
                AgentRow(
                    agent=row.keys["agent"],
                    presented=m.presented,
                    accepted=m.accepted,
                    rate=agent_rate,
                    low=interval[0] if interval else None,
                    high=interval[1] if interval else None,
                    expected_rate=round(m.expected_micro / 1e6 / m.presented, 4)
                    if m.presented
                    else None,
                    gap_points=round((m.accepted / m.presented - team_k / team_n) * 100, 2)
                    if m.presented and team_n
                    else None,
                    verdict=verdict,
                )
            )
        out.sort(key=lambda a: (a.rate is None, -(a.rate or 0.0), a.agent))
        return AgentsReport(
            since=since,
            until=until,
            filters=filters,
            confidence=confidence,
            team_presented=team_n,
            team_accepted=team_k,
            team_rate=team,
            columns=list(msgspec.structs.asdict(_AGENT_EXAMPLE)),
            rows=out,
            scope=_scope_out(scope),
        )

    # -- lift --

    def lift(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        by: Sequence[str] = (),
        experiment: str | None = None,
        confidence: float = 0.95,
        scope: ReportScope | None = None,
    ) -> LiftReport:
        """Refused to a scoped supervisor: the experiment's arms are kept on grains without a
        store or an agent, and operator-wide figures are not theirs to see."""
        bound = _bound(scope if scope is not None else _EVERYTHING)
        if bound:
            raise OutOfScope(
                "lift: the model is compared with the control group for the whole operator "
                "only (the report tables that keep the two groups apart have no store or "
                f"agent), so it cannot be limited to {' and '.join(bound.values())}; "
                "ask an admin for it"
            )
        since, until = self.period(since, until)
        by = self._by(by, {}, ("channel", "campaign", "offer"))
        if len(by) > 1:
            raise BadInput("by: lift is split by one of channel, campaign, offer", field="by")
        _check_confidence(confidence)
        unit: Literal["contacts", "offers"] = "offers" if by == ["offer"] else "contacts"
        with self.db.read() as session:
            rows = read_rollups(
                session,
                dims=by,
                since=since,
                until=until,
                by_arm=True,
                experiment=experiment,
                arms=("model", "control"),
            )
        arms: dict[tuple[Any, ...], dict[str, tuple[int, int]]] = {}
        for row in rows:
            key = tuple(_dims(row, by).values())
            m = row.measures
            n, k = (
                (m.presented, m.accepted)
                if unit == "offers"
                else (m.decisions, m.contacts_accepted)
            )
            n0, k0 = arms.setdefault(key, {}).get(row.arm or "", (0, 0))
            arms[key][row.arm or ""] = (n0 + n, k0 + k)
        out = []
        for key in sorted(arms, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            n1, k1 = arms[key].get("model", (0, 0))
            n0, k0 = arms[key].get("control", (0, 0))
            ratio, low, high = lift_interval(k1, n1, k0, n0, confidence)
            verdict: Literal["higher", "lower", "unclear", "no_data"] = "no_data"
            if low is not None and high is not None:
                verdict = "higher" if low > 1 else "lower" if high < 1 else "unclear"
            elif ratio is not None:
                verdict = "unclear"
            out.append(
                LiftRow(
                    **dict(zip(by, key, strict=True)),
                    model_n=n1,
                    model_accepted=k1,
                    model_rate=rate(k1, n1),
                    control_n=n0,
                    control_accepted=k0,
                    control_rate=rate(k0, n0),
                    lift=ratio,
                    low=low,
                    high=high,
                    verdict=verdict,
                )
            )
        return LiftReport(
            since=since,
            until=until,
            by=by,
            experiment=experiment,
            unit=unit,
            confidence=confidence,
            columns=[*by, *_LIFT_COLUMNS],
            rows=out,
        )

    # -- provisioning failures, audit flags (the sales ledger) --

    def failures(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        by: Sequence[str] = (),
        scope: ReportScope | None = None,
    ) -> FailuresReport:
        since, until = self.period(since, until)
        allowed = ("offer", "store", "agent", "channel", "reason", "day")
        by = list(dict.fromkeys(by or ["reason"]))
        for dim in by:
            if dim not in allowed:
                raise BadInput(f"by: {dim!r}: use {', '.join(allowed)}", field="by")
        if len(by) > 2:
            raise BadInput("by: at most two dimensions can be combined", field="by")
        start, end = utc_bounds(since, until)
        s = Subscription
        with self.db.read() as session:
            columns = _sale_columns(session.get_bind().dialect.name)
            groups = [columns[d] for d in by]
            failed = s.status == "failed"
            query = (
                select(
                    *groups,
                    func.count(),
                    func.sum(case((failed, 1), else_=0)),
                    func.sum(case((failed, s.price), else_=0.0)),
                )
                .where(s.created_at >= start, s.created_at < end, *in_scope(scope))
                .group_by(*groups)
                .order_by(*groups)
            )
            found = list(session.execute(query))
        rows = []
        for row in found:
            values = list(row)
            sales, n_failed, lost = (values[len(by)], values[len(by) + 1], values[len(by) + 2])
            n_failed = int(n_failed or 0)
            if not n_failed:
                continue
            dims: dict[str, Any] = {
                d: _day(v) if d == "day" else _value(str(v or ""))
                for d, v in zip(by, values[: len(by)], strict=True)
            }
            rows.append(
                FailureRow(
                    **dims,
                    sales=int(sales),
                    failed=n_failed,
                    share=rate(n_failed, int(sales)),
                    revenue_lost=round(float(lost or 0.0), 2),
                )
            )
        return FailuresReport(
            since=since,
            until=until,
            by=by,
            columns=[*by, "sales", "failed", "share", "revenue_lost"],
            rows=rows,
            scope=_scope_out(scope if scope is not None else _EVERYTHING),
        )

    def audit_flags(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        by: Sequence[str] = (),
        scope: ReportScope | None = None,
    ) -> AuditReport:
        since, until = self.period(since, until)
        allowed = ("flag", "agent", "store", "offer", "channel")
        by = list(dict.fromkeys(by or ["flag"]))
        for dim in by:
            if dim not in allowed:
                raise BadInput(f"by: {dim!r}: use {', '.join(allowed)}", field="by")
        if len(by) > 2:
            raise BadInput("by: at most two dimensions can be combined", field="by")
        start, end = utc_bounds(since, until)
        s = Subscription
        columns: dict[str, Any] = {
            "flag": AuditFlag.flag,
            "agent": s.user_id,
            "store": s.store_id,
            "offer": s.offer_id,
            "channel": s.channel,
        }
        groups = [columns[d] for d in by]
        query = (
            select(*groups, func.count(), func.count(distinct(AuditFlag.subscription_id)))
            .join(s, s.id == AuditFlag.subscription_id)
            .where(s.created_at >= start, s.created_at < end, *in_scope(scope))
            .group_by(*groups)
            .order_by(*groups)
        )
        with self.db.read() as session:
            found = list(session.execute(query))
        rows = []
        for row in found:
            values = list(row)
            dims: dict[str, Any] = {
                d: _value(str(v or "")) for d, v in zip(by, values[: len(by)], strict=True)
            }
            if "flag" in dims:
                dims["description"] = AUDIT_FLAGS.get(str(dims["flag"]), "")
            rows.append(
                AuditFlagRow(**dims, flags=int(values[len(by)]), sales_flagged=int(values[-1]))
            )
        out_columns = list(by)
        if "flag" in by:
            out_columns.insert(by.index("flag") + 1, "description")
        return AuditReport(
            since=since,
            until=until,
            by=by,
            columns=[*out_columns, "flags", "sales_flagged"],
            rows=rows,
            scope=_scope_out(scope if scope is not None else _EVERYTHING),
        )


_FUNNEL_COLUMNS = [
    "targeted",
    "reached",
    "presented",
    "accepted",
    "provisioned",
    "matured",
    "retained",
    "presented_rate",
    "accepted_rate",
    "provisioned_rate",
    "retained_rate",
]
_LIFT_COLUMNS = [
    "model_n",
    "model_accepted",
    "model_rate",
    "control_n",
    "control_accepted",
    "control_rate",
    "lift",
    "low",
    "high",
    "verdict",
]
_AGENT_EXAMPLE = AgentRow(
    agent="",
    presented=0,
    accepted=0,
    rate=None,
    low=None,
    high=None,
    expected_rate=None,
    gap_points=None,
    verdict="no_data",
)


def _conversion(m: Measures) -> dict[str, Any]:
    return {
        "presented": m.presented,
        "accepted": m.accepted,
        "rate": rate(m.accepted, m.presented),
        "revenue": m.revenue_fen / 100,
    }


def _revenue(m: Measures) -> dict[str, Any]:
    return {
        "sales": m.accepted,
        "revenue": m.revenue_fen / 100,
        "average_price": round(m.revenue_fen / 100 / m.accepted, 2) if m.accepted else None,
    }


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1:
        raise BadInput("confidence: expected a level in [0.5, 1), e.g. 0.95", field="confidence")


def _sale_day(dialect: str) -> Any:
    return literal_column(day_sql(dialect, "subscriptions.created_at"))


def _sale_columns(dialect: str) -> dict[str, Any]:
    s = Subscription
    return {
        "agent": s.user_id,
        "store": s.store_id,
        "channel": s.channel,
        "offer": s.offer_id,
        "reason": s.status_reason,
        "campaign": Decision.campaign_id,
        "segment": Decision.segment,
        "day": _sale_day(dialect),
    }


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _merge(
    keyed: dict[tuple[Any, ...], dict[str, Any]], key: tuple[Any, ...], entry: dict[str, Any]
) -> None:
    """Add a funnel entry's counts into ``keyed[key]`` (targeted stays None if both are)."""
    have = keyed.get(key)
    if have is None:
        keyed[key] = dict(entry)
        return
    for name, value in entry.items():
        if name == "targeted":
            if value is not None:
                have[name] = (have[name] or 0) + value
        else:
            have[name] = have.get(name, 0) + value


# Results of a call task that mean the customer answered (nextbest/tasks.py).
_ANSWERED = ("presented", "accepted", "declined", "considering", "do_not_call")
_RAN = ("live", "paused", "ended")


def _campaign_queue(
    session: Session, since: date, until: date
) -> dict[str, tuple[int, int]] | None:
    """Per campaign that ran in the period: (customers targeted, calls answered in the period),
    from the call queue's tables; None where the queue has no campaign in the period."""
    from nextbest.storage.campaign_models import CallTask, Campaign

    if not inspect(session.connection()).has_table(CallTask.__tablename__):
        return None
    start, end = utc_bounds(since, until)
    targeted = {
        campaign_id: int(targets or 0)
        for campaign_id, targets in session.execute(
            select(Campaign.id, Campaign.targets).where(
                Campaign.status.in_(_RAN), Campaign.starts_on <= until, Campaign.ends_on >= since
            )
        )
    }
    if not targeted:
        return None
    answered: dict[str, int] = {
        campaign_id: int(n)
        for campaign_id, n in session.execute(
            select(CallTask.campaign_id, func.count())
            .where(
                CallTask.campaign_id.in_(list(targeted)),
                CallTask.status == "closed",
                CallTask.result.in_(_ANSWERED),
                CallTask.closed_at >= start,
                CallTask.closed_at < end,
            )
            .group_by(CallTask.campaign_id)
        )
    }
    return {c: (n, answered.get(c, 0)) for c, n in targeted.items()}
