"""Supervisor reports (supervisor and admin): every table as JSON, or as CSV with
``?format=csv`` or ``Accept: text/csv``. A supervisor bound to a store or team gets that
scope's rows (``report_scope``); the service applies it."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Request, Response, get
from litestar.params import FromQuery, QueryParameter

from nextbest.api.auth import requires
from nextbest.api.services import MANAGERS, ActorDep, ServicesDep
from nextbest.keys import report_scope
from nextbest.reports import (
    AgentsReport,
    AuditReport,
    ConversionReport,
    FailuresReport,
    FunnelReport,
    LiftReport,
    Report,
    RevenueReport,
    to_csv,
)

__all__ = ["ROUTES"]

Dim = Literal["agent", "store", "channel", "offer", "campaign", "segment", "day"]
FunnelDim = Literal["agent", "store", "channel", "campaign", "segment", "day"]
LiftDim = Literal["channel", "campaign", "offer"]
FailureDim = Literal["offer", "store", "agent", "channel", "reason", "day"]
AuditDim = Literal["flag", "agent", "store", "offer", "channel"]
Format = Literal["json", "csv"]

By = Annotated[
    list[Dim] | None,
    QueryParameter(
        name="by",
        description="Group by one or two of these, e.g. ?by=agent&by=offer (filters count)",
    ),
]
FormatParam = Annotated[
    Format | None,
    QueryParameter(name="format", description="csv for a CSV file (or send Accept: text/csv)"),
]
Since = Annotated[
    date | None,
    QueryParameter(description="First day, inclusive (China Standard Time); default 29 days ago"),
]
Until = Annotated[date | None, QueryParameter(description="Last day, inclusive; default today")]
# One value of a dimension to keep (counts towards the two combined dimensions).
Filter = Annotated[str | None, QueryParameter(description="Keep only this value")]


def _filters(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


def _answer(
    request: Request[Any, Any, Any], fmt: Format | None, name: str, report: Report
) -> Response[Any]:
    wants_csv = fmt == "csv" or (
        fmt is None
        and request.accept.best_match(["application/json", "text/csv"], "application/json")
        == "text/csv"
    )
    headers = {"Vary": "Accept"}
    if wants_csv:
        filename = f"{name}-{report.since}-{report.until}.csv"
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(to_csv(report), media_type="text/csv; charset=utf-8", headers=headers)
    return Response(report, headers=headers)


_COMMON: dict[str, Any] = {
    "tags": ["reports"],
    "opt": requires(*MANAGERS),
    "sync_to_thread": True,
}


@get(
    "/v1/reports/conversion",
    summary="Offers presented and accepted, and the rate, by up to two dimensions",
    response_description="A ConversionReport (JSON) or its rows as CSV",
    **_COMMON,
)
def conversion(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    by: By = None,
    since: Since = None,
    until: Until = None,
    agent: Filter = None,
    store: Filter = None,
    channel: Filter = None,
    offer: Filter = None,
    campaign: Filter = None,
    segment: Filter = None,
    fmt: FormatParam = None,
) -> Response[ConversionReport]:
    report = services.reports.conversion(
        since=since,
        until=until,
        by=by or [],
        filters=_filters(
            agent=agent,
            store=store,
            channel=channel,
            offer=offer,
            campaign=campaign,
            segment=segment,
        ),
        scope=report_scope(actor),
    )
    return _answer(request, fmt, "conversion", report)


@get(
    "/v1/reports/revenue",
    summary="Sales and their monthly revenue, by up to two dimensions",
    **_COMMON,
)
def revenue(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    by: By = None,
    since: Since = None,
    until: Until = None,
    agent: Filter = None,
    store: Filter = None,
    channel: Filter = None,
    offer: Filter = None,
    campaign: Filter = None,
    segment: Filter = None,
    fmt: FormatParam = None,
) -> Response[RevenueReport]:
    report = services.reports.revenue(
        since=since,
        until=until,
        by=by or [],
        filters=_filters(
            agent=agent,
            store=store,
            channel=channel,
            offer=offer,
            campaign=campaign,
            segment=segment,
        ),
        scope=report_scope(actor),
    )
    return _answer(request, fmt, "revenue", report)


@get(
    "/v1/reports/funnel",
    summary="Targeted, reached, presented, accepted, provisioned, still active at 90 days",
    **_COMMON,
)
def funnel(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    by: Annotated[
        list[FunnelDim] | None,
        QueryParameter(name="by", description="One dimension, and/or day"),
    ] = None,
    since: Since = None,
    until: Until = None,
    retention_days: Annotated[
        int,
        QueryParameter(ge=1, le=3650, description="Days a sale must last to count as retained"),
    ] = 90,
    fmt: FormatParam = None,
) -> Response[FunnelReport]:
    report = services.reports.funnel(
        since=since,
        until=until,
        by=by or [],
        retention_days=retention_days,
        scope=report_scope(actor),
    )
    return _answer(request, fmt, "funnel", report)


@get(
    "/v1/reports/agents",
    summary="Each agent's acceptance rate against the team's, with a confidence interval",
    **_COMMON,
)
def agents(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    since: Since = None,
    until: Until = None,
    store: Filter = None,
    channel: Filter = None,
    offer: Filter = None,
    campaign: Filter = None,
    segment: Filter = None,
    confidence: FromQuery[float] = 0.95,
    fmt: FormatParam = None,
) -> Response[AgentsReport]:
    report = services.reports.agents(
        since=since,
        until=until,
        filters=_filters(
            store=store, channel=channel, offer=offer, campaign=campaign, segment=segment
        ),
        confidence=confidence,
        scope=report_scope(actor),
    )
    return _answer(request, fmt, "agents", report)


@get(
    "/v1/reports/lift",
    summary="Acceptance of the ranked offers over the control group's, with an interval",
    **_COMMON,
)
def lift(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    by: Annotated[
        list[LiftDim] | None,
        QueryParameter(name="by", description="channel, campaign or offer (or none: overall)"),
    ] = None,
    since: Since = None,
    until: Until = None,
    experiment: FromQuery[str | None] = None,
    confidence: FromQuery[float] = 0.95,
    fmt: FormatParam = None,
) -> Response[LiftReport]:
    report = services.reports.lift(
        since=since,
        until=until,
        by=by or [],
        experiment=experiment,
        confidence=confidence,
        scope=report_scope(actor),
    )
    return _answer(request, fmt, "lift", report)


@get(
    "/v1/reports/provisioning-failures",
    summary="Sales the operator's systems refused or never activated",
    **_COMMON,
)
def provisioning_failures(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    by: Annotated[
        list[FailureDim] | None,
        QueryParameter(name="by", description="Up to two; default reason"),
    ] = None,
    since: Since = None,
    until: Until = None,
    fmt: FormatParam = None,
) -> Response[FailuresReport]:
    report = services.reports.failures(
        since=since, until=until, by=by or [], scope=report_scope(actor)
    )
    return _answer(request, fmt, "provisioning-failures", report)


@get(
    "/v1/reports/audit-flags",
    summary="Sales the commission audit questions, counted",
    **_COMMON,
)
def audit_flags(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    actor: ActorDep,
    by: Annotated[
        list[AuditDim] | None,
        QueryParameter(name="by", description="Up to two; default flag"),
    ] = None,
    since: Since = None,
    until: Until = None,
    fmt: FormatParam = None,
) -> Response[AuditReport]:
    report = services.reports.audit_flags(
        since=since, until=until, by=by or [], scope=report_scope(actor)
    )
    return _answer(request, fmt, "audit-flags", report)


ROUTES = [conversion, revenue, funnel, agents, lift, provisioning_failures, audit_flags]
