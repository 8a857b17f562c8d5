"""Back-office views of sales: failed provisioning, the commission audit, retention. A
supervisor bound to a store or team sees that scope's sales only (``report_scope``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from litestar import get
from litestar.params import FromQuery, QueryParameter

from nextbest.api.auth import requires
from nextbest.api.services import MANAGERS, ActorDep, ServicesDep
from nextbest.keys import report_scope
from nextbest.sales import AuditFlagOut, Retention, SaleOut

__all__ = ["ROUTES"]

Status = Literal["pending", "active", "failed", "cancelled"]
Flag = Literal["already_held", "not_billed", "arrears", "complaint_after"]


@get(
    "/v1/subscriptions",
    summary="Sales, newest first (at most 1000), e.g. ?status=failed",
    tags=["sales"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def list_subscriptions(
    services: ServicesDep,
    actor: ActorDep,
    status: FromQuery[Status | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
) -> list[SaleOut]:
    return services.sales.subscriptions(status, since, until, report_scope(actor))


@get(
    "/v1/audit/flags",
    summary="Sales the commission audit questions",
    tags=["sales"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def list_audit_flags(
    services: ServicesDep, actor: ActorDep, flag: FromQuery[Flag | None] = None
) -> list[AuditFlagOut]:
    return services.sales.audit_flags(flag, report_scope(actor))


@get(
    "/v1/sales/retention",
    summary="Share of sales still active after N days (default 90)",
    tags=["sales"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def retention(
    services: ServicesDep,
    actor: ActorDep,
    # Bounded: an absurd number of days overflowed the date arithmetic (a 500, found by fuzzing).
    days: Annotated[int, QueryParameter(ge=1, le=3650)] = 90,
) -> Retention:
    return services.sales.retention(days, report_scope(actor))


ROUTES = [list_subscriptions, list_audit_flags, retention]
