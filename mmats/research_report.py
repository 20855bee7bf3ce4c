"""HTML reports for research: sweeps, walk-forward, Monte Carlo, and the extra views of one backtest.

Same rules as ``mmats.report`` (whose page shell and chart helpers these pages reuse): one
self-contained file, inline SVG, no network, every user string escaped. What each page is for:

- sweep: is the best config a lone spike or a plateau? The parameter heatmap answers that at a glance,
  the ranked table gives the numbers, the best run's equity shows what the number means;
- walk-forward: does optimizing on the past pick configs that still work on the next, unseen window?
  The windows table puts in-sample next to out-of-sample, the stitched curve is the honest result;
- Monte Carlo: how lucky was the order of trades? Histograms and percentile bands show the spread,
  the probability of ruin the tail;
- a single backtest gets a monthly returns heatmap and a trade P&L distribution (``mmats report``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmats.errors import ValidationError
from mmats.metrics import METRIC_KEYS, drawdown_series
from mmats.report import (
    BENCHMARK_COLOR,
    METRIC_LABELS,
    STRATEGY_COLOR,
    VLine,
    esc,
    format_metric,
    format_number,
    format_pct,
    html_table,
    nice_ticks,
    page,
    parse_times,
    render_html,
    section,
    svg_drawdown_chart,
    svg_heatmap,
    svg_line_chart,
)

POS_COLOR = "#2e7d5b"
NEG_COLOR = "#b23e37"
BAND_COLORS = ("#c9d6e4", "#8fb0cf", STRATEGY_COLOR, "#8fb0cf", "#c9d6e4")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Cell = str | tuple[str, str]

# ------------------------------------------------------------------------------------------ helpers


def _f(v: object) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _tone(v: object) -> str:
    f = _f(v)
    return "" if not f else ("pos" if f > 0 else "neg")


def pairs_xy(pairs: Sequence[Sequence[Any]], field: str = "equity") -> np.ndarray:
    """``[[iso time, value], ...]`` -> (n, 2) float array, x = epoch ns."""
    if not pairs:
        return np.zeros((0, 2))
    try:
        times = [str(p[0]) for p in pairs]
        values = np.array([np.nan if p[1] is None else p[1] for p in pairs], dtype=np.float64)
    except (TypeError, IndexError, ValueError) as exc:
        raise ValidationError(f"report: {field} must be a list of [time, value] pairs ({exc})") from None
    return np.column_stack([parse_times(times), values])


def _dd(xy: np.ndarray) -> np.ndarray:
    if len(xy) == 0:
        return xy
    return np.column_stack([xy[:, 0], drawdown_series(xy[:, 1])])


def _cards(items: Sequence[tuple[str, str, str]]) -> str:
    """(label, value, tone) KPI cards, the same look as the backtest report's."""
    out = []
    for label, value, tone in items:
        cls = f"value {tone}" if tone else "value"
        out.append(f'<div class="card"><div class="label">{esc(label)}</div>'
                   f'<div class="{cls}">{esc(value)}</div></div>')
    return f'<div class="cards">{"".join(out)}</div>'


def _header(kicker: str, title: str, sub: str) -> str:
    return (f'<header><div class="kicker">{esc(kicker)}</div><h1>{esc(title)}</h1>'
            f'<div class="sub">{esc(sub)}</div></header>')


def _params_text(params: Mapping[str, Any] | None) -> str:
    if not params:
        return "–"
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ---------------------------------------------------------------------------------------- histogram


def svg_histogram(
    values: Sequence[float] | np.ndarray,
    *,
    bins: int = 40,
    title: str = "",
    x_format: Callable[[float], str] = lambda v: f"{v:,.4g}",
    markers: Sequence[VLine] = (),
    split_at: float | None = None,
    color: str = STRATEGY_COLOR,
    width: int = 960,
    height: int = 240,
) -> str:
    """Bars of a distribution; with ``split_at`` bars left of it are red, right green (P&L around 0)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    caption = f"<figcaption>{esc(title)}</figcaption>" if title else ""
    if v.size == 0:
        return (f'<figure class="chart">{caption}<svg viewBox="0 0 {width} {height}" role="img">'
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="muted">no data</text>'
                f"</svg></figure>")
    lo, hi = float(v.min()), float(v.max())
    for m in markers:
        if math.isfinite(m.x):
            lo, hi = min(lo, m.x), max(hi, m.x)
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    counts, edges = np.histogram(v, bins=max(1, bins), range=(lo, hi))
    ml, mr, mt, mb = 56, 16, 34, 30
    pw, ph = width - ml - mr, height - mt - mb
    top = max(1, int(counts.max()))
    yt = [t for t in nice_ticks(0, top, 4) if t == int(t)]

    def px(x: float) -> float:
        return ml + (x - lo) / (hi - lo) * pw

    def py(c: float) -> float:
        return mt + ph - c / top * ph

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" font-size="11">',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fcfcfd"/>']
    for t in yt:
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e6e8eb"/>'
                     f'<text x="{ml - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{int(t):,}</text>')
    for t in nice_ticks(lo, hi, 6):
        parts.append(f'<text x="{px(t):.1f}" y="{mt + ph + 18}" text-anchor="middle" class="tick">'
                     f"{esc(x_format(t))}</text>")
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c == 0:
            continue
        fill = color
        if split_at is not None:
            fill = NEG_COLOR if (a + b) / 2 < split_at else POS_COLOR
        x0, x1 = px(float(a)), px(float(b))
        parts.append(f'<rect x="{x0 + 0.5:.1f}" y="{py(float(c)):.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
                     f'height="{ph - (py(float(c)) - mt):.1f}" fill="{fill}" fill-opacity="0.85">'
                     f"<title>{esc(x_format(float(a)))} … {esc(x_format(float(b)))}: {int(c):,}</title></rect>")
    lx = ml
    for m in markers:
        if not math.isfinite(m.x):
            continue
        xx = px(m.x)
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{mt + ph}" stroke="{esc(m.color)}" '
                     f'stroke-dasharray="4 3" stroke-width="1.4"><title>{esc(m.label)}</title></line>')
        parts.append(f'<rect x="{lx}" y="12" width="14" height="3" fill="{esc(m.color)}"/>'
                     f'<text x="{lx + 19}" y="17" class="legend">{esc(m.label)}</text>')
        lx += 30 + 7 * len(m.label)
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#d5d9de"/></svg>')
    return f'<figure class="chart">{caption}{"".join(parts)}</figure>'


# ----------------------------------------------------------------------------- single backtest extras


def monthly_returns(times_ns: np.ndarray, equity: np.ndarray) -> tuple[list[int], np.ndarray, list[float]]:
    """Calendar-month returns (UTC): rows = years, 12 columns (NaN where no data), plus yearly returns.

    Each month is measured from the previous month's last equity (the first month from the first
    point), so the months compound exactly to the total return.
    """
    ok = np.isfinite(times_ns) & np.isfinite(equity)
    if ok.sum() < 2:
        return [], np.zeros((0, 12)), []
    t = np.asarray(times_ns, dtype=np.float64)[ok].astype(np.int64)
    eq = np.asarray(equity, dtype=np.float64)[ok]
    order = np.argsort(t, kind="stable")
    t, eq = t[order], eq[order]
    months = t.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01

    def period_returns(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = np.append(np.flatnonzero(np.diff(keys) != 0), len(keys) - 1)
        ends = eq[last]
        starts = np.concatenate(([eq[0]], ends[:-1]))
        return keys[last], ends / starts - 1.0

    mkeys, mrets = period_returns(months)
    ykeys, yrets = period_returns(months // 12)
    years = [1970 + int(y) for y in ykeys]
    grid = np.full((len(years), 12), np.nan)
    for k, r in zip(mkeys, mrets, strict=True):
        grid[years.index(1970 + int(k) // 12), int(k) % 12] = float(r)
    return years, grid, [float(v) for v in yrets]


def monthly_returns_section(result: Mapping[str, Any]) -> str:
    xy = pairs_xy(result.get("equity") or [])
    years, grid, yearly = monthly_returns(xy[:, 0], xy[:, 1]) if len(xy) else ([], np.zeros((0, 12)), [])
    if not years:
        return section("Monthly returns", '<p class="muted">Not enough equity points.</p>')
    full = np.column_stack([grid, np.asarray(yearly)])
    heat = svg_heatmap(full, [*MONTHS, "Year"], [str(y) for y in years], title="Monthly returns (UTC calendar)",
                       value_format=lambda v: f"{v * 100:+.1f}%", cell=56)
    return section("Monthly returns", heat + '<p class="note">Each month from the previous month-end equity; '
                   "the last column is the calendar year.</p>")


def trade_pnl_section(result: Mapping[str, Any]) -> str:
    trades = [t for t in result.get("trades") or [] if isinstance(t, Mapping)]
    rets = []
    pnls = []
    for t in trades:
        pnl, qty, entry = _f(t.get("pnl")), _f(t.get("quantity")), _f(t.get("entry_price"))
        if pnl is None:
            continue
        pnls.append(pnl)
        if qty and entry:
            rets.append(pnl / abs(qty * entry))
    if not pnls:
        return section("Trade P&L distribution", '<p class="muted">No closed trades.</p>')
    r = np.asarray(rets)
    p = np.asarray(pnls)
    markers = [VLine(0.0, "break-even", "#6b7785")]
    if r.size:
        markers += [VLine(float(r.mean()), f"mean {r.mean() * 100:+.2f}%", "#c77c2e"),
                    VLine(float(np.median(r)), f"median {np.median(r) * 100:+.2f}%", "#8e5ea2")]
    chart = svg_histogram(r, bins=min(60, max(10, int(math.sqrt(r.size)) * 2)), title="Return per trade",
                          x_format=lambda v: f"{v * 100:.1f}%", markers=markers, split_at=0.0)
    wins, losses = p[p > 0], p[p < 0]
    rows: list[list[Cell]] = [
        ["Trades", f"{p.size:,}"],
        ["Winners / losers", f"{wins.size:,} / {losses.size:,}"],
        ["Average win", (format_number(float(wins.mean())) if wins.size else "–", "pos")],
        ["Average loss", (format_number(float(losses.mean())) if losses.size else "–", "neg")],
        ["Payoff ratio (avg win / avg loss)",
         f"{wins.mean() / -losses.mean():.2f}" if wins.size and losses.size else "–"],
        ["Expectancy per trade", (format_number(float(p.mean())), _tone(float(p.mean())))],
        ["Largest win / loss", f"{format_number(float(p.max()))} / {format_number(float(p.min()))}"],
    ]
    if r.size:
        rows.append(["Return per trade p5 / p50 / p95",
                     " / ".join(format_pct(float(np.percentile(r, q)), sign=True) for q in (5, 50, 95))])
    return section("Trade P&L distribution", chart + html_table(["", ""], rows, numeric=(1,), css_class="metrics"))


def render_backtest_report(result: Mapping[str, Any]) -> str:
    """The standard backtest page with the monthly returns heatmap and trade P&L distribution added."""
    html = render_html(result)
    extra = monthly_returns_section(result) + trade_pnl_section(result)
    for anchor in ("<section><h2>Performance</h2>", "<footer>", "</main>"):
        i = html.find(anchor)
        if i >= 0:
            return html[:i] + extra + html[i:]
    return html + extra


# -------------------------------------------------------------------------------------------- sweep


def heatmap_matrix(records: Sequence[Mapping[str, Any]], x: str, y: str, metric: str,
                   descending: bool = True) -> tuple[list[Any], list[Any], np.ndarray]:
    """The best ``metric`` for each (x, y) pair over every other swept parameter; NaN where none ran ok."""
    xs: dict[str, Any] = {}
    ys: dict[str, Any] = {}
    best: dict[tuple[str, str], float] = {}
    for r in records:
        params = r.get("params") or {}
        if x not in params or y not in params:
            continue
        kx, ky = json.dumps(params[x]), json.dumps(params[y])
        xs.setdefault(kx, params[x])
        ys.setdefault(ky, params[y])
        v = _f((r.get("metrics") or {}).get(metric)) if r.get("status") == "ok" else None
        if v is None:
            continue
        cur = best.get((kx, ky))
        if cur is None or (v > cur if descending else v < cur):
            best[(kx, ky)] = v

    def order(d: dict[str, Any]) -> list[str]:
        keys = list(d)
        if all(isinstance(d[k], int | float) and not isinstance(d[k], bool) for k in keys):
            keys.sort(key=lambda k: float(d[k]))
        return keys

    ox, oy = order(xs), order(ys)
    z = np.full((len(oy), len(ox)), np.nan)
    for (kx, ky), v in best.items():
        z[oy.index(ky), ox.index(kx)] = v
    return [xs[k] for k in ox], [ys[k] for k in oy], z


def _metric_formatter(metric: str) -> Callable[[float], str]:
    if metric in ("sharpe", "sortino", "profit_factor"):
        return lambda v: f"{v:.2f}"
    if metric == "num_trades":
        return lambda v: f"{v:.0f}"
    if metric == "avg_trade_duration_s":
        return lambda v: f"{v / 3600:.1f}h"
    return lambda v: f"{v * 100:.1f}%"


def render_sweep_report(doc: Mapping[str, Any]) -> str:
    metric = str(doc.get("metric", "sharpe")).lstrip("-+")
    descending = not str(doc.get("metric", "")).startswith("-")
    search = doc.get("search") or {}
    axes: dict[str, list[Any]] = dict(search.get("axes") or {})
    counts = doc.get("counts") or {}
    data = doc.get("data") or {}
    records = [r for r in doc.get("runs") or [] if isinstance(r, Mapping)]
    ranked = [r for r in doc.get("ranked") or [] if isinstance(r, Mapping)]
    best = doc.get("best") or None
    label = METRIC_LABELS.get(metric, metric)
    sub = (f"{search.get('method', 'grid')} search · {counts.get('total', len(records)):,} configs · "
           f"{data.get('symbol', '')} {data.get('timeframe', '')} · {data.get('bars', 0):,} bars "
           f"{data.get('first_bar', '')} → {data.get('last_bar', '')}")
    body = [_header("MMATS parameter sweep", f"{doc.get('strategy', 'strategy')} — ranked by {label}", sub)]
    top_v = _f((ranked[0].get("metrics") or {}).get(metric)) if ranked else None
    body.append(_cards([
        ("Configs run", f"{counts.get('total', 0):,}", ""),
        ("Succeeded", f"{counts.get('ok', 0):,}", ""),
        ("Failed", f"{counts.get('error', 0) + counts.get('failed', 0):,}",
         "neg" if counts.get("error", 0) + counts.get("failed", 0) else ""),
        (f"Eligible (≥ {doc.get('min_trades', 0)} trades)", f"{counts.get('eligible', 0):,}", ""),
        (f"Best {label}", format_metric(metric, top_v), _tone(top_v)),
    ]))

    varied = [k for k, v in axes.items() if len(v) > 1]
    if len(varied) >= 2:
        x, y = varied[1], varied[0]
        xv, yv, z = heatmap_matrix(records, x, y, metric, descending)
        note = "" if len(varied) == 2 else (f'<p class="note">Best {esc(label)} over the other swept parameters '
                                            f'({esc(", ".join(varied[2:]))}) for each cell.</p>')
        if z.size:
            body.append(section(f"{label} by {y} and {x}",
                                svg_heatmap(z, [_value_text(v) for v in xv], [_value_text(v) for v in yv],
                                            title=f"{label} (blank: failed or no run)", x_title=x, y_title=y,
                                            value_format=_metric_formatter(metric)) + note
                                + '<p class="note">A robust choice sits on a plateau of good cells, not on a '
                                  "lone spike.</p>"))
    elif len(varied) == 1:
        x = varied[0]
        pts = sorted((float(r["params"][x]), v) for r in records
                     if isinstance((r.get("params") or {}).get(x), int | float)
                     and (v := _f((r.get("metrics") or {}).get(metric))) is not None and r.get("status") == "ok")
        if pts:
            body.append(section(f"{label} by {x}", svg_line_chart([(label, np.asarray(pts))], title=f"{label} vs {x}",
                                                                 x_is_time=False, height=240)))

    names = list(axes) or sorted({k for r in ranked for k in (r.get("params") or {})})
    cols = [metric] + [k for k in ("total_return", "sharpe", "max_drawdown", "num_trades") if k != metric]
    rows: list[list[Cell]] = []
    for i, r in enumerate(ranked, start=1):
        m = r.get("metrics") or {}
        params = r.get("params") or {}
        rows.append([str(i), *[_value_text(params.get(n, "–")) for n in names],
                     *[(format_metric(c, m.get(c)), _tone(m.get(c)) if c not in ("num_trades",) else "")
                       for c in cols], format_number(r.get("final_equity"))])
    headers = ["#", *names, *[METRIC_LABELS.get(c, c) for c in cols], "Final equity"]
    table = html_table(headers, rows, numeric=tuple(range(len(names) + 1, len(headers))), css_class="ranked")
    body.append(section(f"Top {len(ranked)} by {label}", f'<div class="table-wrap">{table}</div>' if rows
                        else '<p class="muted">No run met the filter.</p>'))

    if isinstance(best, Mapping) and best.get("equity"):
        eq = pairs_xy(best.get("equity") or [])
        series: list[tuple[str, Any]] = [("Best config", eq)]
        bench = pairs_xy(best.get("benchmark_equity") or [])
        if len(bench):
            series.append(("Buy & hold", bench))
        charts = svg_line_chart(series, title=f"Equity of the best config ({_params_text(best.get('params'))})",
                                colors=(STRATEGY_COLOR, BENCHMARK_COLOR))
        charts += svg_drawdown_chart([("Best config", _dd(eq)), *([("Buy & hold", _dd(bench))] if len(bench) else [])])
        body.append(section("Best run", charts))

    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        frows: list[list[Cell]] = [[_params_text(r.get("params")), (str(r.get("status")), "neg"), str(r.get("error"))]
                                   for r in failed[:200]]
        more = f'<p class="note">{len(failed) - 200:,} more in the JSON.</p>' if len(failed) > 200 else ""
        body.append(section(f"Failed configurations ({len(failed):,})",
                            f'<div class="table-wrap">{html_table(["Params", "Status", "Error"], frows)}</div>{more}'))
    stats = doc.get("stats") or {}
    if stats:
        body.append(section("Execution", html_table(["", ""], [[k, str(v)] for k, v in stats.items()],
                                                    numeric=(1,), css_class="metrics")))
    base = doc.get("base_config")
    if base:
        body.append(section("Base configuration", f"<pre>{esc(json.dumps(base, indent=2, default=str))}</pre>"))
    return page(f"Sweep {doc.get('strategy', '')} — MMATS", "".join(body))


# ------------------------------------------------------------------------------------- walk-forward


def render_walkforward_report(doc: Mapping[str, Any]) -> str:
    metric = str(doc.get("metric", "sharpe")).lstrip("-+")
    label = METRIC_LABELS.get(metric, metric)
    windows = [w for w in doc.get("windows") or [] if isinstance(w, Mapping)]
    oos = doc.get("oos_metrics") or {}
    degr = (doc.get("degradation") or {}).get(metric) or {}
    sub = (f"{len(windows)} {'anchored' if doc.get('anchored') else 'rolling'} windows · train fraction "
           f"{doc.get('train_fraction', '')} · optimized on {label} · {doc.get('configs_per_window', '?')} configs "
           "per window")
    body = [_header("MMATS walk-forward", f"{doc.get('strategy', 'strategy')} — out-of-sample", sub)]
    eff = _f(degr.get("efficiency"))
    body.append(_cards([
        ("OOS total return", format_metric("total_return", oos.get("total_return")), _tone(oos.get("total_return"))),
        ("OOS CAGR", format_metric("cagr", oos.get("cagr")), _tone(oos.get("cagr"))),
        ("OOS Sharpe", format_metric("sharpe", oos.get("sharpe")), _tone(oos.get("sharpe"))),
        ("OOS max drawdown", format_metric("max_drawdown", oos.get("max_drawdown")), "neg"),
        ("OOS trades", format_metric("num_trades", oos.get("num_trades")), ""),
        (f"WF efficiency ({label})", f"{eff:.2f}" if eff is not None else "–",
         "" if eff is None else ("pos" if eff >= 0.5 else "neg")),
    ]))
    eq = pairs_xy(doc.get("oos_equity") or [])
    markers = []
    if windows:
        starts = parse_times([str(w.get("test_from", "")) for w in windows], lenient=True)
        markers = [VLine(float(t), f"window {w.get('index')}: {_params_text(w.get('best_params'))}", "#9aa3ad")
                   for w, t in zip(windows, starts, strict=True)]
    charts = svg_line_chart([("Out-of-sample (stitched)", eq)], title="Stitched out-of-sample equity",
                            markers=markers, colors=(STRATEGY_COLOR,))
    charts += '<p class="note">Each test window starts flat from where the previous one ended; dashed lines mark ' \
              "window starts (hover for the chosen parameters).</p>"
    charts += svg_drawdown_chart([("Out-of-sample", _dd(eq))])
    body.append(section("Out-of-sample equity", charts))

    fmt = _metric_formatter(metric)
    isv = [_f((w.get("in_sample") or {}).get(metric)) for w in windows]
    osv = [_f((w.get("out_of_sample") or {}).get(metric)) for w in windows]
    pts_is = np.asarray([(i, v) for i, v in enumerate(isv) if v is not None]).reshape(-1, 2)
    pts_os = np.asarray([(i, v) for i, v in enumerate(osv) if v is not None]).reshape(-1, 2)
    if len(pts_is) or len(pts_os):
        body.append(section(f"{label}: in-sample vs out-of-sample", svg_line_chart(
            [("In-sample (train, best config)", pts_is), ("Out-of-sample (test)", pts_os)],
            title=f"{label} per window", x_is_time=False, height=240, y_format=fmt,
            x_format=lambda v: f"{v:.0f}" if float(v).is_integer() else "",
            colors=("#c77c2e", STRATEGY_COLOR))))

    rows: list[list[Cell]] = []
    for w, a, b in zip(windows, isv, osv, strict=True):
        o = w.get("out_of_sample") or {}
        rows.append([
            str(w.get("index")), f"{str(w.get('train_from', ''))[:10]} → {str(w.get('train_to', ''))[:10]}",
            f"{str(w.get('test_from', ''))[:10]} → {str(w.get('test_to', ''))[:10]}",
            _params_text(w.get("best_params")), f"{w.get('configs_ok', 0)}/{w.get('configs', 0)}",
            (fmt(a) if a is not None else "–", _tone(a)), (fmt(b) if b is not None else "–", _tone(b)),
            (format_metric("total_return", o.get("total_return")), _tone(o.get("total_return"))),
            format_metric("max_drawdown", o.get("max_drawdown")), format_metric("num_trades", o.get("num_trades")),
            str(w.get("note") or ""),
        ])
    table = html_table(["#", "Train", "Test", "Best params", "OK", f"IS {label}", f"OOS {label}", "OOS return",
                        "OOS max DD", "OOS trades", "Note"], rows, numeric=(4, 5, 6, 7, 8, 9), css_class="windows")
    body.append(section("Windows", f'<div class="table-wrap">{table}</div>'))

    drows: list[list[Cell]] = []
    for m, d in (doc.get("degradation") or {}).items():
        mf = _metric_formatter(str(m))
        e = _f(d.get("efficiency"))
        drows.append([METRIC_LABELS.get(str(m), str(m)),
                      mf(v) if (v := _f(d.get("mean_in_sample"))) is not None else "–",
                      mf(v) if (v := _f(d.get("mean_out_of_sample"))) is not None else "–",
                      f"{e:.2f}" if e is not None else "–",
                      format_pct(d.get("oos_positive"), 0)])
    body.append(section("Degradation", html_table(["Metric", "Mean in-sample", "Mean out-of-sample", "Efficiency",
                                                   "Windows OOS > 0"], drows, numeric=(1, 2, 3, 4)) +
                        '<p class="note">Efficiency = mean OOS / mean IS (defined when IS &gt; 0); around 0.5 or more '
                        "is commonly read as a strategy that is not just fitted to its training data.</p>"))
    body.append(section("Out-of-sample metrics", _metrics_only(oos)))
    stats = doc.get("stats") or {}
    if stats:
        body.append(section("Execution", html_table(["", ""], [[k, str(v)] for k, v in stats.items()],
                                                    numeric=(1,), css_class="metrics")))
    return page(f"Walk-forward {doc.get('strategy', '')} — MMATS", "".join(body))


def _metrics_only(metrics: Mapping[str, Any]) -> str:
    rows: list[list[Cell]] = [[METRIC_LABELS.get(k, k), (format_metric(k, metrics.get(k)), _tone(metrics.get(k))
                                                         if k not in ("num_trades", "avg_trade_duration_s") else "")]
                              for k in METRIC_KEYS if k in metrics]
    return html_table(["Metric", "Value"], rows, numeric=(1,), css_class="metrics")


# -------------------------------------------------------------------------------------- Monte Carlo

_METHOD_TITLES = {
    "trades": "Trade-sequence bootstrap",
    "blocks": "Block bootstrap of per-bar returns",
}


def _mc_section(res: Mapping[str, Any]) -> str:
    method = str(res.get("method", ""))
    initial = _f(res.get("initial_equity")) or 1.0
    ruin = _f(res.get("ruin_threshold")) or 0.5
    fe = res.get("final_equity") or {}
    dd = res.get("max_drawdown") or {}
    actual = res.get("actual") or {}
    what = (f"{res.get('runs', 0):,} runs, seed {res.get('seed')}"
            + (f", blocks of {res.get('block')} bars" if res.get("block") else ""))
    parts = [f'<p class="note">{esc(what)}.</p>', _cards([
        (f"P(ruin: < {ruin * 100:.0f}% of start)", format_pct(res.get("prob_ruin"), 1),
         "neg" if (_f(res.get("prob_ruin")) or 0) > 0 else "pos"),
        ("P(loss)", format_pct(res.get("prob_loss"), 1), ""),
        ("Final equity p5", format_number(fe.get("p5")), _tone((_f(fe.get("p5")) or initial) - initial)),
        ("Final equity median", format_number(fe.get("p50")), _tone((_f(fe.get("p50")) or initial) - initial)),
        ("Max drawdown median", format_pct(dd.get("p50")), "neg"),
        ("Max drawdown p5 (bad tail)", format_pct(dd.get("p5")), "neg"),
    ])]
    fmarks = [VLine(initial, "start", "#6b7785"), VLine(initial * ruin, f"ruin ({ruin * 100:.0f}%)", NEG_COLOR)]
    if _f(actual.get("final_equity")) is not None:
        fmarks.append(VLine(float(actual["final_equity"]), "actual", "#c77c2e"))
    for q in ("p5", "p50", "p95"):
        if _f(fe.get(q)) is not None:
            fmarks.append(VLine(float(fe[q]), q, "#8e5ea2" if q == "p50" else "#8fb0cf"))
    parts.append(svg_histogram(res.get("final_equity_values") or [], title="Final equity", markers=fmarks,
                               x_format=format_number))
    dmarks = []
    if _f(actual.get("max_drawdown")) is not None:
        dmarks.append(VLine(float(actual["max_drawdown"]), "actual", "#c77c2e"))
    for q in ("p5", "p50", "p95"):
        if _f(dd.get(q)) is not None:
            dmarks.append(VLine(float(dd[q]), q, "#8e5ea2" if q == "p50" else "#8fb0cf"))
    parts.append(svg_histogram(res.get("max_drawdown_values") or [], title="Max drawdown", markers=dmarks,
                               x_format=lambda v: f"{v * 100:.1f}%", color=NEG_COLOR))
    bands = res.get("bands") or {}
    if bands.get("x"):
        x = np.asarray(bands["x"], dtype=np.float64) * 100
        series = [(name, np.column_stack([x, np.asarray(bands[key], dtype=np.float64)]))
                  for name, key in (("p95", "p95"), ("p75", "p75"), ("median", "p50"), ("p25", "p25"), ("p5", "p5"))
                  if key in bands]
        order = (2, 1, 3, 0, 4)  # median first so it is drawn on top
        series = [series[i] for i in order if i < len(series)]
        colors = [STRATEGY_COLOR, "#8fb0cf", "#8fb0cf", "#c9d6e4", "#c9d6e4"]
        parts.append(svg_line_chart(series, title="Equity percentile bands (x: % of the path)", x_is_time=False,
                                    colors=colors, x_format=lambda v: f"{v:.0f}%", height=280,
                                    markers=[]))
    rows: list[list[Cell]] = []
    for q in ("min", "p5", "p25", "p50", "p75", "p95", "max", "mean", "std"):
        rows.append([q, format_number(fe.get(q)), format_pct(dd.get(q))])
    parts.append(html_table(["Statistic", "Final equity", "Max drawdown"], rows, numeric=(1, 2), css_class="metrics"))
    return section(_METHOD_TITLES.get(method, method or "Monte Carlo"), "".join(parts))


def render_montecarlo_report(doc: Mapping[str, Any]) -> str:
    results = [r for r in doc.get("results") or [] if isinstance(r, Mapping)]
    if not results and doc.get("method"):
        results = [doc]
    src = doc.get("source") or {}
    sub = (f"from {src.get('result', 'a backtest result')} · {src.get('trades', '?')} trades, "
           f"{src.get('bars', '?')} bars · initial equity {format_number(src.get('initial_equity'))}")
    body = [_header("MMATS Monte Carlo", f"{src.get('strategy', 'strategy')} — how much was luck?", sub)]
    body.append('<section><p class="note" style="margin:0">Trade bootstrap: the closed trades resampled with '
                "replacement, each compounding its return on equity at entry. Block bootstrap: the per-bar returns "
                "resampled in circular blocks, keeping short-run dependence. Ruin: equity below the threshold at "
                "any point.</p></section>")
    for res in results:
        body.append(_mc_section(res))
    return page(f"Monte Carlo {src.get('strategy', '')} — MMATS", "".join(body))


# --------------------------------------------------------------------------------------- dispatcher


def render_any(doc: Mapping[str, Any]) -> str:
    """Pick the page by the document's ``kind`` (a backtest result has none)."""
    kind = doc.get("kind")
    if kind == "sweep":
        return render_sweep_report(doc)
    if kind == "walkforward":
        return render_walkforward_report(doc)
    if kind == "montecarlo":
        return render_montecarlo_report(doc)
    if "equity" in doc or "metrics" in doc:
        return render_backtest_report(doc)
    raise ValidationError("report: not a backtest, sweep, walk-forward or Monte Carlo result (no 'kind', no "
                          "'equity')")


def write_any(doc: Mapping[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_any(doc), encoding="utf-8")
    return p
