"""The screens without a browser: which template rendered with what context, in which language,
what a page says when something is wrong, and the console's own JSON. (The journeys through
them in a real browser are in test_browser.py.)"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import app_settings
from litestar import Litestar
from litestar.testing import TestClient

from nextbest.api import create_app
from nextbest.api.pages import WIDGETS_DIR
from nextbest.charts import bar_chart, line_chart, nice_max
from nextbest.clock import FixedClock
from nextbest.i18n import MESSAGES, choose_lang, parse_accept_language, translator
from nextbest.keys import create_key
from nextbest.loader import load_extract
from nextbest.sessions import CSRF_COOKIE, SESSION_COOKIE
from nextbest.settings import Settings
from nextbest.storage.db import Database

HTTPS = "https://testserver.local"  # the session cookie is Secure: sent on https only
ROLES = {
    "clerk": ("clerk-1", "NJ-0001"),
    "agent": ("agent-1", None),
    "supervisor": ("sup-1", None),
    "admin": ("admin-1", None),
}


@dataclass
class Rendered:
    name: str
    context: dict[str, Any]


@dataclass
class Web:
    client: TestClient[Litestar]
    db: Database
    clock: FixedClock
    keys: dict[str, str]
    rendered: list[Rendered] = field(default_factory=list)

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def sign_in(self, role: str) -> str:
        signed = self.client.post("/v1/session", json={"key": self.keys[role]})
        assert signed.status_code == 201, signed.text
        token: str = signed.json()["csrf_token"]
        return token

    def page(self, path: str, **kwargs: Any) -> tuple[Any, Rendered]:
        before = len(self.rendered)
        response = self.client.get(path, **kwargs)
        assert len(self.rendered) == before + 1, f"{path}: no template rendered: {response.text}"
        return response, self.rendered[-1]


def _record_templates(app: Litestar, seen: list[Rendered]) -> None:
    """Wrap the Jinja engine's get_template so every render is recorded (name and context)."""
    engine: Any = app.template_engine
    original = engine.get_template

    class Recording:
        def __init__(self, name: str) -> None:
            self.name = name
            self.template = original(name)

        def render(self, *args: Any, **kwargs: Any) -> str:
            seen.append(Rendered(self.name, dict(*args, **kwargs)))
            text: str = self.template.render(*args, **kwargs)
            return text

    engine.get_template = Recording


@pytest.fixture
def web(sqlite_settings: Settings, clock: FixedClock, standard_extract: Path) -> Iterator[Web]:
    db = Database(sqlite_settings)
    db.create_schema()
    load_extract(db, standard_extract, clock)
    keys = {
        role: create_key(db, role=role, user_id=user, store_id=store, now=clock.now())
        for role, (user, store) in ROLES.items()
    }
    keys["supervisor-2"] = create_key(db, role="supervisor", user_id="sup-2", now=clock.now())
    settings = msgspec.structs.replace(app_settings(sqlite_settings), session_secret="p" * 40)
    app = create_app(settings, clock=clock, db=db)
    seen: list[Rendered] = []
    _record_templates(app, seen)
    with TestClient(app, base_url=HTTPS) as client:
        yield Web(client=client, db=db, clock=clock, keys=keys, rendered=seen)
    db.dispose()


# --- languages ----------------------------------------------------------------------------------


def test_both_languages_have_every_message_and_the_same_placeholders() -> None:
    assert MESSAGES["en"].keys() == MESSAGES["zh"].keys()
    for key, english in MESSAGES["en"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", english))
        assert placeholders == set(re.findall(r"\{(\w+)\}", MESSAGES["zh"][key])), key
        assert MESSAGES["zh"][key].strip(), key


def test_language_comes_from_the_switch_then_the_browser() -> None:
    assert parse_accept_language("en;q=0.5, zh-CN,zh;q=0.9") == [
        ("zh-cn", 1.0),
        ("zh", 0.9),
        ("en", 0.5),
    ]
    assert parse_accept_language("fr;q=abc, ;q=1, de;q=0") == []
    assert choose_lang(accept_language="zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert choose_lang(accept_language="fr-FR,zh-TW;q=0.7,en;q=0.8") == "en"
    assert choose_lang(accept_language="fr-FR,de") == "en"
    assert choose_lang(None, "zh", "en-US") == "zh"  # the switch's cookie beats the browser
    assert choose_lang("en", "zh", "zh-CN") == "en"  # and the switch itself beats its cookie
    assert choose_lang("xx", None, "zh") == "zh"  # an unknown value is ignored
    t = translator("zh")
    assert t("signin.as", user="agent-1", role=t("role.agent")) == "已登录：agent-1（坐席）"
    assert t("no.such.message") == "no.such.message"


def test_a_chinese_browser_gets_the_chinese_page_and_the_switch_sticks(web: Web) -> None:
    response, page = web.page("/console", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert page.name == "console.html"
    assert page.context["lang"] == "zh"
    assert '<html lang="zh-CN">' in response.text
    for words in ("外呼工作台", "登录", "密钥", "English"):
        assert words in response.text
    assert page.context["switch_url"] == "/console?lang=en"
    assert page.context["page_data"]["messages"]["error.unreachable"].startswith("无法连接")

    switched, page = web.page("/dashboard?lang=en", headers={"Accept-Language": "zh-CN"})
    assert page.context["lang"] == "en" and "Supervisor dashboard" in switched.text
    assert "nextbest_lang=en" in switched.headers["set-cookie"]
    # The switch is remembered over the browser's preference.
    _, page = web.page("/console", headers={"Accept-Language": "zh-CN"})
    assert page.context["lang"] == "en"


# --- signing in, roles --------------------------------------------------------------------------


def test_pages_need_no_key_and_show_the_sign_in_form(web: Web) -> None:
    for path, template in (
        ("/", "index.html"),
        ("/console", "console.html"),
        ("/dashboard", "dashboard.html"),
        ("/demo/crm", "demo_crm.html"),
    ):
        response, page = web.page(path)
        assert response.status_code == 200, path
        assert page.name == template
        assert page.context["actor"] is None
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    response, page = web.page("/console")
    assert page.context["allowed"] is False
    assert "data-nb-signin" in response.text and 'type="password"' in response.text
    assert "console.js" not in response.text  # no console until signed in


def test_a_signed_in_agent_gets_the_console_with_the_days_tally(web: Web) -> None:
    web.sign_in("agent")
    response, page = web.page("/console")
    assert page.context["allowed"] is True
    assert page.context["actor"].user_id == "agent-1"
    tally = page.context["tally"]
    assert (tally.calls, tally.accepted, tally.rate) == (0, 0, None)
    assert tally.day == date(2026, 11, 19)
    assert [o for o, _ in page.context["outcomes"]] == [
        "accepted",
        "declined",
        "callback",
        "no_answer",
        "wrong_number",
        "do_not_call",
    ]
    assert "/widgets/console/console.js" in response.text
    assert 'type="datetime-local"' in response.text
    assert "Signed in as agent-1 (agent)" in response.text
    data = page.context["page_data"]
    assert data["signed_in"] is True and data["csrf_header"] == "X-CSRF-Token"
    assert "outcome.do_not_call" in data["messages"]


def test_the_wrong_role_is_told_in_words(web: Web) -> None:
    web.sign_in("clerk")
    response, page = web.page("/dashboard")
    assert page.context["allowed"] is False
    assert page.context["data"] is None  # nothing computed for a clerk
    assert "This screen is for supervisor, admin; you are signed in as clerk." in response.text
    response, page = web.page("/console", headers={"Accept-Language": "zh"})
    assert "此界面供坐席使用；您当前的身份是营业员。" in response.text


def test_an_ended_session_says_so(web: Web) -> None:
    token = web.sign_in("supervisor")
    assert web.client.delete("/v1/session", headers={"X-CSRF-Token": token}).status_code == 204
    stale = web.client.cookies.get(SESSION_COOKIE)
    assert not stale
    web.client.cookies.set(SESSION_COOKIE, "forged.value", domain="testserver.local")
    response, page = web.page("/dashboard")
    assert page.context["session_ended"] is True and page.context["actor"] is None
    assert "Your session has ended or expired. Sign in again." in response.text


# --- the dashboard ------------------------------------------------------------------------------


def _sell(
    web: Web,
    msisdn: str = "13900000001",
    outcome: str = "accepted",
    role: str = "clerk",
    channel: str = "store",
) -> Any:
    decision = web.client.post(
        "/v1/decisions",
        json={"msisdn": msisdn, "channel": channel},
        headers=web.bearer(role),
    ).json()
    offer = decision["offers"][0]["offer_id"]
    recorded = web.client.post(
        f"/v1/decisions/{decision['decision_id']}/outcomes",
        json={"offer_id": offer, "outcome": outcome},
        headers=web.bearer(role),
    )
    assert recorded.status_code == 201, recorded.text
    return decision


def test_dashboard_shows_the_reports_for_the_period_and_they_move(web: Web) -> None:
    web.sign_in("supervisor")
    response, page = web.page("/dashboard")
    data = page.context["data"]
    assert (data["since"], data["until"]) == (date(2026, 11, 6), date(2026, 11, 19))
    assert data["total"].presented == 0 and data["dim"] == "offer"
    assert data["series"].empty and data["by_dim"] == []
    assert "Nothing in this period." in response.text

    _sell(web, "13900000001", "accepted")
    _sell(web, "13900000003", "declined")
    response, page = web.page("/dashboard")
    data = page.context["data"]
    assert (data["total"].presented, data["total"].accepted) == (2, 1)
    assert data["contacts"] == 2
    assert data["total"].rate == 0.5
    assert not data["series"].empty
    # The day's point is the last one: 2 presented, 1 accepted.
    presented, accepted = data["series"].series
    assert presented.dots[-1][2] == "2" and accepted.dots[-1][2] == "1"
    assert next(label for _, label, _ in data["by_dim"]) == "Ring-back tone, two songs free"
    assert data["funnel_row"].reached == 2 and data["funnel_row"].accepted == 1
    assert data["agents"].rows[0].agent == "clerk-1"
    assert '<b data-kpi="accepted">1</b>' in response.text
    assert "<svg" in response.text and "<polyline" in response.text
    # Every table has its CSV, for the same period.
    assert (
        'href="/v1/reports/conversion?since=2026-11-06&amp;until=2026-11-19&amp;by=offer'
        '&amp;format=csv"' in response.text
    )
    csv = web.client.get("/v1/reports/conversion?since=2026-11-06&until=2026-11-19&format=csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")


def test_dashboard_by_another_dimension_and_a_bad_range(web: Web) -> None:
    web.sign_in("admin")
    _sell(web)
    _, page = web.page("/dashboard?by=channel&since=2026-11-18&until=2026-11-19")
    data = page.context["data"]
    assert data["dim"] == "channel" and page.context["problem"] is None
    assert [(code, row.presented) for code, _, row in data["by_dim"]] == [("store", 1)]
    response, page = web.page("/dashboard?by=planet&since=yesterday&until=2026-11-19")
    assert page.context["problem"] is not None
    assert page.context["data"]["dim"] == "offer"
    assert page.context["data"]["since"] == date(2026, 11, 6)
    assert 'role="alert"' in response.text
    _, page = web.page("/dashboard?since=2026-11-19&until=2026-11-01")
    assert page.context["problem"] == "dates"


def test_a_scoped_supervisors_dashboard_shows_their_store_or_team_only(web: Web) -> None:
    now = web.clock.now()
    for name, role, store, team in (
        ("clerk-wx", "clerk", "WX-0003", None),
        ("agent-t1", "agent", None, "T1"),
        ("agent-t2", "agent", None, "T2"),
        ("sup-nj", "supervisor", "NJ-0001", None),
        ("sup-t1", "supervisor", None, "T1"),
    ):
        web.keys[name] = create_key(
            web.db, role=role, user_id=name, store_id=store, team_id=team, now=now
        )
    # (who, number, channel, outcome): crbt_open 5 yuan at NJ-0001, crbt_box 1 yuan at
    # WX-0003, an alert (1 yuan) sold by T1, one declined by T2.
    for role, msisdn, channel, outcome in (
        ("clerk", "13900000001", "store", "accepted"),
        ("clerk-wx", "13900000003", "store", "accepted"),
        ("agent-t1", "13900000004", "inbound", "accepted"),
        ("agent-t2", "13900000002", "inbound", "declined"),
    ):
        _sell(web, msisdn, outcome, role=role, channel=channel)

    def dashboard(role: str) -> tuple[str, dict[str, Any]]:
        web.sign_in(role)
        response, page = web.page("/dashboard?by=agent")
        assert page.context["allowed"] is True
        return response.text, page.context["data"]

    shown = {}
    for role in ("sup-nj", "sup-t1", "admin"):
        text, data = dashboard(role)
        total = data["total"]
        shown[role] = (
            data["contacts"],
            total.presented,
            total.accepted,
            total.revenue,
            [code for code, _, _ in data["by_dim"]],
            [row.agent for row in data["agents"].rows],
            'data-kpi="lift"' in text,
        )
        assert f'<b data-kpi="accepted">{total.accepted}</b>' in text
    assert shown == {
        "sup-nj": (1, 1, 1, 5.0, ["clerk-1"], ["clerk-1"], False),
        "sup-t1": (1, 1, 1, 1.0, ["agent-t1"], ["agent-t1"], False),
        "admin": (
            4,
            4,
            3,
            7.0,
            ["agent-t1", "clerk-1", "clerk-wx", "agent-t2"],
            ["agent-t1", "clerk-1", "clerk-wx", "agent-t2"],
            True,
        ),
    }
    # The lift (the whole operator's) is left out for a bound supervisor, not shown empty.
    text, data = dashboard("sup-t1")
    assert data["lift"] is None and data["lift_by_channel"] is None
    assert 'data-table="lift"' not in text and "/v1/reports/lift" not in text
    assert data["scope"].team_id == "T1"
    assert "Team T1 only" in text  # and it says so
    # Its links to the API answer with the same scope (the session is the supervisor's).
    answer = web.client.get("/v1/reports/conversion?since=2026-11-06&until=2026-11-19&by=agent")
    assert [r["agent"] for r in answer.json()["rows"]] == ["agent-t1"]
    text, _ = dashboard("sup-nj")
    assert "Store NJ-0001 only" in text
    text, _ = dashboard("admin")
    assert 'class="nb-scope"' not in text


def test_dashboard_lists_campaigns_awaiting_approval(web: Web) -> None:
    _campaign(web, "c-await", submit=True, approve=False)
    web.sign_in("supervisor-2")
    response, page = web.page("/dashboard")
    assert [c.id for c in page.context["data"]["campaigns"]] == ["c-await"]
    assert 'data-nb-campaign="c-await" data-action="approve"' in response.text


def test_a_page_that_fails_says_so_in_words_without_a_trace(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    web.sign_in("supervisor")
    services = web.client.app.state.services

    def broken(**_: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(services.reports, "conversion", broken)
    response = web.client.get("/dashboard", headers={"Accept-Language": "zh"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "nextbest 出现问题，本次操作未记录" in response.text
    assert "database on fire" not in response.text and "Traceback" not in response.text


# --- the console's JSON -------------------------------------------------------------------------


def _campaign(web: Web, cid: str, *, submit: bool = True, approve: bool = True) -> None:
    admin, sup = web.bearer("admin"), web.bearer("supervisor")
    today = date(2026, 11, 19)
    created = web.client.post(
        "/v1/campaigns",
        headers=admin,
        json={
            "id": cid,
            "name": f"Campaign {cid}",
            "strategy": "direct_recommendation",
            "offers": ["crbt_open", "club_vip"],
            "starts_on": str(today - timedelta(days=1)),
            "ends_on": str(today + timedelta(days=10)),
            "control_share": 0.0,
        },
    )
    assert created.status_code == 201, created.text
    loaded = web.client.put(
        f"/v1/campaigns/{cid}/targets", headers=admin, json={"list": "13900000001\n"}
    )
    assert loaded.status_code == 200, loaded.text
    steps = [("submit", admin)] if submit else []
    if approve:
        steps += [("approve", sup), ("launch", admin)]
    for action, who in steps:
        moved = web.client.post(
            f"/v1/campaigns/{cid}/transitions", headers=who, json={"action": action}
        )
        assert moved.status_code == 200, moved.text


def test_console_customer_summary_is_for_the_agent_holding_the_task(web: Web) -> None:
    _campaign(web, "c-live")
    token = web.sign_in("agent")
    assert web.client.get("/console/tasks/999/customer").status_code == 404
    leased = web.client.post("/v1/tasks/next?lang=zh", headers={"X-CSRF-Token": token})
    assert leased.status_code == 200, leased.text
    task = leased.json()["task"]
    summary = web.client.get(f"/console/tasks/{task['task_id']}/customer?lang=zh")
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["known"] is True and body["brand"]
    assert [(s["service"], s["stage"]) for s in body["lifecycle"]] == [("crbt", "potential")]
    assert body["lifecycle"][0]["stage_name"] == "潜在"
    assert body["strategy"].startswith("直接推荐")
    assert "13900000001" not in summary.text  # the number stays masked here too

    # Another agent, or no session: refused in the API's error shape.
    other = create_key(web.db, role="agent", user_id="agent-2", now=web.clock.now())
    web.client.post("/v1/session", json={"key": other})
    refused = web.client.get(f"/console/tasks/{task['task_id']}/customer")
    assert refused.status_code == 409 and "not leased to you" in refused.json()["detail"]
    web.client.cookies.clear()
    assert web.client.get("/console/tally").status_code == 401


def test_console_tally_counts_the_agents_calls_today(web: Web) -> None:
    _campaign(web, "c-tally")
    token = web.sign_in("agent")
    task = web.client.post("/v1/tasks/next", headers={"X-CSRF-Token": token}).json()["task"]
    done = web.client.post(
        f"/v1/tasks/{task['task_id']}/outcome",
        json={"outcome": "accepted", "offer_id": task["decision"]["offers"][0]["offer_id"]},
        headers={"X-CSRF-Token": token},
    )
    assert done.status_code == 201, done.text
    tally = web.client.get("/console/tally").json()
    assert (tally["calls"], tally["accepted"], tally["rate"]) == (1, 1, 1.0)
    _, page = web.page("/console")
    assert page.context["tally"].accepted == 1


# --- the counter widget and the demo CRM ----------------------------------------------------------


def test_demo_crm_embeds_the_counter_with_one_script_tag(web: Web) -> None:
    response, page = web.page("/demo/crm", headers={"Accept-Language": "zh-CN"})
    tags = re.findall(r"<script[^>]*counter\.js[^>]*>", response.text)
    assert len(tags) == 1
    assert 'data-watch="#customer-number"' in tags[0] and 'data-lang="zh"' in tags[0]
    assert "13800000001" in page.context["examples"]
    assert "客户号码" in response.text


def test_widget_files_are_served_without_a_key_and_nothing_comes_from_elsewhere(web: Web) -> None:
    js = web.client.get("/widgets/counter/counter.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "attachShadow" in js.text
    assert web.client.get("/widgets/../pyproject.toml").status_code == 404
    assert web.client.get("/widgets/counter/nope.js").status_code == 404
    # No CDN: every script, style and image the screens load is this server's.
    templates = Path(__file__).parents[1] / "nextbest" / "templates"
    for path in [*templates.glob("*.html"), *WIDGETS_DIR.rglob("*.*")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path
        assert "@import" not in text and "url(http" not in text, path


def test_the_counter_widget_stays_small() -> None:
    source = (WIDGETS_DIR / "counter" / "counter.js").read_bytes()
    assert len(gzip.compress(source, 9)) < 12_000  # 9.0 KB today; docs/widgets.md says so


def test_signing_in_a_page_leaves_the_csrf_token_readable_for_its_scripts(web: Web) -> None:
    web.sign_in("agent")
    assert web.client.cookies.get(CSRF_COOKIE)


# --- chart geometry -----------------------------------------------------------------------------


def test_chart_geometry() -> None:
    assert [nice_max(v) for v in (0, 0.3, 1, 7, 12, 26, 180)] == [1, 0.5, 1, 10, 20, 50, 200]
    chart = line_chart(["a", "b", "c"], [("x", "presented", [0.0, 5.0, 10.0])])
    xs = [x for x, _, _ in chart.series[0].dots]
    ys = [y for _, y, _ in chart.series[0].dots]
    assert xs[0] == chart.left and xs[-1] == chart.right
    assert ys[0] == chart.bottom and ys[-1] == chart.top  # 10 is the top of a 0-10 axis
    assert [t.label for t in chart.y_ticks] == ["0", "2.5", "5", "7.5", "10"]
    assert not chart.empty and line_chart([], []).empty
    bars = bar_chart([("a", 2.0, "2"), ("b", 1.0, "1"), ("c", 0.0, "0")])
    assert [b.fraction for b in bars.bars] == [1.0, 0.5, 0.0]
    assert bars.bars[0].width == bars.plot_width
    assert bar_chart([]).empty
