"""HTML reports for research: sweeps, walk-forward, Monte Carlo, and the extra views of one backtest.

Same rules as ``mmats.reports.backtest_report`` (whose page shell and chart helpers these pages reuse): one
self-contained file, inline SVG, no network, every user string escaped. What each page is for:

- sweep: is the best config a lone spike or a plateau? The parameter heatmap answers that at a glance,
  the ranked table gives the numbers, the best run's equity shows what the number means;
- walk-forward: does optimizing on the past pick configs that still work on the next, unseen window?
  The windows table puts in-sample next to out-of-sample, the stitched curve is the honest result;
- Monte Carlo: how lucky was the order of trades? Histograms and percentile bands show the spread,
  the probability of ruin the tail;
- a single backtest: ``mmats.reports.backtest_report.render_html`` (with its monthly returns heatmap and trade P&L
  distribution), the same page ``backtest --report`` writes.

Colours follow ``mmats.reports.colors``: by what is good for the metric (red below its neutral value,
green above), never by rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmats.errors import ValidationError
from mmats.reports.backtest_report import (
    BENCHMARK_COLOR,
    METRIC_LABELS,
    MONTHS,
    STRATEGY_COLOR,
    VLine,
    esc,
    format_metric,
    format_number,
    format_pct,
    html_table,
    monthly_returns,
    monthly_returns_section,
    page,
    parse_times,
    render_html,
    section,
    svg_drawdown_chart,
    svg_heatmap,
    svg_histogram,
    svg_line_chart,
    trade_pnl_section,
)
from mmats.reports.colors import NEG_COLOR, POS_COLOR, metric_scale, scale_note, sign_tone, tone
from mmats.research.metrics import METRIC_KEYS, drawdown_series

__all__ = [
    "MONTHS", "NEG_COLOR", "POS_COLOR", "heatmap_matrix", "monthly_returns", "monthly_returns_section", "pairs_xy",
    "render_any", "render_backtest_report", "render_montecarlo_report", "render_sweep_report",
    "render_walkforward_report", "svg_histogram", "trade_pnl_section", "write_any",
]

BAND_COLORS = ("#c9d6e4", "#8fb0cf", STRATEGY_COLOR, "#8fb0cf", "#c9d6e4")

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
    for label, value, cls_tone in items:
        cls = f"value {cls_tone}" if cls_tone else "value"
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


# ----------------------------------------------------------------------------- single backtest extras


def render_backtest_report(result: Mapping[str, Any]) -> str:
    """The backtest page: since the monthly returns and the trade P&L distribution moved into
    ``mmats.reports.backtest_report.render_html``, ``backtest --report`` and ``mmats report`` render the same page."""
    return render_html(result)


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


def _neutral(metric: str) -> float:
    """Where a chart of ``metric`` draws its reference line: the value between good and bad."""
    scale = metric_scale(metric)
    return scale.center if scale.kind == "diverging" else 0.0


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
        (f"Best {label}", format_metric(metric, top_v), tone(metric, top_v)),
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
                                            value_format=_metric_formatter(metric), metric=metric) + note
                                + '<p class="note">A robust choice sits on a plateau of good cells, not on a '
                                  f"lone spike. {esc(scale_note(metric))}</p>"))
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
                     *[(format_metric(c, m.get(c)), tone(c, m.get(c))) for c in cols],
                     format_number(r.get("final_equity"))])
    headers = ["#", *names, *[METRIC_LABELS.get(c, c) for c in cols], "Final equity"]
    table = html_table(headers, rows, numeric=tuple(range(len(names) + 1, len(headers))), css_class="ranked",
                       wrap=tuple(range(1, len(names) + 1)))
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
        ftable = html_table(["Params", "Status", "Error"], frows, wrap=(0, 2))
        body.append(section(f"Failed configurations ({len(failed):,})",
                            f'<div class="table-wrap">{ftable}</div>{more}'))
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
        *[(f"OOS {name}", format_metric(k, oos.get(k)), tone(k, oos.get(k)))
          for k, name in (("total_return", "total return"), ("cagr", "CAGR"), ("sharpe", "Sharpe"),
                          ("max_drawdown", "max drawdown"), ("num_trades", "trades"))],
        (f"WF efficiency ({label})", f"{eff:.2f}" if eff is not None else "–", tone("efficiency", eff)),
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
            title=f"{label} per window", x_is_time=False, height=240, y_format=fmt, y_ref=_neutral(metric),
            x_format=lambda v: f"{v:.0f}" if float(v).is_integer() else "",
            colors=("#c77c2e", STRATEGY_COLOR))))

    notes = any(w.get("note") for w in windows)
    rows: list[list[Cell]] = []
    for w, a, b in zip(windows, isv, osv, strict=True):
        o = w.get("out_of_sample") or {}
        rows.append([
            # a line break between the dates (the cell keeps newlines): a date never splits at its hyphens
            str(w.get("index")), f"{str(w.get('train_from', ''))[:10]} →\n{str(w.get('train_to', ''))[:10]}",
            f"{str(w.get('test_from', ''))[:10]} →\n{str(w.get('test_to', ''))[:10]}",
            _params_text(w.get("best_params")), f"{w.get('configs_ok', 0)}/{w.get('configs', 0)}",
            (fmt(a) if a is not None else "–", tone(metric, a)), (fmt(b) if b is not None else "–", tone(metric, b)),
            (format_metric("total_return", o.get("total_return")), tone("total_return", o.get("total_return"))),
            (format_metric("max_drawdown", o.get("max_drawdown")), tone("max_drawdown", o.get("max_drawdown"))),
            format_metric("num_trades", o.get("num_trades")),
            *([str(w.get("note") or "")] if notes else []),
        ])
    table = html_table(["#", "Train", "Test", "Best params", "OK", f"IS {label}", f"OOS {label}", "OOS return",
                        "OOS max DD", "OOS trades", *(["Note"] if notes else [])], rows, numeric=(4, 5, 6, 7, 8, 9),
                       css_class="windows", wrap=(1, 2, 3, 10))
    body.append(section("Windows", f'<div class="table-wrap">{table}</div>'))

    drows: list[list[Cell]] = []
    for m, d in (doc.get("degradation") or {}).items():
        mf = _metric_formatter(str(m))
        e = _f(d.get("efficiency"))
        mis, mos = _f(d.get("mean_in_sample")), _f(d.get("mean_out_of_sample"))
        drows.append([METRIC_LABELS.get(str(m), str(m)),
                      (mf(mis) if mis is not None else "–", tone(str(m), mis)),
                      (mf(mos) if mos is not None else "–", tone(str(m), mos)),
                      (f"{e:.2f}" if e is not None else "–", tone("efficiency", e)),
                      format_pct(_share_good(str(m), windows, d.get("oos_positive")), 0)])
    body.append(section("Degradation", html_table(["Metric", "Mean in-sample", "Mean out-of-sample", "Efficiency",
                                                   "Windows OOS good"], drows, numeric=(1, 2, 3, 4)) +
                        '<p class="note">Efficiency = mean OOS / mean IS (defined when IS &gt; 0); around 0.5 or more '
                        "is commonly read as a strategy that is not just fitted to its training data. Windows OOS "
                        "good: the share of test windows on the good side of the metric's neutral value (above 0; "
                        "above 1 for a profit factor).</p>"))
    body.append(section("Out-of-sample metrics", _metrics_only(oos)))
    stats = doc.get("stats") or {}
    if stats:
        body.append(section("Execution", html_table(["", ""], [[k, str(v)] for k, v in stats.items()],
                                                    numeric=(1,), css_class="metrics")))
    return page(f"Walk-forward {doc.get('strategy', '')} — MMATS", "".join(body))


def _share_good(metric: str, windows: Sequence[Mapping[str, Any]], fallback: object) -> float | None:
    """Share of windows whose out-of-sample ``metric`` is good by ``report_colors.tone`` (profit factor > 1,
    not > 0 as the JSON's ``oos_positive`` counts); the JSON's number when the windows do not hold it."""
    if metric_scale(metric).kind != "diverging":
        return _f(fallback)
    values = [v for w in windows if (v := _f((w.get("out_of_sample") or {}).get(metric))) is not None]
    if not values:
        return _f(fallback)
    return sum(1 for v in values if tone(metric, v) == "pos") / len(values)


def _metrics_only(metrics: Mapping[str, Any]) -> str:
    rows: list[list[Cell]] = [[METRIC_LABELS.get(k, k), (format_metric(k, metrics.get(k)), tone(k, metrics.get(k)))]
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
        ("P(loss)", format_pct(res.get("prob_loss"), 1), sign_tone(0.5, _f(res.get("prob_loss")) or 0.0)),
        ("Final equity p5", format_number(fe.get("p5")), sign_tone(fe.get("p5"), initial)),
        ("Final equity median", format_number(fe.get("p50")), sign_tone(fe.get("p50"), initial)),
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
                               x_format=format_number, split_at=initial, tick_format=lambda v: f"{v:,.0f}"))
    parts.append('<p class="note">Bars below the start equity are red, above it green.</p>')
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
