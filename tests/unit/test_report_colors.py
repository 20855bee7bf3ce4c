"""Colour by what is good for each metric, in every report: one rule (mmats.reports.colors), one test per helper.

The defects this guards against (issue 14): a sweep heatmap painting Sharpe -1.2 … -4.1 green, negative
monthly returns green, a walk-forward profit factor of 0.37 green, a Monte Carlo histogram squeezed into a
tenth of its width by the start-equity marker, a walk-forward table cutting off "OOS trades".
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from mmats.reports.backtest_report import (
    VLine,
    metrics_table,
    monthly_returns_section,
    render_html,
    svg_heatmap,
    svg_histogram,
    svg_line_chart,
    trade_pnl_section,
    trades_table,
)
from mmats.reports.colors import (
    LOSS,
    NEG_COLOR,
    NEUTRAL,
    POS_COLOR,
    RATIO,
    SIGNED,
    heat_color,
    heat_intensity,
    metric_scale,
    sign_tone,
    split_color,
    text_color_on,
    tone,
)
from mmats.reports.research_report import render_montecarlo_report, render_sweep_report, render_walkforward_report

T0 = 1_640_995_200 * 10**9  # 2022-01-01T00:00:00Z
DAY = 86_400 * 10**9


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def is_green(color: str) -> bool:
    r, g, b = rgb(color)
    return g > r + 8 and g > b


def is_red(color: str) -> bool:
    r, g, b = rgb(color)
    return r > g + 8 and r > b + 8


def cell_fills(svg: str) -> list[str]:
    """Fills of the heatmap cells (the rects that carry a <title>), in row order."""
    return re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="\d+" height="\d+" fill="(#[0-9a-f]{6})"><title>', svg)


def bar_fills(svg: str) -> list[str]:
    return re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="(#[0-9a-f]{6})" '
                      r'fill-opacity', svg)


def td_class(html: str, text: str) -> str:
    """The class of the first table cell showing ``text``."""
    m = re.search(r'<td class="([^"]*)">' + re.escape(text) + "</td>", html)
    assert m, f"no cell {text!r}"
    return m.group(1)


# ------------------------------------------------------------------------------------------ the rule


def test_scales_know_each_metrics_neutral_value_and_direction() -> None:
    assert metric_scale("sharpe") == SIGNED and metric_scale("total_return") == SIGNED
    assert metric_scale("profit_factor") == RATIO and RATIO.center == 1.0
    assert metric_scale("max_drawdown") == LOSS
    assert metric_scale("num_trades") == NEUTRAL and metric_scale("win_rate") == NEUTRAL
    assert metric_scale("-sharpe") == SIGNED  # a sweep's sort sign is not part of the metric
    assert metric_scale("something_new") == NEUTRAL  # unknown: never called good or bad
    assert metric_scale(None) == SIGNED


@pytest.mark.parametrize(("metric", "value", "expected"), [
    ("sharpe", -1.22, "neg"), ("sharpe", 0.5, "pos"), ("sharpe", 0.0, ""), ("total_return", -0.01, "neg"),
    ("profit_factor", 0.37, "neg"), ("profit_factor", 1.4, "pos"), ("profit_factor", 1.0, ""),
    ("profit_factor", float("inf"), "pos"), ("max_drawdown", -0.3, "neg"), ("max_drawdown", 0.0, ""),
    ("num_trades", 945, ""), ("win_rate", 0.2, ""), ("avg_trade_duration_s", 3600, ""),
    ("efficiency", 0.26, "neg"), ("efficiency", 0.8, "pos"), ("sharpe", None, ""), ("sharpe", "n/a", ""),
])
def test_tone(metric: str, value: Any, expected: str) -> None:
    assert tone(metric, value) == expected


def test_sign_tone_around_a_reference() -> None:
    assert sign_tone(9_000, 10_000) == "neg" and sign_tone(11_000, 10_000) == "pos" and sign_tone(None) == ""


def test_heat_color_never_paints_the_best_of_a_bad_lot_green() -> None:
    sharpes = [-1.22, -2.0, -3.3, -4.05]
    fills = [heat_color("sharpe", v, min(sharpes), max(sharpes)) for v in sharpes]
    assert all(is_red(f) for f in fills)
    # darker (farther from 0) for worse values
    assert [heat_intensity("sharpe", v, -4.05, -1.22) for v in sharpes] == sorted(
        heat_intensity("sharpe", v, -4.05, -1.22) for v in sharpes)[::-1]
    assert all(is_green(heat_color("sharpe", v, 0.2, 2.0)) for v in (0.2, 1.0, 2.0))
    assert heat_color("sharpe", 0.0, -1, 1) == "#ffffff"


def test_heat_color_profit_factor_diverges_at_one_on_a_log_scale() -> None:
    assert is_red(heat_color("profit_factor", 0.37, 0.37, 0.9))
    assert is_red(heat_color("profit_factor", 0.9, 0.37, 0.9))
    assert is_green(heat_color("profit_factor", 1.1, 0.5, 2.0))
    assert heat_intensity("profit_factor", 0.5, 0.5, 2.0) == pytest.approx(-heat_intensity("profit_factor", 2.0, 0.5,
                                                                                          2.0))
    assert heat_intensity("profit_factor", 0.0, 0.0, 2.0) == -1.0


def test_heat_color_drawdown_is_never_green_and_neutral_is_never_red_or_green() -> None:
    for v in (0.0, -0.1, -0.5):
        assert not is_green(heat_color("max_drawdown", v, -0.5, 0.0))
    assert is_red(heat_color("max_drawdown", -0.5, -0.5, 0.0))
    for v in (5.0, 50.0, 500.0):
        c = heat_color("num_trades", v, 5.0, 500.0)
        assert not is_red(c) and not is_green(c)
    assert heat_color("sharpe", float("nan"), 0, 1) == "#eceef1"


def test_text_and_split_colors() -> None:
    assert text_color_on("#2e7d5b") == "#ffffff" and text_color_on("#ffffff") == "#1f2933"
    assert split_color(-0.01) == NEG_COLOR and split_color(0.01) == POS_COLOR and split_color(9e3, 1e4) == NEG_COLOR


# ------------------------------------------------------------------------------------- chart helpers


def test_svg_heatmap_colours_by_the_metric_not_by_rank() -> None:
    z = [[-1.22, -2.5], [-3.1, -4.05]]
    svg = svg_heatmap(z, ["a", "b"], ["c", "d"], metric="sharpe")
    fills = cell_fills(svg)
    assert len(fills) == 4 and all(is_red(f) for f in fills)
    assert "legend-scale" in svg and "-4.05" in svg and "0.00" in svg
    pf = cell_fills(svg_heatmap([[0.37, 0.9], [1.5, 2.5]], ["a", "b"], ["c", "d"], metric="profit_factor"))
    assert is_red(pf[0]) and is_red(pf[1]) and is_green(pf[2]) and is_green(pf[3])
    # the default reads values as signed
    signed = cell_fills(svg_heatmap([[-0.5, 0.5]], ["a", "b"], ["c"]))
    assert is_red(signed[0]) and is_green(signed[1])
    # dark cells get light text
    assert 'style="fill:#ffffff"' in svg_heatmap([[-4.0, 4.0]], ["a", "b"], ["c"], metric="sharpe")


def test_monthly_returns_section_paints_losing_months_red() -> None:
    days = np.arange(0, 120)
    t = (T0 + days * DAY).astype(np.float64)
    eq = 10_000 * np.cumprod(np.where(days < 40, 0.995, 1.004))  # Jan, early Feb lose; later months gain
    html = monthly_returns_section(np.column_stack([t, eq]))
    fills = cell_fills(html)
    assert is_red(fills[0]) and is_green(fills[3])  # Jan 2022 red, Apr 2022 green
    assert "red below 0 %" in html


def test_svg_histogram_fits_the_distribution_not_a_far_marker() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(700, 60, 2000)  # a run that lost ~93 % of a 10,000 start
    svg = svg_histogram(values, markers=[VLine(10_000, "start"), VLine(float(np.median(values)), "p50")],
                        x_format=lambda v: f"{v:,.0f}", split_at=10_000)
    ticks = [float(t.replace(",", "")) for t in re.findall(r'class="tick">([\d,.-]+)</text>', svg)
             if "," in t or float(t.replace(",", "")) > 100]
    assert ticks and max(ticks) < 1_500  # the x-axis ends near the data, not at 10,000
    assert "start 10,000 (off scale) →" in svg
    assert all(f == NEG_COLOR for f in bar_fills(svg))  # every final equity below the start: red
    # a marker close to the data is drawn to scale, and bars split by sign around it
    near = svg_histogram([-2.0, -1.0, 1.0, 2.0, 3.0], bins=5, markers=[VLine(0.0, "break-even")], split_at=0.0)
    assert "off scale" not in near
    fills = bar_fills(near)
    assert fills[0] == NEG_COLOR and fills[-1] == POS_COLOR


def test_svg_line_chart_reference_line_at_the_metrics_neutral_value() -> None:
    pts = [(0, 0.4), (1, 1.8), (2, 0.7)]
    svg = svg_line_chart([("pf", pts)], x_is_time=False, y_ref=1.0, hover=False)
    assert svg.count('stroke="#b8bec6"') == 1
    assert 'stroke="#b8bec6"' not in svg_line_chart([("pf", pts)], x_is_time=False, hover=False)  # 0 not in range


def test_tables_colour_by_metric() -> None:
    html = metrics_table({"profit_factor": 0.37, "sharpe": -1.5, "max_drawdown": -0.2, "win_rate": 0.6,
                          "num_trades": 10})
    assert td_class(html, "0.37") == "num neg" and td_class(html, "-1.50") == "num neg"
    assert td_class(html, "-20.00 %") == "num neg" and td_class(html, "60.00 %") == "num"
    trades = trades_table([{"symbol": "X", "side": "SHORT", "quantity": 1, "entry_time": "2022-01-01T00:00:00Z",
                            "entry_price": 100.0, "exit_time": "2022-01-01T01:00:00Z", "exit_price": 110.0,
                            "pnl": -10.0, "fees": 0.1}])
    assert td_class(trades, "-10.00") == "num neg" and td_class(trades, "SHORT") == "short"
    page = render_html({"metrics": {"sharpe": -1.2, "total_return": -0.1, "max_drawdown": -0.3, "win_rate": 0.4,
                                    "num_trades": 3, "cagr": 0.1}})
    assert '<div class="value neg">-1.20</div>' in page and '<div class="value">40.00 %</div>' in page
    css = page[page.index("<style>"):page.index("</style>")]
    assert "td.short{color:#8a5a00}" in css  # a short is not a loss: no red


def test_trade_pnl_section_colours_wins_and_losses() -> None:
    trades = [{"pnl": p, "quantity": 1.0, "entry_price": 100.0} for p in (-3.0, -1.0, 2.0, 5.0, 0.5)]
    html = trade_pnl_section({"trades": trades})
    fills = bar_fills(html)
    assert fills[0] == NEG_COLOR and fills[-1] == POS_COLOR
    assert td_class(html, "-2.00") == "num neg" and td_class(html, "2.50") == "num pos"  # avg loss / avg win
    assert td_class(html, "1.25") == "num pos"  # payoff ratio above 1


# ------------------------------------------------------------------------------------------- pages


def _sweep_doc(sharpes: list[float]) -> dict[str, Any]:
    runs = [{"params": {"fast": f, "slow": s}, "status": "ok",
             "metrics": {"sharpe": v, "total_return": v / 10, "max_drawdown": -0.2, "num_trades": 50},
             "final_equity": 10_000 * (1 + v / 10)}
            for (f, s), v in zip([(5, 20), (5, 40), (10, 20), (10, 40)], sharpes, strict=True)]
    return {"kind": "sweep", "strategy": "sma_cross", "metric": "sharpe", "min_trades": 0,
            "search": {"method": "grid", "axes": {"fast": [5, 10], "slow": [20, 40]}},
            "counts": {"total": 4, "ok": 4, "error": 0, "failed": 0, "eligible": 4},
            "ranked": sorted(runs, key=lambda r: -r["metrics"]["sharpe"]), "runs": runs}


def test_sweep_report_has_no_green_for_negative_sharpe() -> None:
    html = render_sweep_report(_sweep_doc([-1.22, -2.4, -3.3, -4.05]))
    heat = html[html.index('figure class="chart heatmap"'):]
    fills = cell_fills(heat)
    assert len(fills) == 4 and all(is_red(f) for f in fills)
    assert td_class(html, "-1.22") == "num neg"  # the best of the ranked table is still a loss
    assert '<div class="value neg">-1.22</div>' in html


def _wf_doc() -> dict[str, Any]:
    win = {"index": 0, "train_from": "2022-01-01T00:00:00Z", "train_to": "2022-03-01T00:00:00Z",
           "test_from": "2022-03-01T00:00:00Z", "test_to": "2022-04-01T00:00:00Z",
           "best_params": {"fast": 10, "slow": 120, "size": 0.5, "allow_short": False}, "configs_ok": 9, "configs": 9,
           "in_sample": {"profit_factor": 1.8}, "out_of_sample": {"profit_factor": 0.37, "total_return": -0.05,
                                                                  "max_drawdown": -0.1, "num_trades": 12}}
    win2 = {**win, "index": 1, "out_of_sample": {**win["out_of_sample"], "profit_factor": 0.5}}
    return {"kind": "walkforward", "strategy": "sma_cross", "metric": "profit_factor", "windows": [win, win2],
            "oos_metrics": {"profit_factor": 0.41, "total_return": -0.08, "sharpe": -0.5, "num_trades": 24},
            "degradation": {"profit_factor": {"mean_in_sample": 1.8, "mean_out_of_sample": 0.44, "efficiency": 0.24,
                                              "oos_positive": 1.0}},
            "oos_equity": [["2022-03-01T00:00:00Z", 10_000.0], ["2022-04-01T00:00:00Z", 9_200.0]]}


def test_walkforward_report_profit_factor_below_one_is_red_and_oos_trades_fits() -> None:
    html = render_walkforward_report(_wf_doc())
    assert td_class(html, "0.37") == "num neg" and td_class(html, "1.80") == "num pos"
    assert td_class(html, "0.24") == "num neg"  # efficiency
    assert "<th class=\"num\">OOS trades</th></tr>" in html  # the last column, no empty Note column after it
    assert 'class="wrap"' in html  # params and dates may wrap, so the numeric columns stay on the page
    # windows "good" counts profit factor > 1, not > 0 (the JSON's oos_positive says 100 %)
    assert td_class(html, "0 %") == "num"
    assert 'stroke="#b8bec6"' in html  # the per-window chart marks profit factor 1


def test_montecarlo_report_histogram_fits_a_run_far_below_its_start() -> None:
    rng = np.random.default_rng(2)
    fe = rng.normal(640, 50, 500)
    res = {"method": "trades", "runs": 500, "seed": 1, "initial_equity": 10_000.0, "ruin_threshold": 0.5,
           "prob_ruin": 1.0, "prob_loss": 1.0,
           "final_equity": {q: float(np.percentile(fe, p)) for q, p in (("p5", 5), ("p50", 50), ("p95", 95))},
           "max_drawdown": {"p5": -0.95, "p50": -0.93, "p95": -0.9}, "actual": {"final_equity": 642.9},
           "final_equity_values": fe.tolist(), "max_drawdown_values": (-0.93 + rng.normal(0, 0.01, 500)).tolist()}
    html = render_montecarlo_report({"kind": "montecarlo", "source": {"strategy": "x"}, "results": [res]})
    first = html[html.index("<figcaption>Final equity</figcaption>"):html.index("<figcaption>Max drawdown")]
    ticks = [float(t.replace(",", "")) for t in re.findall(r'class="tick">([\d,.]+)</text>', first)]
    x_ticks = [t for t in ticks if t >= 100]
    assert x_ticks and max(x_ticks) < 1_000 and min(x_ticks) > 400
    assert "off scale" in first and all(f == NEG_COLOR for f in bar_fills(first))
    assert '<div class="value neg">100.0 %</div>' in html  # P(loss) 100 % is bad news
