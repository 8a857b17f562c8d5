"""The three screens in a real browser (Debian's chromium, headless, driven by Playwright)
against a real ``nextbest serve`` process on a small synthetic operator:

- counter: look up a demo number in the mock CRM, open the badge, sign in, subscribe and see
  pending -> active; decline with a reason and see the offer gone on the next look-up; the
  errors a clerk can meet, in words;
- console: an agent works three calls with the keyboard and sees the day's tally;
- dashboard: the supervisor's numbers move after those calls; a campaign is approved.

Screenshots go to the test's tmp directory, or to docs/img/ with NEXTBEST_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_process import ServerProcess

from nextbest.clock import SystemClock
from nextbest.keys import create_key
from nextbest.loader import load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.synth import generate

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 768}
DOCS_IMG = Path(__file__).parents[1] / "docs" / "img"
SHANGHAI = timezone(timedelta(hours=8))

if not Path(CHROMIUM).exists():  # `make test` installs it; a bare pytest run may not have it
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser tests: {CHROMIUM} is missing")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    shots: Path

    def api(self, role: str, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {self.keys[role]}"},
            timeout=30,
            **kwargs,
        )
        assert response.status_code < 300, response.text
        return response.json()

    def shot(self, page: Any, name: str, **kwargs: Any) -> None:
        page.screenshot(path=str(self.shots / name), **kwargs)


def _campaign(site: Site, cid: str, name: str, *, live: bool) -> None:
    today = datetime.now(SHANGHAI).date()
    site.api(
        "admin",
        "POST",
        "/v1/campaigns",
        json={
            "id": cid,
            "name": name,
            "strategy": "direct_recommendation",
            "offers": ["crbt_open", "music_club_vip", "data_100mb", "newspaper"],
            "starts_on": str(today - timedelta(days=1)),
            "ends_on": str(today + timedelta(days=30)),
            # Any hour: the test must pass at night too.
            "calling_from": "00:00",
            "calling_until": "24:00",
            "control_share": 0.05,
        },
    )
    site.api("admin", "POST", f"/v1/campaigns/{cid}/targets/select", json={"min_affinity": 0.3})
    site.api("admin", "POST", f"/v1/campaigns/{cid}/transitions", json={"action": "submit"})
    if live:
        site.api(
            "supervisor", "POST", f"/v1/campaigns/{cid}/transitions", json={"action": "approve"}
        )
        site.api("admin", "POST", f"/v1/campaigns/{cid}/transitions", json={"action": "launch"})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("browser")
    settings = Settings(database_url=f"sqlite:///{root / 'nextbest.db'}")
    generate(root / "extract", size=2000, seed=7)
    db = Database(settings)
    db.create_schema()
    now = SystemClock().now()
    load_extract(db, root / "extract", SystemClock())
    keys = {
        "clerk": create_key(db, role="clerk", user_id="clerk-ana", store_id="NJ-0001", now=now),
        "agent": create_key(db, role="agent", user_id="agent-bo", now=now),
        "supervisor": create_key(db, role="supervisor", user_id="sup-chen", now=now),
        "admin": create_key(db, role="admin", user_id="admin-dai", now=now),
    }
    db.dispose()
    server = ServerProcess(
        {
            "NEXTBEST_DATABASE_URL": settings.database_url,
            "NEXTBEST_SESSION_SECRET": "b" * 40,
            "NEXTBEST_WORKER_POLL_SECONDS": "0.1",
            "NEXTBEST_VERSION_CHECK_SECONDS": "0",
            "NEXTBEST_LOG_LEVEL": "warning",
        },
        root / "server.log",
    )
    server.start()
    shots = DOCS_IMG if os.environ.get("NEXTBEST_SCREENSHOTS") else root / "img"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        site = Site(url=server.url, keys=keys, shots=shots)
        _campaign(site, "autumn-music", "Autumn music push", live=True)
        _campaign(site, "winter-data", "Winter data bundle", live=False)
        yield site
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Any, locale: str = "en-US") -> Any:
    context = browser.new_context(viewport=VIEWPORT, locale=locale, timezone_id="Asia/Shanghai")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return page


def _sign_in(page: Any, site: Site, path: str, role: str) -> None:
    page.goto(site.url + path)
    page.fill("#nb-key", site.keys[role])
    page.keyboard.press("Enter")
    page.wait_for_selector(".nb-signed-in")
    # The signed-in page is parsed before its script runs: keys pressed before that are lost.
    page.wait_for_selector("html[data-nb-ready]", state="attached")


def _badge(page: Any) -> Any:
    return page.locator("nextbest-counter .badge")


def _offer_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "nextbest-counter .offer", "cards => cards.map(c => c.dataset.offer)"
    )
    return ids


# --- the counter pop-up -------------------------------------------------------------------------


def test_counter_subscribe_then_decline_in_the_mock_crm(browser: Any, site: Site) -> None:
    page = _page(browser)
    page.goto(site.url + "/demo/crm")
    # Not signed in: the badge stays quiet (a lock), nothing opens by itself.
    page.fill("#customer-number", "13800000001")
    page.wait_for_function(
        "() => window.NextBest && NextBest.state().status === 'signin'", timeout=10_000
    )
    assert page.locator("nextbest-counter .panel").is_hidden()
    # The clerk opens it with the keyboard and signs in once, in the panel.
    _badge(page).focus()
    page.keyboard.press("Enter")
    page.fill("nextbest-counter .panel input[type=password]", site.keys["clerk"])
    page.keyboard.press("Enter")
    page.wait_for_selector("nextbest-counter .offer")
    offers = _offer_ids(page)
    assert len(offers) >= 2
    assert re.fullmatch(r"\d+", _badge(page).inner_text())
    assert int(_badge(page).inner_text()) == len(offers)
    assert "lit" in (_badge(page).get_attribute("class") or "")
    first, second = offers[0], offers[1]
    card = page.locator(f'nextbest-counter .offer[data-offer="{first}"]')
    assert card.locator(".price").inner_text()  # name, price, pitch, reasons are all there
    assert card.locator(".pitch").inner_text() and card.locator(".why li").count() >= 1
    site.shot(page, "counter.png")

    # Subscribe: pending, then active, without a reload.
    card.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector(f'nextbest-counter .offer[data-offer="{first}"] [data-state="active"]')
    assert "Active" in card.locator(".state").inner_text()

    # Decline the second with a reason.
    other = page.locator(f'nextbest-counter .offer[data-offer="{second}"]')
    other.get_by_role("button", name="Declined").click()
    other.locator("select").select_option("price")
    other.get_by_role("button", name="Record").click()
    page.wait_for_selector(f'nextbest-counter [data-offer="{second}"] [data-state="declined"]')
    assert "Too expensive" in other.locator(".state").inner_text()

    # Escape closes the panel and gives the focus back to the badge.
    page.keyboard.press("Escape")
    assert page.locator("nextbest-counter .panel").is_hidden()

    # The next look-up of the same customer offers neither again.
    page.fill("#customer-number", "")
    page.fill("#customer-number", "13800000001")
    page.wait_for_function("() => NextBest.state().status !== 'loading'")
    page.evaluate("NextBest.open()")
    page.wait_for_selector("nextbest-counter .panel:not([hidden])")
    again = _offer_ids(page)
    assert first not in again and second not in again
    assert page.js_errors == []
    page.context.close()


def test_counter_errors_are_words(browser: Any, site: Site) -> None:
    page = _page(browser, locale="zh-CN")
    page.goto(site.url + "/demo/crm")
    page.evaluate("keys => NextBest.init({key: keys})", site.keys["clerk"])
    # A number the warehouse does not know: general offers, and it says so.
    page.fill("#customer-number", "13800000009")
    page.wait_for_function("() => NextBest.state().status === 'offers'")
    page.evaluate("NextBest.open()")
    assert "经营分析系统中没有此号码" in page.locator("nextbest-counter .panel").inner_text()
    site.shot(page, "counter-zh.png")
    # nextbest unreachable: the badge turns to "!" and the panel says why.
    page.route("**/v1/decisions", lambda route: route.abort())
    page.evaluate("NextBest.lookup('13800000001')")
    page.wait_for_function("() => NextBest.state().status === 'error'")
    assert "无法连接 nextbest" in page.locator("nextbest-counter .panel").inner_text()
    assert _badge(page).inner_text() == "!"
    page.unroute("**/v1/decisions")
    # An expired (here: unknown) key.
    page.evaluate("NextBest.init({key: 'nb_clerk_revoked'})")
    page.evaluate("NextBest.lookup('13800000004')")
    page.wait_for_function("() => NextBest.state().status === 'error'")
    assert "密钥无效" in page.locator("nextbest-counter .panel").inner_text()
    assert page.js_errors == []
    page.context.close()


# --- the console and the dashboard ----------------------------------------------------------------


def _kpis(page: Any) -> dict[str, str]:
    found: dict[str, str] = page.eval_on_selector_all(
        "[data-kpi]", "els => Object.fromEntries(els.map(e => [e.dataset.kpi, e.textContent]))"
    )
    return found


def _tally(page: Any) -> int:
    return int(page.locator('[data-tally="calls"]').inner_text())


def _wait_tally(page: Any, calls: int) -> None:
    page.wait_for_function(
        "n => document.querySelector('[data-tally=calls]').textContent === String(n)", arg=calls
    )


def _next_task(page: Any) -> None:
    before = page.locator('[data-field="msisdn"]').inner_text()
    page.keyboard.press("n")
    page.wait_for_function(
        "before => !document.querySelector('[data-nb-work]').hidden && "
        "!document.querySelector('[data-nb-work]').classList.contains('nb-done') && "
        "document.querySelector('[data-field=msisdn]').textContent !== before",
        arg=before,
    )


def test_console_three_calls_move_the_dashboard(browser: Any, site: Site) -> None:
    board = _page(browser)
    _sign_in(board, site, "/dashboard", "supervisor")
    before = _kpis(board)

    console = _page(browser)
    _sign_in(console, site, "/console", "agent")
    assert _tally(console) == 0

    # 1: subscribed (S).
    _next_task(console)
    assert console.locator(".nb-offer").count() >= 1
    assert console.locator('[data-field="opening"]').first.inner_text() not in ("", "–")
    console.wait_for_function(
        "() => document.querySelector('[data-field=lifecycle]').textContent !== '…'"
    )
    site.shot(console, "console.png")
    console.keyboard.press("s")
    console.wait_for_selector("[data-nb-work].nb-done")
    _wait_tally(console, 1)

    # 2: declined (D), a reason, Enter.
    _next_task(console)
    console.keyboard.press("d")
    console.select_option('[data-nb-more="declined"] select', "not_interested")
    console.keyboard.press("Enter")
    _wait_tally(console, 2)

    # 3: call back (B) tomorrow at ten: the picker is pre-filled, Enter records it.
    _next_task(console)
    console.keyboard.press("b")
    tomorrow = datetime.now(SHANGHAI).date() + timedelta(days=1)  # the browser's time zone
    value = console.input_value('[data-nb-more="callback"] input')
    assert value == f"{tomorrow.isoformat()}T10:00"
    console.keyboard.press("Enter")
    _wait_tally(console, 3)
    assert console.locator('[data-tally="accepted"]').inner_text() == "1"
    assert console.locator('[data-tally="declined"]').inner_text() == "1"
    assert console.locator('[data-tally="callbacks"]').inner_text() == "1"
    assert console.js_errors == []

    # The supervisor reloads: three more contacts presented, one more sale.
    board.reload()
    after = _kpis(board)
    assert int(after["presented"]) >= int(before["presented"]) + 3
    assert int(after["accepted"]) == int(before["accepted"]) + 1
    assert board.locator('[data-table="agents"] [data-agent="agent-bo"]').count() == 1
    assert board.locator("svg polyline").count() == 2
    board.evaluate("document.getElementById('conversion').scrollIntoView()")
    site.shot(board, "dashboard.png", full_page=True)

    # Campaign approval: another supervisor than the submitter approves.
    row = board.locator('[data-table="campaigns"] tr[data-campaign="winter-data"]')
    row.get_by_role("button", name="Approve").click()
    board.wait_for_selector('[data-table="campaigns"] td[data-done]')
    assert "Approved" in row.inner_text()
    status = site.api("supervisor", "GET", "/v1/campaigns/winter-data")["status"]
    assert status == "approved"
    assert board.js_errors == []
    board.context.close()
    console.context.close()


def test_dashboard_in_chinese(browser: Any, site: Site) -> None:
    page = _page(browser, locale="zh-CN")
    _sign_in(page, site, "/dashboard", "supervisor")
    assert "主管看板" in page.locator("h1").inner_text()
    assert "营销漏斗" in page.content()
    page.click("text=English")
    assert "Supervisor dashboard" in page.locator("h1").inner_text()
    page.context.close()


def test_screenshots_are_small_pngs(site: Site) -> None:
    for name in ("counter.png", "counter-zh.png", "console.png", "dashboard.png"):
        path = site.shots / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size < 400_000, name
