"""The dashboard in Debian's Chromium, driven by Playwright, against the running Serve app on Ray.

Screenshots of every screen go to tests/e2e/artifacts/ (git-ignored). Runs with the other e2e modules
or alone: ``pytest tests/e2e/test_dashboard.py``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e.conftest import ARTIFACTS, Api

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TABS = ("overview", "markets", "strategies", "risk", "orders", "logs", "config")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    require(path is not None, f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install playwright)")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A dashboard page that records every console error and uncaught exception."""

    def __init__(self, browser: Any, api: Api) -> None:
        self.context = browser.new_context(viewport={"width": 1500, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.api = api
        self.page.goto(api.base_url + "/", wait_until="domcontentloaded")
        self.page.wait_for_selector("#conn.up", timeout=30_000)

    def until(self, check: Any, timeout: float, what: str) -> None:
        """Poll from Python (the page's CSP forbids the string evaluation of Playwright's wait helpers)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def set_token(self) -> None:
        self.page.click("#token-btn")
        self.page.fill("#token-input", self.api.token)
        self.page.click("#token-save")
        self.until(lambda: self.text("#token-btn") == "Token: set", 5, "the token to be saved")

    def tab(self, name: str) -> None:
        self.page.click(f".tab[data-tab={name}]")
        self.page.wait_for_selector(f"#tab-{name}.active")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, mmats_api: Api) -> Iterator[Page]:
    p = Page(browser, mmats_api)
    try:
        yield p
    finally:
        p.close()
    assert not p.errors, f"browser console errors: {p.errors}"


def api_json(api: Api, path: str) -> Any:
    r = api.get(path)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_screen_loads_without_console_errors(page: Page) -> None:
    pg = page.page
    page.until(lambda: page.text("#kpi-equity").strip() not in ("", "—"), 30, "the equity figure")
    assert pg.inner_text("#env-badge") == "PAPER"
    assert "env-PAPER" in (pg.get_attribute("#env-strip", "class") or "")
    assert pg.inner_text("#mode-badge").lower() == "operator"
    assert "RUNNING" in pg.inner_text("#kill-badge")
    assert pg.is_visible("#estop")
    pg.wait_for_selector("#equity-chart canvas", timeout=20_000)
    for name in TABS:
        page.tab(name)
        time.sleep(2.0)  # one or two refresh cycles
        assert pg.is_visible("#estop"), f"emergency stop hidden on {name}"
        page.shot(name)
    page.tab("markets")
    pg.wait_for_selector("#price-chart canvas", timeout=20_000)
    page.tab("strategies")
    pg.wait_for_selector("tr[data-row=sma_fast]", timeout=20_000)
    page.tab("logs")
    pg.wait_for_selector("#log-view .logline", timeout=30_000)
    pg.click("#audit-verify")
    pg.wait_for_selector("#audit-result.ok", timeout=30_000)
    assert "chain intact" in pg.inner_text("#audit-result")


def test_equity_figure_changes_while_the_replay_runs(page: Page) -> None:
    pg = page.page
    page.until(lambda: page.text("#kpi-equity").strip() not in ("", "—"), 30, "the equity figure")
    first = pg.inner_text("#kpi-equity")
    first_bar = pg.inner_text("#bar-time")
    page.until(lambda: page.text("#kpi-equity") != first, 120, "the equity figure to change")
    assert pg.inner_text("#kpi-equity") != first
    assert pg.inner_text("#bar-time") != first_bar


def test_toggling_a_strategy_off_is_reflected_in_the_api(page: Page) -> None:
    pg = page.page
    page.set_token()
    page.tab("strategies")
    row = "tr[data-row=sma_fast]"
    pg.wait_for_selector(row)
    assert pg.is_checked(f"{row} input[type=checkbox]")
    pg.click(f"{row} .switch")
    pg.wait_for_selector("#confirm-dialog[open]")
    assert "Disable sma_fast" in pg.inner_text("#confirm-title")
    pg.click("#confirm-ok")
    page.api.wait_for(lambda: api_json(page.api, "/api/v1/strategies/sma_fast")["enabled"] is False, 15, 0.2,
                      "sma_fast disabled through the dashboard")
    page.until(lambda: not pg.is_checked(f"{row} input[type=checkbox]"), 10, "the toggle to show off")
    page.shot("strategy-disabled")
    # and back on
    pg.click(f"{row} .switch")
    pg.wait_for_selector("#confirm-dialog[open]")
    pg.click("#confirm-ok")
    page.api.wait_for(lambda: api_json(page.api, "/api/v1/strategies/sma_fast")["enabled"] is True, 15, 0.2,
                      "sma_fast enabled again")


def test_emergency_stop_with_confirmation_sets_hard(page: Page) -> None:
    pg = page.page
    page.set_token()
    # the keyboard shortcut opens the same confirmation; cancelling changes nothing
    pg.keyboard.press("Control+Shift+X")
    pg.wait_for_selector("#confirm-dialog[open]")
    assert pg.inner_text("#confirm-title") == "EMERGENCY STOP"
    pg.click("#confirm-cancel")
    time.sleep(0.5)
    assert api_json(page.api, "/api/v1/kill-switch")["state"] == "RUNNING"
    # the button, then confirm
    pg.click("#estop")
    pg.wait_for_selector("#confirm-dialog[open]")
    page.shot("emergency-stop-confirm")
    pg.click("#confirm-ok")
    page.api.wait_for(lambda: api_json(page.api, "/api/v1/kill-switch")["state"] == "HARD", 10, 0.1,
                      "kill switch HARD after the emergency stop")
    ks = api_json(page.api, "/api/v1/kill-switch")
    assert "dashboard" in ks["reason"]
    page.api.wait_for(lambda: api_json(page.api, "/api/v1/positions")["total"] == 0, 10, 0.2, "flat after HARD")
    page.until(lambda: "HARD" in page.text("#kill-badge"), 10, "the header to show HARD")
    page.shot("after-emergency-stop")
