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
    # A fill can move the equity between two bars: the clock must move too, within the replay's pace.
    page.until(lambda: page.text("#bar-time") != first_bar, 60, "the bar time to move")


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


def test_enter_in_the_token_dialog_saves_the_token_and_an_action_succeeds(page: Page) -> None:
    pg = page.page
    pg.click("#token-btn")
    pg.wait_for_selector("#token-dialog[open]")
    pg.fill("#token-input", page.api.token)
    pg.press("#token-input", "Enter")  # the form's default button must be Save, not Forget
    page.until(lambda: page.text("#token-btn") == "Token: set", 5, "the token to be saved on Enter")
    assert pg.evaluate("sessionStorage.getItem('mmats_token')") == page.api.token
    # a mutating action with the stored token: cancel all open orders (harmless with none open)
    page.tab("orders")
    pg.click("#cancel-all")
    pg.wait_for_selector("#confirm-dialog[open]")
    pg.click("#confirm-ok")
    page.until(lambda: "order(s) canceled" in page.text("#toasts"), 10, "the bulk cancel to succeed")
    assert "refused" not in page.text("#toasts")
    assert not pg.is_visible("#token-dialog[open]")
    # Forget is a separate button: it clears the token
    pg.click("#token-btn")
    pg.click("#token-clear")
    page.until(lambda: page.text("#token-btn") == "Token: not set", 5, "the token to be forgotten")


def test_a_tab_chosen_while_the_first_loads_run_stays_chosen(browser: Any, mmats_api: Api) -> None:
    """The first loads (equity, markets, logs) must not switch back to the start tab when they finish."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        # the first loads answer late, as on a busy machine: a click lands while they are in flight
        context.add_init_script("""(() => { const f = window.fetch.bind(window);
          window.fetch = (u, o) => String(u).includes("/markets") || String(u).includes("/pnl/equity")
            ? new Promise((r) => setTimeout(r, 2500)).then(() => f(u, o)) : f(u, o); })();""")
        pg = context.new_page()
        pg.goto(mmats_api.base_url + "/", wait_until="domcontentloaded")
        pg.click(".tab[data-tab=orders]")
        pg.wait_for_selector("#tab-orders.active", timeout=5_000)
        pg.wait_for_selector("#conn.up", timeout=30_000)
        time.sleep(4.0)  # the delayed first loads have answered by now
        assert "active" in (pg.get_attribute("#tab-orders", "class") or "").split()
        assert "active" not in (pg.get_attribute("#tab-overview", "class") or "").split()
    finally:
        context.close()


def test_markets_shows_candles_volume_and_the_strategies_own_indicators(page: Page) -> None:
    from tests.e2e.conftest import SYMBOL

    pg = page.page
    page.tab("markets")
    pg.wait_for_selector("#price-chart canvas", timeout=20_000)
    page.until(lambda: "SMA_3" in page.text("#market-legend"), 20, "the strategies' indicators in the legend")
    legend = page.text("#market-legend")
    # conftest runs sma_cross with fast=3, slow=12 and rsi_reversion with period 14: their own indicators,
    # not a fixed SMA 20 / 50
    for name in ("sma_fast · SMA_3", "sma_fast · SMA_12", "rsi_rev · RSI_14", "up candle", "down candle", "volume"):
        assert name in legend, legend
    assert "SMA 50" not in legend and "SMA_50" not in legend
    assert pg.is_visible("#osc-chart canvas")  # RSI in its own pane under the price chart
    page.shot("markets-candles")
    ind = api_json(page.api, f"/api/v1/indicators?symbol={SYMBOL}&limit=50")
    bars = api_json(page.api, f"/api/v1/bars?symbol={SYMBOL}&limit=60")["bars"]
    series = {(s["id"], x["name"]): x for s in ind["strategies"] for x in s["series"]}
    assert series[("sma_fast", "SMA_3")]["pane"] == "price" and series[("rsi_rev", "RSI_14")]["pane"] == "lower"
    closes = {b["t"]: b["close"] for b in bars}
    t = ind["t"][-1]
    i = [b["t"] for b in bars].index(t)
    want = sum(b["close"] for b in bars[i - 2:i + 1]) / 3
    assert closes[t] and abs(series[("sma_fast", "SMA_3")]["values"][-1] - want) < 1e-6 * want


def test_colours_follow_the_metric(page: Page) -> None:
    pg = page.page
    page.until(lambda: page.text("#kpi-equity").strip() not in ("", "—"), 30, "the equity figure")
    total = float(page.text("#kpi-total").replace(",", "").replace("+", ""))
    klass = pg.get_attribute("#kpi-total", "class") or ""
    assert ("pos" in klass) == (total > 0) and ("neg" in klass) == (total < 0)
    dd_class = (pg.get_attribute("#kpi-dd", "class") or "").split()
    assert "pos" not in dd_class  # a drawdown is never green
    for counter in ("#kpi-positions", "#kpi-orders", "#kpi-activity"):
        assert not {"pos", "neg"} & set((pg.get_attribute(counter, "class") or "").split())
    # the one rule, mirrored from mmats/reports/colors.py
    from mmats.reports.colors import tone

    cases = [("pnl", -3.2), ("pnl", 4), ("pnl", 0), ("sharpe", -1.22), ("profit_factor", 0.37),
             ("profit_factor", 1.8), ("max_drawdown", -0.2), ("max_drawdown", 0), ("num_trades", 945),
             ("win_rate", 0.9), ("unknown_metric", -5), ("pnl", None)]
    for metric, value in cases:
        got = pg.evaluate("([m, v]) => tone(m, v)", [metric, value])
        assert got == tone(metric, value), (metric, value, got)
