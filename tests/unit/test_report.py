"""The HTML report: self-contained, escaped, parseable, bounded in size for huge curves."""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from mmats.errors import ValidationError
from mmats.reports.backtest_report import (
    MAX_TRADE_ROWS,
    downsample_minmax,
    format_metric,
    nice_ticks,
    render_html,
    svg_heatmap,
    svg_line_chart,
    time_ticks,
    trades_table,
    write_report,
)

T0 = 1_640_995_200 * 10**9  # 2022-01-01T00:00:00Z
HOUR = 3600 * 10**9
EVIL = "<script>alert(1)</script>"


def iso_times(n: int, step_ns: int = HOUR) -> list[str]:
    ts = (T0 + np.arange(n, dtype=np.int64) * step_ns).astype("datetime64[ns]")
    out: list[str] = (np.datetime_as_string(ts, unit="s").astype(object) + "Z").tolist()
    return out


METRICS = {"total_return": 0.1234, "cagr": 0.0567, "sharpe": 1.23456, "sortino": 2.5, "max_drawdown": -0.0789,
           "avg_drawdown": -0.012, "win_rate": 0.55, "profit_factor": None, "num_trades": 2,
           "avg_trade_duration_s": 7200.0, "best_trade": 0.031, "worst_trade": -0.004}
BENCH = {**METRICS, "total_return": -0.2, "sharpe": -0.31, "num_trades": 1, "profit_factor": 0.0}


def make_result(n: int = 300, trades: int = 2, benchmark: bool = True, kill: bool = True) -> dict[str, Any]:
    times = iso_times(n)
    eq = 10_000 * np.cumprod(1 + np.random.default_rng(1).normal(0, 0.01, n))
    res: dict[str, Any] = {
        "mmats_result_version": 1,
        "config": {"strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "data": "bars.parquet",
                   "initial_cash": 10_000.0, "resolved": {"symbol": "BTC/USDT", "market": "crypto", "timeframe": "1h"}},
        "metrics": dict(METRICS),
        "benchmark": dict(BENCH) if benchmark else {},
        "trades": [
            {"symbol": "BTC/USDT", "side": "LONG" if k % 2 == 0 else "SHORT", "quantity": 0.1,
             "entry_time": times[k % n], "entry_price": 40_000.0, "exit_time": times[(k + 2) % n],
             "exit_price": 41_000.0, "pnl": 96.5 if k % 2 == 0 else -12.25, "fees": 3.5}
            for k in range(trades)
        ],
        "equity": [[t, round(float(v), 2)] for t, v in zip(times, eq, strict=True)],
        "warnings": [],
    }
    if benchmark:
        res["benchmark_equity"] = [[t, 10_000.0 + i] for i, t in enumerate(times)]
    if kill:
        res["kill_switch"] = [{"time": times[n // 2], "state": "SOFT", "trigger": "daily_loss",
                               "reason": "daily loss 3.2 % > 3 %"},
                              {"time": times[n // 2 + 5], "state": "HARD", "trigger": "manual", "reason": "operator"}]
    return res


class Checker(HTMLParser):
    """Collects what the self-containment and well-formedness checks need."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "col", "area", "base",
                                "embed", "param", "track"}
    # SVG shapes written self-closed (<rect/>) arrive through handle_startendtag.

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "poster") and v:
                self.urls.append(v)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_html(text: str) -> Checker:
    p = Checker()
    p.feed(text)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], p.stack
    return p


def assert_self_contained(text: str, checker: Checker) -> None:
    assert "http://" not in text and "https://" not in text
    assert checker.urls == []
    assert "link" not in checker.tags and "img" not in checker.tags and "iframe" not in checker.tags
    assert "@import" not in text and "url(" not in text


# ------------------------------------------------------------------------------------------------ pages


def test_full_report() -> None:
    res = make_result()
    res["warnings"] = ["generated bars: results are illustrative"]
    text = render_html(res)
    checker = check_html(text)
    assert_self_contained(text, checker)
    assert text.startswith("<!DOCTYPE html>")
    assert "sma_cross · BTC/USDT" in text and "crypto · 1h" in text
    for shown in ("12.34 %", "1.23", "-7.89 %", "55.00 %", "2.0 h", "-20.00 %", "-0.31"):
        assert shown in text, shown
    # equity, drawdown (area), monthly returns heatmap, trade P&L histogram
    assert text.count("<svg") == 4 and "<polyline" in text and "<polygon" in text
    assert "Monthly returns" in text and "Trade P&amp;L distribution" in text
    assert "Buy &amp; hold" in text
    assert "generated bars: results are illustrative" in text and 'class="warnings"' in text
    assert "Kill switch" in text and "daily loss 3.2 % &gt; 3 %" in text and "stroke-dasharray" in text
    assert "Trades (2)" in text and "96.50" in text and "-12.25" in text
    assert "&quot;fast&quot;: 10" in text  # the config block, escaped JSON
    assert "data-hover" in text and "<script>" in text  # hover is inline, no external script


def test_profit_factor_none_shows_a_dash() -> None:
    text = render_html(make_result())
    assert "<td>Profit factor</td><td class=\"num\">–</td>" in text


def test_minimal_report_without_trades_benchmark_or_kill_switch() -> None:
    res = make_result(trades=0, benchmark=False, kill=False)
    del res["config"]
    text = render_html(res)
    checker = check_html(text)
    assert_self_contained(text, checker)
    assert "No closed trades" in text
    assert "Buy &amp; hold" not in text and "Kill switch" not in text and "Configuration" not in text


def test_empty_result_still_renders() -> None:
    text = render_html({})
    check_html(text)
    assert "no data" in text


def test_malicious_strings_are_escaped() -> None:
    res = make_result()
    res["config"]["strategy"] = EVIL
    res["config"]["params"] = {EVIL: EVIL}
    res["config"]["resolved"]["symbol"] = '"><img src=x onerror=alert(1)>'
    res["warnings"] = [EVIL]
    res["kill_switch"][0]["reason"] = EVIL
    res["trades"][0]["symbol"] = EVIL
    text = render_html(res)
    check_html(text)
    assert EVIL not in text
    assert "<img" not in text and "onerror=alert(1)>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script") == 1  # ours, at the end


def test_trade_table_lists_every_trade_up_to_the_cap() -> None:
    text = render_html(make_result(trades=945))
    assert 'class="trades"' in text and "Showing the first" not in text
    assert '<td class="num">945</td>' in text  # the last of 945 trades, not the first 500


def test_trade_table_is_capped() -> None:
    res = make_result(trades=MAX_TRADE_ROWS + 7)
    text = trades_table(res["trades"])
    check_html(text)
    assert f"first {MAX_TRADE_ROWS:,} of {MAX_TRADE_ROWS + 7:,} trades" in text
    assert f'<td class="num">{MAX_TRADE_ROWS}</td>' in text
    assert f'<td class="num">{MAX_TRADE_ROWS + 1}</td>' not in text


def test_print_stylesheet() -> None:
    """What makes the PDF list every trade: no scroll box, paged tables with repeated headers, no orphans."""
    text = render_html(make_result())
    css = text[text.index("@media print{"):text.index("</style>")]
    for rule in ("thead{display:table-header-group}", ".table-wrap,pre{max-height:none;overflow:visible",
                 "tr{break-inside:avoid", "h1,h2,figcaption,.kicker{break-after:avoid", "white-space:pre-wrap",
                 "th{position:static", ".tip,.hover-line{display:none"):
        assert rule in css, rule
    assert "@page{" in text
    assert "<thead><tr><th" in trades_table(make_result()["trades"])


def test_unreadable_equity_time_is_a_clear_error() -> None:
    res = make_result()
    res["equity"][3][0] = "yesterday"
    with pytest.raises(ValidationError, match="unreadable time"):
        render_html(res)


def test_bad_annotation_times_do_not_break_the_report() -> None:
    res = make_result()
    res["kill_switch"][0]["time"] = "soon"
    res["trades"][0]["exit_time"] = None
    check_html(render_html(res))


def test_million_point_equity_stays_small_and_fast() -> None:
    n = 1_000_000
    times = iso_times(n, 60 * 10**9)
    values = (10_000 + np.cumsum(np.random.default_rng(3).normal(0, 5, n))).round(2).tolist()
    values[654_321] = 1.0  # a one-bar crash must survive downsampling
    res = copy.deepcopy(make_result(kill=False))
    res["equity"] = list(zip(times, values, strict=True))  # tuples: same shape as JSON pairs, cheaper to build
    res["benchmark_equity"] = list(zip(times, [10_000.0] * n, strict=True))
    text = render_html(res)  # its time on a million points: bench/report_time.py
    assert len(text.encode()) < 2_000_000
    assert 'class="tick">0<' in text  # the 1.0 crash is still drawn: the value axis reaches down to 0
    check_html(text)


def test_write_report_creates_directories(tmp_path: Path) -> None:
    out = write_report(make_result(), tmp_path / "a" / "b" / "report.html")
    assert out.is_file() and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_backtest_report_and_mmats_report_render_the_same_page(tmp_path: Path) -> None:
    """`backtest --report` (write_report) and `mmats report` (research_report.write_any) give one page."""
    from mmats.reports.research_report import write_any

    res = make_result()
    a = write_report(res, tmp_path / "a.html").read_text(encoding="utf-8")
    b = write_any(res, tmp_path / "b.html").read_text(encoding="utf-8")
    assert a == b
    assert a.index("<h2>Monthly returns") < a.index("<h2>Trade P&amp;L distribution") < a.index("<h2>Performance")


# ---------------------------------------------------------------------------------------------- helpers


def test_downsample_keeps_extremes_endpoints_and_order() -> None:
    n = 100_000
    x = np.arange(n, dtype=np.float64)
    y = np.sin(x / 5000)
    y[12_345] = 50.0
    y[77_777] = -50.0
    dx, dy = downsample_minmax(x, y, 2000)
    assert len(dx) <= 2000
    assert dx[0] == 0 and dx[-1] == n - 1
    assert 50.0 in dy and -50.0 in dy
    assert (np.diff(dx) > 0).all()
    assert len(downsample_minmax(x[:10], y[:10], 2000)[0]) == 10


def test_nice_and_time_ticks() -> None:
    assert nice_ticks(0, 10, 5) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(-0.23, 0.0, 5) == pytest.approx([-0.2, -0.15, -0.1, -0.05, 0.0])
    day = 86400 * 10**9
    ticks = time_ticks(T0 + day // 2, T0 + 5 * day)  # starts at noon: first tick is the next midnight
    assert [label for _, label in ticks] == ["2022-01-02", "2022-01-03", "2022-01-04", "2022-01-05", "2022-01-06"]
    assert [label for _, label in time_ticks(T0, T0 + day)][:2] == ["00:00", "06:00"]
    months = time_ticks(T0, T0 + 400 * day)
    assert months[0][1] == "Jan 2022" and all(label.endswith(("2022", "2023")) for _, label in months)
    assert time_ticks(T0, T0) == []


def test_format_metric() -> None:
    assert format_metric("total_return", 0.1234) == "12.34 %"
    assert format_metric("sharpe", 1.23456) == "1.23"
    assert format_metric("profit_factor", None) == "–"
    assert format_metric("profit_factor", float("inf")) == "∞"
    assert format_metric("num_trades", 1234.0) == "1,234"
    assert format_metric("avg_trade_duration_s", 90.0) == "90 s"
    assert format_metric("avg_trade_duration_s", 5 * 86400) == "5.0 d"


def test_line_chart_reusable_with_numeric_x() -> None:
    svg = svg_line_chart([("sharpe by window", [(10, 0.5), (20, 1.25), (30, -0.5)])], title="Walk-forward",
                         x_is_time=False)
    check_html(svg)
    assert "Walk-forward" in svg and "<polyline" in svg
    assert "no data" in svg_line_chart([("empty", [])])


def test_heatmap() -> None:
    svg = svg_heatmap([[0.5, -1.0], [float("nan"), 2.0]], ["fast=5", "fast=10"], ["slow=20", EVIL],
                      title="Sharpe", x_title="fast", y_title="slow")
    check_html(svg)
    assert EVIL not in svg and svg.count("</rect>") == 4 and "–" in svg  # 4 cells (the legend swatches aside)
    with pytest.raises(ValidationError):
        svg_heatmap([[1.0]], ["a", "b"], ["c"])
