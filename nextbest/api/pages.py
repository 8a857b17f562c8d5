"""The screens people use: the call console, the supervisor dashboard, a mock CRM page that
embeds the counter pop-up, and the browser files they load (``/widgets/...``).

Pages are rendered with Jinja2 and carry no key: they answer without one (the sign-in form is
part of each page) and find out who is looking from the session cookie that ``POST
/v1/session`` set. Their scripts call the API with that cookie and the CSRF token. Nothing on
a page is a secret until someone signs in, and then only what their role may see.

Languages: English and Simplified Chinese (nextbest/i18n.py), by the switch or the browser.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy import func, select

import nextbest
from nextbest.api.services import Services, ServicesDep
from nextbest.campaigns import STRATEGIES, CampaignOut
from nextbest.catalog import Catalog
from nextbest.charts import bar_chart, line_chart
from nextbest.demo import EXAMPLES
from nextbest.errors import Conflict, NotFound, ServiceError
from nextbest.i18n import LANG_COOKIE, LANGS, Lang, choose_lang, subset, translator
from nextbest.keys import Actor, ReportScope, report_scope
from nextbest.reports import splits
from nextbest.rollups import report_day, utc_bounds
from nextbest.sessions import CSRF_HEADER, SESSION_COOKIE
from nextbest.storage.campaign_models import CallTask, Campaign, TaskEvent
from nextbest.storage.models import Subscription
from nextbest.storage.warehouse import NoDataLoaded
from nextbest.tasks import TASK_OUTCOMES

__all__ = [
    "CONSOLE_ROLES",
    "DASHBOARD_ROLES",
    "ROUTES",
    "TEMPLATES_DIR",
    "WIDGETS_DIR",
    "Tally",
    "agent_tally",
    "dashboard_data",
    "template_config",
]

log = logging.getLogger("nextbest.pages")

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def _widgets_dir() -> Path:
    """The browser files live in the checkout's ``widgets/`` (beside the package); an install
    without the checkout finds them in the working directory's ``widgets/``."""
    for candidate in (Path(nextbest.__file__).resolve().parent.parent / "widgets", Path("widgets")):
        if (candidate / "counter" / "counter.js").is_file():
            return candidate.resolve()
    return Path(nextbest.__file__).resolve().parent.parent / "widgets"


WIDGETS_DIR = _widgets_dir()

CONSOLE_ROLES = ("agent",)
DASHBOARD_ROLES = ("supervisor", "admin")
DIMENSIONS = ("agent", "store", "channel", "offer", "campaign", "segment")
# Pages answer without a key: they are the sign-in form until someone signs in.
_PAGE_OPT: dict[str, Any] = {"exclude_from_auth": True}
# Scripts and styles come only from this server; nothing inline, no framing of the screens.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


# --- who is looking, in which language ----------------------------------------------------------


class Viewer(msgspec.Struct, frozen=True, kw_only=True):
    actor: Actor | None
    # A cookie was sent but no longer opens a session (signed out, expired, key revoked).
    ended: bool = False


def _viewer(request: Request[Any, Any, Any], services: Services) -> Viewer:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return Viewer(actor=None)
    signed_in = services.sessions.authenticate(cookie)
    if signed_in is None:
        return Viewer(actor=None, ended=True)
    return Viewer(actor=signed_in.actor)


def _lang(request: Request[Any, Any, Any]) -> tuple[Lang, bool]:
    """The page's language, and whether the switch chose it just now (then it is kept)."""
    asked = request.query_params.get("lang")
    lang = choose_lang(
        asked, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    return lang, asked is not None and asked == lang


def _switch_url(request: Request[Any, Any, Any], lang: Lang) -> str:
    other = LANGS[1] if lang == LANGS[0] else LANGS[0]
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + "?" + urlencode([*params, ("lang", other)])


def _page(
    request: Request[Any, Any, Any],
    services: Services,
    template: str,
    screen: str,
    *,
    roles: Sequence[str] = (),
    script_messages: Sequence[str] = (),
    status_code: int = 200,
    viewer: Viewer | None = None,
    **context: Any,
) -> Template:
    lang, switched = _lang(request)
    viewer = viewer if viewer is not None else _viewer(request, services)
    actor = viewer.actor
    allowed = actor is not None and (not roles or actor.role in roles)
    t = translator(lang)
    page_data = {
        "lang": lang,
        "screen": screen,
        "csrf_header": CSRF_HEADER,
        "signed_in": actor is not None,
        "messages": subset(lang, ("error.", "signin.", "signout", *script_messages)),
    }
    base = {
        "lang": lang,
        "t": t,
        "screen": screen,
        "switch_url": _switch_url(request, lang),
        "actor": actor,
        "session_ended": viewer.ended,
        "allowed": allowed,
        "roles": roles,
        "role_names": ", ".join(t(f"role.{r}") for r in roles),
        "page_data": page_data,
    }
    cookies = (
        [Cookie(key=LANG_COOKIE, value=lang, max_age=365 * 86400, path="/", samesite="lax")]
        if switched
        else []
    )
    return Template(
        template_name=template,
        context={**base, **context},
        status_code=status_code,
        headers=_PAGE_HEADERS,
        cookies=cookies,
        media_type="text/html",
    )


# --- the pages -----------------------------------------------------------------------------------


@get("/", opt=_PAGE_OPT, sync_to_thread=True, include_in_schema=False)
def screens(request: Request[Any, Any, Any], services: ServicesDep) -> Template:
    return _page(request, services, "index.html", "index")


@get("/console", opt=_PAGE_OPT, sync_to_thread=True, include_in_schema=False)
def console(request: Request[Any, Any, Any], services: ServicesDep) -> Template:
    viewer = _viewer(request, services)
    actor = viewer.actor
    tally = None
    if actor is not None and actor.role in CONSOLE_ROLES:
        tally = agent_tally(services, actor.user_id, services.clock.now())
    return _page(
        request,
        services,
        "console.html",
        "console",
        roles=CONSOLE_ROLES,
        script_messages=("console.", "outcome.", "reason.", "status."),
        viewer=viewer,
        tally=tally,
        outcomes=_CONSOLE_OUTCOMES,
        reasons=DECLINE_REASONS,
    )


def _agent(request: Request[Any, Any, Any], services: Services) -> Actor:
    """The signed-in agent behind a console script's request (JSON errors, like the API)."""
    actor = _viewer(request, services).actor
    if actor is None:
        raise NotAuthorizedException("session ended, expired or not valid: sign in again")
    if actor.role not in CONSOLE_ROLES:
        raise PermissionDeniedException(f"role {actor.role!r} may not do this; allowed: agent")
    return actor


@get("/console/tally", opt=_PAGE_OPT, sync_to_thread=True, include_in_schema=False)
def console_tally(request: Request[Any, Any, Any], services: ServicesDep) -> Tally:
    """The signed-in agent's own counts for today, for the console to refresh after a call."""
    actor = _agent(request, services)
    return agent_tally(services, actor.user_id, services.clock.now())


@get(
    "/console/tasks/{task_id:int}/customer",
    opt=_PAGE_OPT,
    sync_to_thread=True,
    include_in_schema=False,
)
def console_customer(
    request: Request[Any, Any, Any], services: ServicesDep, task_id: FromPath[int]
) -> CustomerSummary:
    """Lifecycle stages and services held by the customer of a task the agent holds."""
    actor = _agent(request, services)
    lang, _ = _lang(request)
    return customer_summary(services, actor, task_id, lang)


@get("/dashboard", opt=_PAGE_OPT, sync_to_thread=True, include_in_schema=False)
def dashboard(request: Request[Any, Any, Any], services: ServicesDep) -> Template:
    viewer = _viewer(request, services)
    actor = viewer.actor
    lang, _ = _lang(request)
    data: dict[str, Any] | None = None
    problem: str | None = None
    dimensions: Sequence[str] = DIMENSIONS
    if actor is not None and actor.role in DASHBOARD_ROLES:
        # A supervisor bound to a store or team sees that scope's numbers, as in the API.
        scope = report_scope(actor)
        dimensions = splits(scope)
        since, until, dim, problem = _dashboard_params(request, services, dimensions)
        data = dashboard_data(services, since, until, dim, lang, scope)
    return _page(
        request,
        services,
        "dashboard.html",
        "dashboard",
        roles=DASHBOARD_ROLES,
        script_messages=("dash.", "status."),
        viewer=viewer,
        data=data,
        problem=problem,
        dimensions=dimensions,
    )


@get("/demo/crm", opt=_PAGE_OPT, sync_to_thread=True, include_in_schema=False)
def demo_crm(request: Request[Any, Any, Any], services: ServicesDep) -> Template:
    return _page(
        request,
        services,
        "demo_crm.html",
        "crm",
        examples=[number for number, channel, _ in EXAMPLES if channel == "store"],
    )


# --- the console's tally -------------------------------------------------------------------------


_CONSOLE_OUTCOMES = (
    ("accepted", "S"),
    ("declined", "D"),
    ("callback", "B"),
    ("no_answer", "U"),
    ("wrong_number", "W"),
    ("do_not_call", "X"),
)
DECLINE_REASONS = ("price", "not_interested", "has_similar", "no_time", "handset", "other")


class Tally(msgspec.Struct, kw_only=True):
    day: date
    calls: int  # calls this agent reported an outcome for today
    accepted: int
    declined: int
    callbacks: int
    no_answer: int
    wrong_number: int
    do_not_call: int
    rate: float | None  # accepted / calls


def agent_tally(services: Services, user_id: str, now: datetime) -> Tally:
    """The outcomes one agent reported on call tasks today (report day, China Standard
    Time), from the queue's own event log."""
    today = report_day(now)
    start, end = utc_bounds(today, today)
    with services.db.read() as session:
        rows = session.execute(
            select(TaskEvent.kind, func.count())
            .where(
                TaskEvent.user_id == user_id,
                TaskEvent.at >= start,
                TaskEvent.at < end,
                TaskEvent.kind.in_(TASK_OUTCOMES),
            )
            .group_by(TaskEvent.kind)
        ).all()
    counts = {str(kind): int(n) for kind, n in rows}
    calls = sum(counts.values())
    accepted = counts.get("accepted", 0)
    return Tally(
        day=today,
        calls=calls,
        accepted=accepted,
        declined=counts.get("declined", 0),
        callbacks=counts.get("callback", 0),
        no_answer=counts.get("no_answer", 0),
        wrong_number=counts.get("wrong_number", 0),
        do_not_call=counts.get("do_not_call", 0),
        rate=round(accepted / calls, 4) if calls else None,
    )


# --- the console's customer summary --------------------------------------------------------------


class StageOut(msgspec.Struct, kw_only=True):
    service: str
    name: str
    stage: str
    stage_name: str


class HeldOut(msgspec.Struct, kw_only=True):
    offer_id: str
    name: str


class CustomerSummary(msgspec.Struct, kw_only=True):
    """What the agent needs to know about the customer on the line, beyond the decision."""

    task_id: int
    known: bool
    brand: str | None
    lifecycle: list[StageOut]
    services: list[HeldOut]  # held per the warehouse, plus live sales recorded here
    strategy: str  # the campaign's strategy, in the page's language


def customer_summary(services: Services, actor: Actor, task_id: int, lang: Lang) -> CustomerSummary:
    """Only for the agent holding the task's lease, only while it is held: the screen shows
    one customer at a time, during the contact."""
    with services.db.read() as session:
        task = session.get(CallTask, task_id)
        if task is None:
            raise NotFound(f"task {task_id} not found", field="task_id")
        if task.status != "leased" or task.agent_id != actor.user_id:
            raise Conflict(f"task {task_id} is not leased to you", field="task_id")
        campaign = session.get(Campaign, task.campaign_id)
        live = list(
            session.scalars(
                select(Subscription.offer_id).where(
                    Subscription.msisdn == task.msisdn,
                    Subscription.status.in_(("pending", "active")),
                )
            )
        )
        msisdn = task.msisdn
    version = services.reader.active()
    catalog = version.catalog
    profile = services.reader.customer(version.id, msisdn).profile
    zh = lang == "zh"
    t = translator(lang)

    def offer_name(offer_id: str) -> str:
        offer = catalog.offer(offer_id)
        if offer is None:
            return offer_id
        return offer.name_zh if zh and offer.name_zh else offer.name

    lifecycle = []
    brand = None
    held: list[str] = []
    if profile is not None:
        for code, stage in sorted(profile.lifecycle.items()):
            service = catalog.service(code)
            name = (
                code
                if service is None
                else (service.name_zh if zh and service.name_zh else service.name)
            )
            lifecycle.append(
                StageOut(service=code, name=name, stage=stage, stage_name=t(f"stage.{stage}"))
            )
        found = catalog.brand(profile.brand)
        brand = (
            profile.brand
            if found is None
            else (found.name_zh if zh and found.name_zh else found.name)
        )
        held = list(profile.subscriptions)
    held += [offer_id for offer_id in live if offer_id not in held]
    strategy = STRATEGIES.get(campaign.strategy if campaign else "", ("", ""))
    return CustomerSummary(
        task_id=task_id,
        known=profile is not None,
        brand=brand,
        lifecycle=lifecycle,
        services=[HeldOut(offer_id=o, name=offer_name(o)) for o in held],
        strategy=strategy[1] if zh else strategy[0],
    )


# --- the dashboard's numbers ---------------------------------------------------------------------


def _parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _dashboard_params(
    request: Request[Any, Any, Any], services: Services, dimensions: Sequence[str] = DIMENSIONS
) -> tuple[date, date, str, str | None]:
    """since, until, the conversion dimension (one of ``dimensions``), and what was wrong with
    the request (the page then shows the default range and says so, rather than an error)."""
    params = request.query_params
    today = report_day(services.clock.now())
    problem = None
    since = _parse_day(params.get("since"))
    until = _parse_day(params.get("until"))
    if (params.get("since") and since is None) or (params.get("until") and until is None):
        problem = "dates"
    until = until or today
    since = since or until - timedelta(days=13)
    if since > until:
        since, until, problem = until - timedelta(days=13), until, "dates"
    if (until - since).days > 366:
        since, problem = until - timedelta(days=366), "dates"
    default = "offer" if "offer" in dimensions else dimensions[0]
    dim = params.get("by") or default
    if dim not in dimensions:
        dim, problem = default, "by"
    return since, until, dim, problem


def _names(catalog: Catalog | None, dim: str, lang: Lang) -> Mapping[str, str]:
    """Display names of a dimension's codes (offers, segments); codes stand for themselves."""
    if catalog is None:
        return {}
    if dim == "offer":
        return {o.id: (o.name_zh if lang == "zh" and o.name_zh else o.name) for o in catalog.offers}
    if dim == "segment":
        return {
            s.code: (s.name_zh if lang == "zh" and s.name_zh else s.name) for s in catalog.segments
        }
    return {}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def dashboard_data(
    services: Services,
    since: date,
    until: date,
    dim: str,
    lang: Lang,
    scope: ReportScope | None = None,
) -> dict[str, Any]:
    """Everything the dashboard shows for a period: the reports as the API gives them (within
    ``scope``), plus chart geometry and display names."""
    reports = services.reports
    scope = scope if scope is not None else ReportScope()
    try:
        catalog: Catalog | None = services.reader.active().catalog
    except NoDataLoaded:
        catalog = None
    total = reports.conversion(since=since, until=until, scope=scope)
    daily = reports.conversion(since=since, until=until, by=["day"], scope=scope)
    by_dim = reports.conversion(since=since, until=until, by=[dim], scope=scope)
    funnel = reports.funnel(since=since, until=until, scope=scope)
    # The lift is the whole operator's only (the API refuses it to a scoped supervisor): the
    # page leaves it out for them rather than show figures that are not theirs.
    scoped = scope.store_id is not None or scope.team_id is not None
    lift = None if scoped else reports.lift(since=since, until=until)
    lift_by_channel = None if scoped else reports.lift(since=since, until=until, by=["channel"])
    agents = reports.agents(since=since, until=until, scope=scope)
    failures = reports.failures(since=since, until=until, by=["reason"], scope=scope)
    audit = reports.audit_flags(since=since, until=until, by=["flag"], scope=scope)
    start, end = utc_bounds(since, until)
    failed_sales = services.sales.subscriptions("failed", start, end, scope)[:20]
    retention = services.sales.retention(90, scope)

    days = [since + timedelta(days=i) for i in range((until - since).days + 1)]
    per_day = {row.day: row for row in daily.rows}
    t = translator(lang)
    series = line_chart(
        [d.strftime("%m-%d") for d in days],
        [
            (
                t("col.presented"),
                "presented",
                [float(per_day[d].presented) if d in per_day else 0.0 for d in days],
            ),
            (
                t("col.accepted"),
                "accepted",
                [float(per_day[d].accepted) if d in per_day else 0.0 for d in days],
            ),
        ],
    )
    names = _names(catalog, dim, lang)
    dim_rows = sorted(by_dim.rows, key=lambda r: (-(r.rate or 0.0), -r.presented))
    labelled = []
    for row in dim_rows:
        code = getattr(row, dim)
        code = code if isinstance(code, str) else None
        label = names.get(code, code) if code else t("dim.none")
        labelled.append((code, label, row))
    bars = bar_chart(
        [(label, row.rate or 0.0, _percent(row.rate)) for _, label, row in labelled[:12]]
    )
    funnel_row = funnel.rows[0] if funnel.rows else None
    stages = []
    if funnel_row is not None:
        for stage in ("targeted", "reached", "presented", "accepted", "provisioned", "retained"):
            value = getattr(funnel_row, stage)
            if value is not None:
                stages.append((stage, int(value)))
    funnel_bars = bar_chart([(t(f"funnel.{s}"), float(v), str(v)) for s, v in stages])
    return {
        "since": since,
        "until": until,
        "dim": dim,
        "total": total.total,
        "contacts": funnel_row.reached if funnel_row else 0,
        "series": series,
        "by_dim": labelled,
        "bars": bars,
        "funnel": funnel,
        "funnel_row": funnel_row,
        "funnel_bars": funnel_bars,
        "lift": lift.rows[0] if lift is not None and lift.rows else None,
        "lift_by_channel": lift_by_channel,
        "agents": agents,
        "failures": failures,
        "audit": audit,
        "failed_sales": failed_sales,
        "retention": retention,
        "offer_names": _names(catalog, "offer", lang),
        "percent": _percent,
        "query": f"since={since.isoformat()}&until={until.isoformat()}",
        "scope": scope,  # the store or team a bound supervisor's numbers are limited to
        "campaigns": _campaigns_awaiting(services),
    }


def _campaigns_awaiting(services: Services) -> list[CampaignOut]:
    return services.campaigns.campaigns("submitted")


# --- errors on pages: words, never a stack trace --------------------------------------------------


def _page_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    lang, _ = _lang(request)
    t = translator(lang)
    if isinstance(exc, NoDataLoaded):
        status, message = 503, t("error.no_data")
    elif isinstance(exc, ServiceError):
        status, message = exc.status, t("error.generic", detail=exc.message)
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, t("error.generic", detail=exc.detail)
    else:
        log.exception("page %s failed", request.url.path)
        status, message = 500, t("error.server")
    body = _ERROR_PAGE.format(lang=lang, title=t("app.name"), message=_escape(message))
    return Response(body, status_code=status, media_type="text/html", headers=_PAGE_HEADERS)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


# Plain on purpose: it must render when the templates are what failed.
_ERROR_PAGE = (
    '<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>'
    '<link rel="stylesheet" href="/widgets/common/pages.css"></head><body class="nb-page">'
    '<main class="nb-main"><p class="nb-alert" role="alert">{message}</p>'
    '<p><a href="">↻</a></p></main></body></html>'
)


PAGES = Router(
    path="/",
    route_handlers=[screens, console, dashboard, demo_crm],
    exception_handlers={Exception: _page_error},
    include_in_schema=False,
)


async def _as_is(response: Any) -> Any:
    """Files are not results to count: this replaces the app's after_request hook here (it
    reads ``response.content``, which a file response does not have)."""
    return response


WIDGET_FILES = create_static_files_router(
    path="/widgets",
    directories=[WIDGETS_DIR],
    name="widgets",
    opt=_PAGE_OPT,
    include_in_schema=False,
    after_request=_as_is,
    # Short: a fixed widget reaches the counters within minutes, without a version in the URL.
    cache_control=CacheControlHeader(max_age=300, public=True),
)

# The console's JSON for its script keeps the API's error shape, so it is not in PAGES.
ROUTES: list[Router | HTTPRouteHandler] = [PAGES, console_tally, console_customer, WIDGET_FILES]
