"""Sales seen from the back office: failed provisioning, audit flags, 90-day retention.

A supervisor bound to a store or team (``ReportScope``) sees the sales made in that store, or
by that team's people: a sale belongs to the clerk or agent who recorded it, and their store.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from sqlalchemy import ColumnElement, select

from nextbest.clock import Clock
from nextbest.keys import ReportScope, team_members
from nextbest.msisdn import mask
from nextbest.storage.db import Database
from nextbest.storage.models import AuditFlag, Subscription

__all__ = ["AuditFlagOut", "Retention", "SaleOut", "SalesService", "in_scope"]

MAX_ROWS = 1000


class SaleOut(msgspec.Struct, kw_only=True):
    id: int
    msisdn: str  # masked
    offer_id: str
    channel: str
    sold_by: str
    store_id: str | None
    status: str
    status_reason: str | None
    created_at: datetime
    cancelled_at: datetime | None
    billed: bool | None


class AuditFlagOut(msgspec.Struct, kw_only=True):
    subscription_id: int
    flag: str
    detail: str
    sold_by: str
    store_id: str | None
    offer_id: str
    flagged_at: datetime


class Retention(msgspec.Struct, kw_only=True):
    """Of the sales at least ``days`` old, how many were still active ``days`` after the sale."""

    days: int
    sales: int
    retained: int
    rate: float | None  # None when there is nothing to divide


def in_scope(scope: ReportScope | None) -> list[ColumnElement[bool]]:
    """Conditions on ``subscriptions`` that keep a scope's sales (none: every sale)."""
    where: list[ColumnElement[bool]] = []
    if scope is not None and scope.store_id is not None:
        where.append(Subscription.store_id == scope.store_id)
    if scope is not None and scope.team_id is not None:
        where.append(Subscription.user_id.in_(team_members(scope.team_id)))
    return where


class SalesService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def subscriptions(
        self,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
        scope: ReportScope | None = None,
    ) -> list[SaleOut]:
        query = (
            select(Subscription)
            .where(*in_scope(scope))
            .order_by(Subscription.id.desc())
            .limit(MAX_ROWS)
        )
        if status:
            query = query.where(Subscription.status == status)
        if since:
            query = query.where(Subscription.created_at >= since)
        if until:
            query = query.where(Subscription.created_at < until)
        with self.db.read() as session:
            return [
                SaleOut(
                    id=row.id,
                    msisdn=mask(row.msisdn),
                    offer_id=row.offer_id,
                    channel=row.channel,
                    sold_by=row.user_id,
                    store_id=row.store_id,
                    status=row.status,
                    status_reason=row.status_reason,
                    created_at=row.created_at,
                    cancelled_at=row.cancelled_at,
                    billed=row.billed,
                )
                for row in session.scalars(query)
            ]

    def audit_flags(self, flag: str | None, scope: ReportScope | None = None) -> list[AuditFlagOut]:
        query = (
            select(AuditFlag, Subscription)
            .join(Subscription, Subscription.id == AuditFlag.subscription_id)
            .where(*in_scope(scope))
            .order_by(AuditFlag.id.desc())
            .limit(MAX_ROWS)
        )
        if flag:
            query = query.where(AuditFlag.flag == flag)
        with self.db.read() as session:
            return [
                AuditFlagOut(
                    subscription_id=f.subscription_id,
                    flag=f.flag,
                    detail=f.detail,
                    sold_by=s.user_id,
                    store_id=s.store_id,
                    offer_id=s.offer_id,
                    flagged_at=f.created_at,
                )
                for f, s in session.execute(query)
            ]

    def retention(self, days: int = 90, scope: ReportScope | None = None) -> Retention:
        cutoff = self.clock.now() - timedelta(days=days)
        with self.db.read() as session:
            rows = list(
                session.execute(
                    select(Subscription.created_at, Subscription.cancelled_at).where(
                        Subscription.created_at <= cutoff,
                        Subscription.status.in_(("active", "cancelled")),
                        *in_scope(scope),
                    )
                )
            )
        retained = sum(
            1
            for created, cancelled in rows
            if cancelled is None or cancelled - created >= timedelta(days=days)
        )
        return Retention(
            days=days,
            sales=len(rows),
            retained=retained,
            rate=round(retained / len(rows), 4) if rows else None,
        )
