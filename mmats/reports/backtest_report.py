"""Self-contained HTML report of a backtest result (the JSON schema of docs/result-schema.md).

Why no charting library: a report is an artifact people archive, mail and open years later on a
machine without network. So the page is one file with inline CSS and inline SVG drawn here in Python;
the only script is a few lines for hover read-outs, and the page reads fine without it.

Long series are reduced per chart with min/max bucketing (``downsample_minmax``): a 1M-bar equity curve
becomes ~2,000 points, and a one-bar spike or crash stays visible because each bucket keeps both its
extremes. Every string that comes from the user (strategy name, symbol, config, reasons) is escaped.

The chart and table helpers are public so the research reports (sweeps, walk-forward, heatmaps) build
their pages from the same pieces: ``page`` (shell, CSS, hover script), ``svg_line_chart``,
``svg_drawdown_chart``, ``svg_heatmap``, ``svg_histogram``, ``html_table``. Every colour that says good or
bad comes from ``mmats.reports.colors``.

The page prints: a print stylesheet opens the scroll boxes, pages long tables with their header repeated
on each page (every trade is listed, up to ``MAX_TRADE_ROWS``), keeps headings with what follows them and
small blocks (cards, charts, short tables) whole, and wraps the configuration. ``mmats report --pdf``
prints it with headless Chromium; tests/e2e/test_pdf_print.py reads the PDF back.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmats.errors import ValidationError
from mmats.reports.colors import (
    MISSING_COLOR,
    NEG_COLOR,
    POS_COLOR,
    MetricScale,
    heat_color,
    metric_scale,
    scale_note,
    sign_tone,
    split_color,
    text_color_on,
    tone,
)
from mmats.research.metrics import METRIC_KEYS, drawdown_series

Points = Sequence[tuple[float, float]] | np.ndarray
"""A series' points: (x, y) pairs or an (n, 2) array; x is epoch nanoseconds or any number."""
Cell = str | tuple[str, str]
"""A table cell: text, or (text, css class) e.g. ("+12.0", "pos")."""

STRATEGY_COLOR = "#2c5d8f"
BENCHMARK_COLOR = "#9aa3ad"
PALETTE = (STRATEGY_COLOR, BENCHMARK_COLOR, "#c77c2e", "#4f8a5b", "#8e5ea2", "#b5483f", "#3f8f9a")
STATE_COLORS = {"SOFT": "#d39b22", "HARD": "#c0392b", "FREEZE": "#6c3fa0"}
MAX_TRADE_ROWS = 10_000
"""Trades listed in a report (screen and PDF alike): every trade of an ordinary run. Past this the PDF
would run to ~200 pages and take Chromium about a minute to print, so the table stops here and the note
above it says that the JSON result holds the rest."""
_NS = 1_000_000_000

METRIC_LABELS = {
    "total_return": "Total return",
    "cagr": "CAGR",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "max_drawdown": "Max drawdown",
    "avg_drawdown": "Avg drawdown",
    "win_rate": "Win rate",
    "profit_factor": "Profit factor",
    "num_trades": "Trades",
    "avg_trade_duration_s": "Avg trade duration",
    "best_trade": "Best trade",
    "worst_trade": "Worst trade",
}

# --------------------------------------------------------------------------------------- formatting


def esc(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute: user strings end up here, never raw."""
    return html.escape(str(value), quote=True)


def _num(v: object) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def format_duration(seconds: float) -> str:
    """A unit a person can compare at a glance (90 s, 12.5 min, 3.2 h, 4.0 d) instead of raw seconds."""
    s = abs(seconds)
    if s < 120:
        return f"{seconds:.0f} s"
    if s < 7200:
        return f"{seconds / 60:.1f} min"
    if s < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_pct(v: object, decimals: int = 2, sign: bool = False) -> str:
    f = _num(v)
    if f is None:
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f * 100:{'+' if sign else ''},.{decimals}f} %"


def format_number(v: object) -> str:
    """Prices, quantities and money: enough digits to tell 0.00012 from 0.00013 and 43,210.55 apart."""
    f = _num(v)
    if f is None:
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    a = abs(f)
    if a >= 1000:
        return f"{f:,.2f}"
    if a >= 1:
        return f"{f:,.4f}".rstrip("0").rstrip(".") if a < 100 else f"{f:,.2f}"
    if a == 0:
        return "0"
    return f"{f:.6g}"


def format_money(v: object) -> str:
    """Cash, P&L and fees: cents for ordinary amounts, 4 significant digits for crypto dust."""
    f = _num(v)
    if f is None:
        return "–"
    if abs(f) >= 0.995 or f == 0:
        return f"{f:,.2f}"
    return f"{f:.4g}"


def short_time(text: object) -> str:
    """'2022-01-05T13:00:00Z' -> '2022-01-05 13:00': tables are read by people, the JSON keeps ISO."""
    t = str(text or "")
    if len(t) == 20 and t[10] == "T" and t.endswith("Z"):
        t = t[:10] + " " + (t[11:16] if t[16:19] == ":00" else t[11:19])
    return t or "–"


def format_metric(key: str, value: object) -> str:
    """One metric as a person reads it: fractions as %, ratios with 2 decimals, missing as a dash."""
    f = _num(value)
    if f is None:
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if key == "num_trades":
        return f"{int(f):,}"
    if key in ("sharpe", "sortino", "profit_factor"):
        return f"{f:,.2f}"
    if key == "avg_trade_duration_s":
        return format_duration(f)
    return format_pct(f)


def _tone(v: object) -> str:
    return sign_tone(v)


# ------------------------------------------------------------------------------------ data handling


def parse_times(times: Sequence[str], lenient: bool = False) -> np.ndarray:
    """ISO 8601 strings -> float epoch ns, vectorized (1M strings in ~0.15 s, a Python loop takes 3 s).

    Strict for the equity curve (a bad time there is a broken result file, say so); ``lenient`` for
    annotations such as trades and kill-switch events, where an unreadable time becomes NaN and the
    rest of the report still renders.
    """
    if len(times) == 0:
        return np.zeros(0)
    try:
        raw = [str(t) for t in times] if lenient else list(times)
        idx = pd.DatetimeIndex(pd.to_datetime(raw, format="ISO8601", utc=True,
                                              errors="coerce" if lenient else "raise"))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"report: unreadable time in result ({exc})") from None
    out = idx.as_unit("ns").asi8.astype(np.float64)
    out[np.asarray(idx.isna())] = np.nan
    return out


def series_from_pairs(
    pairs: Sequence[Sequence[Any]], field: str = "equity", like: tuple[Sequence[Any], np.ndarray] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """A result's ``[[time, value], ...]`` as an (n, 2) float array (x = epoch ns) for the charts.

    Also returns the raw time list: pass ``(times, array)`` of a series already parsed as ``like`` and,
    when the times are the same (the benchmark shares the strategy's clock), parsing is skipped: it is
    the one cost that grows with a 1M-bar curve.
    """
    if not pairs:
        return np.zeros((0, 2)), []
    try:
        times = [p[0] for p in pairs]
        values = np.array([p[1] for p in pairs], dtype=np.float64)
    except (TypeError, IndexError, ValueError) as exc:
        raise ValidationError(f"report: result.{field} must be a list of [time, value] pairs ({exc})") from None
    out = np.empty((len(pairs), 2))
    if like is not None and like[0] == times:
        out[:, 0] = like[1][:, 0]
    else:
        out[:, 0] = parse_times(times)
    out[:, 1] = values
    return out, times


def _as_xy(points: Points) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros(0), np.zeros(0)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValidationError(f"chart series must be (x, y) pairs, got shape {arr.shape}")
    ok = np.isfinite(arr).all(axis=1)
    if not ok.all():
        arr = arr[ok]
    if len(arr) > 1 and not (np.diff(arr[:, 0]) >= 0).all():
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
    return arr[:, 0], arr[:, 1]


def downsample_minmax(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_points``: the first, the last, and each bucket's min and max in time order.

    A plain every-Nth subsample would drop a one-bar crash; keeping both extremes per bucket draws the
    same envelope the full series would at screen resolution.
    """
    n = len(y)
    if n <= max_points or max_points < 4:
        return x, y
    buckets = (max_points - 2) // 2
    k = -(-n // buckets)
    pad = buckets * k - n
    yy = np.concatenate([y, np.full(pad, y[-1])]) if pad else y
    grid = yy.reshape(buckets, k)
    base = np.arange(buckets) * k
    idx = np.concatenate([grid.argmin(axis=1) + base, grid.argmax(axis=1) + base, [0, n - 1]])
    idx = np.unique(np.minimum(idx, n - 1))
    return x[idx], y[idx]


# ------------------------------------------------------------------------------------------- ticks


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round-numbered ticks (1, 2, 2.5, 5 x 10^k) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


_SECOND_STEPS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
                 7 * 86400, 14 * 86400)
_MONTH_STEPS = (1, 3, 6, 12, 24, 60, 120)
_MONDAY = 4 * 86400  # the epoch was a Thursday: weekly ticks fall on Mondays


def time_ticks(x0_ns: float, x1_ns: float, target: int = 6) -> list[tuple[float, str]]:
    """Calendar-aligned UTC ticks (midnights, Mondays, month and year starts) with fitting labels."""
    if not (math.isfinite(x0_ns) and math.isfinite(x1_ns)) or x1_ns <= x0_ns:
        return []
    span = (x1_ns - x0_ns) / _NS
    for step in _SECOND_STEPS:
        if span / step <= target:
            off = _MONDAY if step >= 7 * 86400 else 0
            t = math.ceil((x0_ns / _NS - off) / step) * step + off
            out = []
            while t * _NS <= x1_ns:
                dt = datetime.fromtimestamp(t, tz=UTC)
                if step >= 86400:
                    label = dt.strftime("%Y-%m-%d")
                elif span > 86400:
                    label = dt.strftime("%m-%d %H:%M")
                else:
                    label = dt.strftime("%H:%M" if step >= 60 else "%H:%M:%S")
                out.append((t * float(_NS), label))
                t += step
            return out
    start = datetime.fromtimestamp(x0_ns / _NS, tz=UTC)
    months_span = span / (30.44 * 86400)
    mstep = next((m for m in _MONTH_STEPS if months_span / m <= target), None)
    if mstep is None:
        mstep = 12 * int(10 ** math.ceil(math.log10(months_span / 12 / target)))
    month = start.year * 12 + start.month - 1
    month = -(-month // mstep) * mstep
    out = []
    while True:
        dt = datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)
        ns = dt.timestamp() * _NS
        if ns > x1_ns:
            return out
        if ns >= x0_ns:
            out.append((ns, dt.strftime("%Y" if mstep % 12 == 0 else "%b %Y")))
        month += mstep


def _value_formatter(ticks: Sequence[float]) -> Callable[[float], str]:
    """As many decimals as the tick step needs (2.5 -> 1, 0.02 -> 2, 5000 -> 0), thousands separated."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 0.0
    decimals = 0
    while step > 0 and decimals < 8 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return lambda v: f"{v:,.{decimals}f}"


def _pct_tick_formatter(ticks: Sequence[float]) -> Callable[[float], str]:
    fmt = _value_formatter([t * 100 for t in ticks])
    return lambda v: fmt(v * 100) + "%"


def _time_label(ns: float) -> str:
    return datetime.fromtimestamp(ns / _NS, tz=UTC).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------------------------------- charts


@dataclass(frozen=True, slots=True)
class VLine:
    """A vertical marker across a chart, e.g. a kill-switch transition."""

    x: float
    label: str
    color: str = "#c0392b"


def _empty_chart(title: str, width: int, height: int, message: str = "no data") -> str:
    return (f'<figure class="chart"><figcaption>{esc(title)}</figcaption>'
            f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="muted">{esc(message)}</text>'
            f"</svg></figure>")


def svg_line_chart(
    series: Sequence[tuple[str, Points]],
    *,
    title: str = "",
    width: int = 960,
    height: int = 300,
    x_is_time: bool = True,
    y_format: Callable[[float], str] | None = None,
    y_percent: bool = False,
    x_format: Callable[[float], str] | None = None,
    colors: Sequence[str] | None = None,
    markers: Sequence[VLine] = (),
    fill_first: bool = False,
    y_range: tuple[float, float] | None = None,
    max_points: int = 2000,
    hover: bool = True,
    y_ref: float = 0.0,
) -> str:
    """Lines (the first optionally filled down to 0) with axes, legend, markers and a hover read-out.

    A darker horizontal line marks ``y_ref`` when it is inside the value range: 0 by default, the
    neutral value of the metric otherwise (1 for a profit factor).

    x is epoch ns when ``x_is_time`` (calendar ticks), any number otherwise; ``y_percent`` reads y as
    fractions and labels them in %. Each series is reduced
    with ``downsample_minmax`` first, so the SVG size depends on ``max_points``, not on the data.
    """
    colors = list(colors or PALETTE)
    xy = [(name, *_as_xy(pts)) for name, pts in series]
    xy = [(name, x, y) for name, x, y in xy if len(x)]
    if not xy:
        return _empty_chart(title, width, height)
    drawn = [(name, *downsample_minmax(x, y, max_points)) for name, x, y in xy]

    ml, mr, mt, mb = 74, 16, 34, 30
    pw, ph = width - ml - mr, height - mt - mb
    x0 = min(float(x[0]) for _, x, _ in xy)
    x1 = max(float(x[-1]) for _, x, _ in xy)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if y_range is not None:
        y0, y1 = y_range
    else:
        y0 = min(float(y.min()) for _, _, y in xy)
        y1 = max(float(y.max()) for _, _, y in xy)
        if fill_first:
            y0, y1 = min(y0, 0.0), max(y1, 0.0)
        pad = (y1 - y0) * 0.05 or max(abs(y1) * 0.01, 1e-9)
        y0, y1 = (y0 if fill_first and y0 == 0 else y0 - pad), (y1 if fill_first and y1 == 0 else y1 + pad)
    if y1 <= y0:
        y0, y1 = y0 - 1, y1 + 1

    def px(x: np.ndarray | float) -> Any:
        return ml + (np.asarray(x) - x0) / (x1 - x0) * pw

    def py(y: np.ndarray | float) -> Any:
        return mt + ph - (np.asarray(y) - y0) / (y1 - y0) * ph

    yt = nice_ticks(y0, y1, 5)
    yfmt = y_format or (_pct_tick_formatter(yt) if y_percent else _value_formatter(yt))
    if x_is_time:
        xt = time_ticks(x0, x1)
    else:
        xfmt = x_format or _value_formatter(nice_ticks(x0, x1, 6))
        xt = [(v, xfmt(v)) for v in nice_ticks(x0, x1, 6)]

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
             f'preserveAspectRatio="xMidYMid meet" font-size="11">']
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="plot" fill="#fcfcfd"/>')
    for v in yt:
        yy = float(py(v))
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid" stroke="#e6e8eb"/>')
        parts.append(f'<text x="{ml - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick">{esc(yfmt(v))}</text>')
    for v, label in xt:
        xx = float(px(v))
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{mt + ph}" class="grid" stroke="#eef0f2"/>')
        parts.append(f'<text x="{xx:.1f}" y="{mt + ph + 18}" text-anchor="middle" class="tick">{esc(label)}</text>')
    if y0 < y_ref < y1:
        zy = float(py(y_ref))
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{zy:.1f}" y2="{zy:.1f}" stroke="#b8bec6"/>')
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#d5d9de"/>')

    # Draw the first series last so the strategy sits on top of its benchmark.
    for i in reversed(range(len(drawn))):
        _, x, y = drawn[i]
        color = colors[i % len(colors)]
        xs, ys = px(x), py(np.clip(y, y0, y1))
        if len(xs) == 1:
            xs, ys = np.array([xs[0] - 1, xs[0] + 1]), np.array([ys[0], ys[0]])
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys, strict=True))
        if i == 0 and fill_first:
            base = float(py(min(max(0.0, y0), y1)))
            parts.append(f'<polygon points="{xs[0]:.1f},{base:.1f} {pts} {xs[-1]:.1f},{base:.1f}" '
                         f'fill="{color}" fill-opacity="0.18" stroke="none"/>')
        width_px = 1.6 if i == 0 else 1.2
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width_px}" '
                     f'stroke-linejoin="round" vector-effect="non-scaling-stroke"/>')

    for m in markers:
        if not (x0 <= m.x <= x1):
            continue
        xx = float(px(m.x))
        parts.append(f'<g class="marker"><title>{esc(m.label)}</title>'
                     f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{mt + ph}" stroke="{esc(m.color)}" '
                     f'stroke-dasharray="4 3" stroke-width="1.2"/>'
                     f'<rect x="{xx - 4:.1f}" y="{mt - 2}" width="8" height="8" fill="{esc(m.color)}"/></g>')

    lx = ml
    for i, (name, _, _) in enumerate(drawn):
        color = colors[i % len(colors)]
        parts.append(f'<rect x="{lx}" y="12" width="14" height="3" fill="{color}"/>'
                     f'<text x="{lx + 19}" y="17" class="legend">{esc(name)}</text>')
        lx += 30 + 7 * len(name)
    if hover:
        parts.append(f'<line class="hover-line" x1="0" x2="0" y1="{mt}" y2="{mt + ph}" stroke="#555" '
                     f'stroke-width="0.8" visibility="hidden"/>')
    parts.append("</svg>")

    attrs = ""
    if hover:
        hfmt = y_format or (format_pct if y_percent else format_number)
        data = _hover_data(xy, px, x0, x1, hfmt, colors, x_is_time, x_format, ml, pw)
        attrs = f' data-hover="{esc(json.dumps(data, separators=(",", ":")))}"'
    caption = f"<figcaption>{esc(title)}</figcaption>" if title else ""
    return f'<figure class="chart"{attrs}>{caption}{"".join(parts)}<div class="tip"></div></figure>'


def _hover_data(
    xy: Sequence[tuple[str, np.ndarray, np.ndarray]],
    px: Callable[[Any], Any],
    x0: float,
    x1: float,
    yfmt: Callable[[float], str],
    colors: Sequence[str],
    x_is_time: bool,
    x_format: Callable[[float], str] | None,
    ml: float,
    pw: float,
) -> dict[str, Any]:
    """Values of every series at ~240 evenly spaced x positions: enough for a read-out, ~15 KB."""
    cols = np.linspace(x0, x1, 240)
    xlab = _time_label if x_is_time else (x_format or (lambda v: f"{v:,.4g}"))
    # Label each column with the time of the first series' point shown there, not the column's own
    # (interpolated) time: the read-out then names a real bar.
    x_first = xy[0][1]
    j0 = np.searchsorted(x_first, cols, side="right") - 1
    out: dict[str, Any] = {
        "left": ml, "width": pw,
        "px": [round(float(v), 1) for v in px(cols)],
        "x": [xlab(float(x_first[k] if k >= 0 else c)) for k, c in zip(j0, cols, strict=True)],
        "s": [],
    }
    for i, (name, x, y) in enumerate(xy):
        j = np.searchsorted(x, cols, side="right") - 1
        vals = [yfmt(float(y[k])) if k >= 0 else "–" for k in j]
        out["s"].append({"n": name, "c": colors[i % len(colors)], "v": vals})
    return out


def svg_drawdown_chart(
    series: Sequence[tuple[str, Points]],
    *,
    title: str = "Drawdown",
    width: int = 960,
    height: int = 200,
    max_points: int = 2000,
) -> str:
    """Drawdown curves (fractions <= 0, e.g. from ``metrics.drawdown_series``): the first as an area."""
    return svg_line_chart(series, title=title, width=width, height=height, y_percent=True,
                          fill_first=True, max_points=max_points,
                          colors=(STRATEGY_COLOR, BENCHMARK_COLOR, *PALETTE[2:]))


def svg_heatmap(
    values: np.ndarray | Sequence[Sequence[float]],
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    value_format: Callable[[float], str] = lambda v: f"{v:.2f}",
    cell: int = 44,
    metric: str | MetricScale | None = None,
    scale_range: tuple[float, float] | None = None,
) -> str:
    """A grid of values (rows = y_labels, columns = x_labels), e.g. Sharpe over two swept parameters.

    Cells are coloured by ``metric``'s scale (``mmats.reports.colors``): red below the metric's neutral
    value and green above it, never by rank, so a grid of only losing configs has no green cell. ``None``
    reads the values as signed (neutral 0). ``scale_range`` fixes the range the colours span (e.g. the
    monthly cells only, so one big yearly total does not wash the months out); by default the finite
    values' min and max. A legend under the grid shows the scale.
    """
    z = np.asarray(values, dtype=np.float64)
    if z.ndim != 2 or z.shape != (len(y_labels), len(x_labels)):
        raise ValidationError(f"heatmap: values shape {z.shape} != ({len(y_labels)}, {len(x_labels)}) labels")
    finite = z[np.isfinite(z)]
    if scale_range is not None:
        lo, hi = scale_range
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scale = metric_scale(metric)
    longest = max((len(str(lab)) for lab in y_labels), default=4)
    ml, mt = max(60, 16 + 7 * longest + (16 if y_title else 0)), 8  # the title is the figcaption
    grid_w, grid_h = cell * z.shape[1], cell * z.shape[0]
    legend_y = mt + grid_h + (56 if x_title else 40)
    width, height = max(ml + grid_w + 10, ml + 330), legend_y + 26
    show_text = z.size <= 400
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" font-size="11" '
             f'style="max-width:{width}px">']
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            v = float(z[r, c])
            x, y = ml + c * cell, mt + r * cell
            text = value_format(v) if math.isfinite(v) else "–"
            fill = heat_color(scale, v, lo, hi)
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{fill}"><title>{esc(y_labels[r])} / {esc(x_labels[c])}: '
                         f'{esc(text)}</title></rect>')
            if show_text:
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                             f'class="cell" style="fill:{text_color_on(fill)}">{esc(text)}</text>')
    for r, lab in enumerate(y_labels):
        parts.append(f'<text x="{ml - 6}" y="{mt + r * cell + cell / 2 + 4:.1f}" text-anchor="end" '
                     f'class="tick">{esc(lab)}</text>')
    for c, lab in enumerate(x_labels):
        parts.append(f'<text x="{ml + c * cell + cell / 2:.1f}" y="{mt + grid_h + 16}" '
                     f'text-anchor="middle" class="tick">{esc(lab)}</text>')
    if x_title:
        parts.append(f'<text x="{ml + grid_w / 2:.1f}" y="{mt + grid_h + 32}" text-anchor="middle" '
                     f'class="axis-title">{esc(x_title)}</text>')
    if y_title:
        parts.append(f'<text x="12" y="{mt + grid_h / 2:.1f}" text-anchor="middle" class="axis-title" '
                     f'transform="rotate(-90 12 {mt + grid_h / 2:.1f})">{esc(y_title)}</text>')
    parts.append(_heat_legend(scale, lo, hi, value_format, ml, legend_y))
    parts.append("</svg>")
    caption = f"<figcaption>{esc(title)}</figcaption>" if title else ""
    return f'<figure class="chart heatmap">{caption}{"".join(parts)}</figure>'


def _heat_legend(scale: MetricScale, lo: float, hi: float, fmt: Callable[[float], str], x: float, y: float) -> str:
    """Swatches of the worst value shown, the neutral one and the best, labelled: the colour rule at a glance."""
    if scale.kind == "diverging":  # the worst and best values shown around the neutral one
        c = scale.center
        stops = [*([lo] if lo < c else []), c, *([hi] if hi > c else [])]
    elif scale.kind == "loss":
        stops = [min(lo, 0.0), 0.0]
    else:
        stops = [lo, hi] if hi > lo else [lo]
    out = ['<g class="legend-scale">']
    step = 110
    for i, v in enumerate(stops):
        fill = heat_color(scale, v, lo, hi) if math.isfinite(v) else MISSING_COLOR
        xx = x + i * step
        out.append(f'<rect x="{xx}" y="{y - 10}" width="14" height="12" fill="{fill}" stroke="#c9ced4"/>'
                   f'<text x="{xx + 19}" y="{y}" class="tick">{esc(fmt(v))}</text>')
    out.append("</g>")
    return "".join(out)


def _legend(items: Sequence[tuple[str, str]], x: float, right: float, y: float = 17) -> tuple[str, float]:
    """(colour, label) swatches laid out in rows that wrap at ``right``; returns the SVG and its last row's y."""
    parts = []
    lx, ly = x, y
    for color, label in items:
        w = 30 + 6.6 * len(label)
        if lx > x and lx + w > right:
            lx, ly = x, ly + 15
        parts.append(f'<rect x="{lx:.0f}" y="{ly - 5:.0f}" width="14" height="3" fill="{esc(color)}"/>'
                     f'<text x="{lx + 19:.0f}" y="{ly:.0f}" class="legend">{esc(label)}</text>')
        lx += w
    return "".join(parts), ly


MARKER_REACH = 0.25
"""A histogram marker within this fraction of the distribution's width of it is drawn to scale."""


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
    tick_format: Callable[[float], str] | None = None,
) -> str:
    """Bars of a distribution; with ``split_at`` bars below it are red, above it green (P&L around 0,
    final equity around the start equity: ``report_colors.split_color``).

    The x-axis fits the distribution, not the markers: a marker (start equity, ruin level, a percentile)
    is drawn to scale when it lies within ``MARKER_REACH`` of the distribution's width from it; a marker
    farther away is named in the legend with its value and an arrow on the side it lies, so one
    far-away reference cannot squeeze the bars into a sliver of the chart.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    caption = f"<figcaption>{esc(title)}</figcaption>" if title else ""
    if v.size == 0:
        return (f'<figure class="chart">{caption}<svg viewBox="0 0 {width} {height}" role="img">'
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="muted">no data</text>'
                f"</svg></figure>")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    reach = (hi - lo) * MARKER_REACH
    inside = [m for m in markers if math.isfinite(m.x) and lo - reach <= m.x <= hi + reach]
    outside = [m for m in markers if math.isfinite(m.x) and not lo - reach <= m.x <= hi + reach]
    for m in inside:
        lo, hi = min(lo, m.x), max(hi, m.x)
    counts, edges = np.histogram(v, bins=max(1, bins), range=(lo, hi))

    ml, mr, mb = 56, 16, 30
    legend_items = [(m.color, m.label) for m in inside]
    legend_items += [(m.color, f"{'← ' if m.x < lo else ''}{m.label} {x_format(m.x)} (off scale)"
                      f"{' →' if m.x > hi else ''}") for m in outside]
    legend, last_row = _legend(legend_items, ml, width - mr)
    mt = int(last_row) + 17 if legend_items else 20
    ph = height - 34 - mb  # the plot keeps its height whatever the legend needs
    pw = width - ml - mr
    height = mt + ph + mb
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
    xticks = nice_ticks(lo, hi, 6)
    tfmt = tick_format or x_format
    for t in xticks:
        xx = px(t)
        anchor = "end" if xx > ml + pw - 30 else "start" if xx < ml + 30 else "middle"  # keep edge labels inside
        parts.append(f'<text x="{xx:.1f}" y="{mt + ph + 18}" text-anchor="{anchor}" class="tick">'
                     f"{esc(tfmt(t))}</text>")
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c == 0:
            continue
        fill = color if split_at is None else split_color((a + b) / 2, split_at)
        x0, x1 = px(float(a)), px(float(b))
        parts.append(f'<rect x="{x0 + 0.5:.1f}" y="{py(float(c)):.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
                     f'height="{ph - (py(float(c)) - mt):.1f}" fill="{fill}" fill-opacity="0.85">'
                     f"<title>{esc(x_format(float(a)))} … {esc(x_format(float(b)))}: {int(c):,}</title></rect>")
    for m in inside:
        xx = px(m.x)  # a white halo keeps the dashed line visible over a bar of any colour
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{mt + ph}" stroke="#fff" stroke-width="3.4" '
                     f'stroke-opacity="0.9"/><line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{mt + ph}" '
                     f'stroke="{esc(m.color)}" stroke-dasharray="4 3" stroke-width="1.6"><title>{esc(m.label)}</title>'
                     "</line>")
    for m in outside:  # an arrow on the edge the marker lies beyond
        ex, d = (ml, -1) if m.x < lo else (ml + pw, 1)
        parts.append(f'<polygon points="{ex + 7 * d},{mt + 8} {ex},{mt + 3} {ex},{mt + 13}" fill="{esc(m.color)}">'
                     f"<title>{esc(m.label)} {esc(x_format(m.x))}: off scale</title></polygon>")
    parts.append(legend)
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#d5d9de"/></svg>')
    return f'<figure class="chart">{caption}{"".join(parts)}</figure>'


# ------------------------------------------------------------------------------------------- tables


def html_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    numeric: Sequence[int] = (),
    caption: str = "",
    css_class: str = "",
    wrap: Sequence[int] = (),
) -> str:
    """A table whose cells are escaped here; a cell may carry a CSS class as (text, class).

    Cells do not wrap (numbers and times stay on one line) except in the ``wrap`` columns, meant for
    free text such as parameters and notes: that is what lets a wide table fit the page instead of
    cutting its last columns off.
    """
    num = set(numeric)
    wide = set(wrap)
    out = [f'<table class="{esc(css_class)}">' if css_class else "<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    if headers:
        out.append("<thead><tr>" + "".join(
            f'<th class="num">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>" for i, h in enumerate(headers)
        ) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text, cls = (c, "") if isinstance(c, str) else c
            classes = " ".join(x for x in ("num" if i in num else "", "wrap" if i in wide else "", cls) if x)
            cells.append(f'<td class="{esc(classes)}">{esc(text)}</td>' if classes else f"<td>{esc(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def metrics_table(metrics: Mapping[str, Any], benchmark: Mapping[str, Any] | None = None) -> str:
    """Strategy next to buy-and-hold: a return only means something against the market it came from."""
    keys = [k for k in METRIC_KEYS if k in metrics or (benchmark and k in benchmark)]
    keys += [k for k in metrics if k not in keys]
    headers = ["Metric", "Strategy"] + (["Buy & hold"] if benchmark else [])
    rows: list[list[Cell]] = []
    for k in keys:
        row: list[Cell] = [METRIC_LABELS.get(k, k)]
        row.append((format_metric(k, metrics.get(k)), tone(k, metrics.get(k))))
        if benchmark:
            row.append((format_metric(k, benchmark.get(k)), tone(k, benchmark.get(k))))
        rows.append(row)
    return html_table(headers, rows, numeric=(1, 2), css_class="metrics")


def trades_table(trades: Sequence[Mapping[str, Any]], limit: int = MAX_TRADE_ROWS) -> str:
    """Closed trades (result schema dicts): all of them up to ``limit``, so the printed report lists every
    trade. On screen the table scrolls inside its box; in print the box opens and the table is paged with
    its header repeated on every page."""
    if not trades:
        return '<p class="muted">No closed trades.</p>'
    shown = trades[:limit]
    held = (parse_times([str(t.get("exit_time")) for t in shown], lenient=True)
            - parse_times([str(t.get("entry_time")) for t in shown], lenient=True)) / _NS
    rows: list[list[Cell]] = []
    for n, (t, d) in enumerate(zip(shown, held, strict=True), start=1):
        qty, entry, pnl = _num(t.get("quantity")), _num(t.get("entry_price")), _num(t.get("pnl"))
        ret = pnl / abs(entry * qty) if pnl is not None and entry and qty else None
        duration = format_duration(float(d)) if math.isfinite(d) else "–"
        side = str(t.get("side", ""))
        rows.append([
            str(n), str(t.get("symbol", "")), (side, "long" if side == "LONG" else "short"),
            format_number(qty), short_time(t.get("entry_time")), format_number(entry), short_time(t.get("exit_time")),
            format_number(t.get("exit_price")), (format_money(pnl), _tone(pnl)),
            (format_pct(ret, sign=True), _tone(ret)), format_money(t.get("fees")), duration,
        ])
    table = html_table(
        ["#", "Symbol", "Side", "Qty", "Entry (UTC)", "Entry", "Exit (UTC)", "Exit", "P&L", "Return", "Fees",
         "Held"], rows, numeric=(0, 3, 5, 7, 8, 9, 10, 11), css_class="trades")
    if len(trades) <= limit:
        return f'<div class="table-wrap trades-wrap">{table}</div>'
    # The note goes above the scroll box: below the box nobody would see it.
    return (f'<p class="note">Showing the first {limit:,} of {len(trades):,} trades; '
            f'the JSON result holds all of them.</p><div class="table-wrap trades-wrap">{table}</div>')


def kill_switch_table(events: Sequence[Mapping[str, Any]]) -> str:
    rows: list[list[Cell]] = [
        [short_time(e.get("time")), (str(e.get("state", "")), f"state-{str(e.get('state', '')).lower()}"),
         str(e.get("trigger", "")), str(e.get("reason", ""))]
        for e in events
    ]
    return html_table(["Time (UTC)", "State", "Trigger", "Reason"], rows, css_class="killswitch")


# ---------------------------------------------------------------------- monthly returns, P&L distribution

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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


def monthly_returns_section(equity: Points | Mapping[str, Any]) -> str:
    """The monthly returns heatmap of an equity series (or of a result dict's ``equity``): red months lost."""
    if isinstance(equity, Mapping):
        equity, _ = series_from_pairs(equity.get("equity") or [], "equity")
    arr = np.asarray(equity, dtype=np.float64).reshape(-1, 2) if len(equity) else np.zeros((0, 2))
    years, grid, yearly = monthly_returns(arr[:, 0], arr[:, 1]) if len(arr) else ([], np.zeros((0, 12)), [])
    if not years:
        return section("Monthly returns", '<p class="muted">Not enough equity points.</p>')
    full = np.column_stack([grid, np.asarray(yearly)])
    months = grid[np.isfinite(grid)]
    heat = svg_heatmap(full, [*MONTHS, "Year"], [str(y) for y in years], title="Monthly returns (UTC calendar)",
                       value_format=lambda v: f"{v * 100:+.1f}%", cell=56, metric="return",
                       scale_range=(float(months.min()), float(months.max())) if months.size else None)
    return section("Monthly returns", heat + '<p class="note">Each month from the previous month-end equity; '
                   "the last column is the calendar year. " + esc(scale_note("return", "0 %")) + "</p>")


def trade_pnl_section(result: Mapping[str, Any]) -> str:
    """Return per trade as a histogram (losses red, wins green) and the win / loss statistics."""
    trades = [t for t in result.get("trades") or [] if isinstance(t, Mapping)]
    rets = []
    pnls = []
    for t in trades:
        pnl, qty, entry = _num(t.get("pnl")), _num(t.get("quantity")), _num(t.get("entry_price"))
        if pnl is None or math.isinf(pnl):
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
    payoff = float(wins.mean() / -losses.mean()) if wins.size and losses.size else None
    rows: list[list[Cell]] = [
        ["Trades", f"{p.size:,}"],
        ["Winners / losers", f"{wins.size:,} / {losses.size:,}"],
        ["Average win", (format_money(float(wins.mean())) if wins.size else "–", "pos" if wins.size else "")],
        ["Average loss", (format_money(float(losses.mean())) if losses.size else "–", "neg" if losses.size else "")],
        ["Payoff ratio (avg win / avg loss)", (f"{payoff:.2f}" if payoff is not None else "–", tone("payoff_ratio",
                                                                                                  payoff))],
        ["Expectancy per trade", (format_money(float(p.mean())), tone("expectancy", float(p.mean())))],
        ["Largest win / loss", f"{format_money(float(p.max()))} / {format_money(float(p.min()))}"],
    ]
    if r.size:
        rows.append(["Return per trade p5 / p50 / p95",
                     " / ".join(format_pct(float(np.percentile(r, q)), sign=True) for q in (5, 50, 95))])
    return section("Trade P&L distribution", chart + html_table(["", ""], rows, numeric=(1,), css_class="metrics"))


# --------------------------------------------------------------------------------------------- page

_CSS = """
:root{--fg:#1f2933;--muted:#6b7785;--line:#e3e6ea;--bg:#f6f7f9;--card:#fff;--pos:$POS;--neg:$NEG;
--accent:#2c5d8f}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:28px 24px 48px}
header h1{font-size:22px;font-weight:600;margin:0 0 4px}
header .sub{color:var(--muted);font-size:13px}
header .kicker{text-transform:uppercase;letter-spacing:.08em;font-size:11px;color:var(--accent);font-weight:600}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:18px 20px;margin-top:18px}
section h2{font-size:15px;font-weight:600;margin:0 0 12px}
.warnings{background:#fff8e6;border:1px solid #f0d38a;border-radius:8px;padding:12px 16px;margin-top:18px}
.warnings strong{color:#8a5a00}.warnings ul{margin:6px 0 0;padding-left:20px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-top:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .label{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.card .value{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums;margin-top:2px}
.card .bench{font-size:12px;color:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{font-weight:600;color:var(--muted);font-size:12px;background:#fafbfc;position:sticky;top:0}
td.num,th.num{text-align:right}
td.wrap{white-space:pre-line;overflow-wrap:break-word}
tbody tr:hover{background:#f4f7fb}
table.metrics{max-width:560px}
.table-wrap{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:6px}
.table-wrap table td,.table-wrap table th{border-bottom:1px solid #eef0f2}
.pos{color:var(--pos)}.neg{color:var(--neg)}.muted{color:var(--muted);fill:var(--muted)}
td.long,td.short{font-weight:600}td.long{color:#2c5d8f}td.short{color:#8a5a00}
td.state-soft{color:#a87400;font-weight:600}td.state-hard{color:#b23e37;font-weight:600}
td.state-freeze{color:#6c3fa0;font-weight:600}
.note{color:var(--muted);font-size:12px;margin:8px 0}
figure.chart{margin:0;position:relative}
figure.chart figcaption{font-weight:600;font-size:13px;margin-bottom:2px}
figure.chart svg{width:100%;height:auto;display:block;font-family:inherit}
svg .tick{fill:#6b7785;font-size:11px}svg .legend{fill:#1f2933;font-size:12px}
svg .axis-title{fill:#1f2933;font-size:12px}svg .cell{fill:#1f2933;font-size:11px}
figure.heatmap svg{width:auto;max-width:100%}
.tip{position:absolute;display:none;pointer-events:none;background:rgba(255,255,255,.96);border:1px solid #cfd5dc;
border-radius:6px;padding:6px 9px;font-size:12px;box-shadow:0 2px 8px rgba(0,0,0,.08);white-space:nowrap}
.tip i{display:inline-block;width:10px;height:3px;margin-right:6px;vertical-align:middle}
pre{background:#f7f8fa;border:1px solid var(--line);border-radius:6px;padding:12px;overflow:auto;font-size:12px;
max-height:480px;margin:0}
footer{color:var(--muted);font-size:12px;margin-top:24px;text-align:center}
@page{margin:12mm 10mm 13mm}
@media print{
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
html,body{background:#fff}
body{font-size:10.5px}
main{max-width:none;padding:0;margin:0}
header h1{font-size:17px}
section{border:0;border-radius:0;padding:0;margin-top:16px;background:none}
section h2{font-size:13px;margin:0 0 6px;padding-bottom:3px;border-bottom:1px solid var(--line)}
h1,h2,figcaption,.kicker{break-after:avoid;page-break-after:avoid}
figure+.note{break-before:avoid;page-break-before:avoid}
.cards{grid-template-columns:repeat(3,1fr);gap:6px;margin-top:10px}
.card{padding:5px 8px}.card .value{font-size:15px}.card .label{font-size:9px}
.card,figure.chart,.warnings,table.metrics,.note{break-inside:avoid;page-break-inside:avoid}
.table-wrap,pre{max-height:none;overflow:visible;border:0;border-radius:0}
table{font-size:8.5px;width:100%}
th,td{padding:2px 4px}
th{position:static;background:none;color:var(--fg);font-size:8px;border-bottom:1px solid #9aa3ad}
thead{display:table-header-group}
tr{break-inside:avoid;page-break-inside:avoid}
tbody tr:hover{background:none}
table.metrics{max-width:none;width:auto;min-width:50%}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:8px;background:none;padding:0}
.tip,.hover-line{display:none!important}
svg .legend,svg .axis-title{font-size:11px}
footer{margin-top:12px;font-size:9px}
}
""".replace("$POS", POS_COLOR).replace("$NEG", NEG_COLOR)

# Hover read-out: optional sugar, the page is complete without it.
_JS = """
document.querySelectorAll('figure.chart[data-hover]').forEach(function(fig){
 var d=JSON.parse(fig.getAttribute('data-hover')),svg=fig.querySelector('svg'),tip=fig.querySelector('.tip'),
 line=svg.querySelector('.hover-line');
 svg.addEventListener('mousemove',function(ev){
  var r=svg.getBoundingClientRect(),vb=svg.viewBox.baseVal,x=(ev.clientX-r.left)*vb.width/r.width;
  if(x<d.left||x>d.left+d.width){tip.style.display='none';line.setAttribute('visibility','hidden');return;}
  var i=0,best=1e9;for(var k=0;k<d.px.length;k++){var e=Math.abs(d.px[k]-x);if(e<best){best=e;i=k;}}
  line.setAttribute('x1',d.px[i]);line.setAttribute('x2',d.px[i]);line.setAttribute('visibility','visible');
  tip.textContent='';var h=document.createElement('div');h.textContent=d.x[i];h.style.fontWeight='600';
  tip.appendChild(h);
  d.s.forEach(function(s){var row=document.createElement('div'),sw=document.createElement('i');
   sw.style.background=s.c;row.appendChild(sw);row.appendChild(document.createTextNode(s.n+': '+s.v[i]));
   tip.appendChild(row);});
  tip.style.display='block';var fx=(ev.clientX-fig.getBoundingClientRect().left);
  tip.style.left=(fx+14+tip.offsetWidth>fig.clientWidth?fx-tip.offsetWidth-14:fx+14)+'px';
  tip.style.top=(ev.clientY-fig.getBoundingClientRect().top+10)+'px';});
 svg.addEventListener('mouseleave',function(){tip.style.display='none';line.setAttribute('visibility','hidden');});
});
"""


def page(title: str, body: str) -> str:
    """The document shell every MMATS report shares: inline CSS, no external resource, hover script."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}<footer>Generated by MMATS · self-contained report, works offline</footer></main>"
        f"<script>{_JS}</script></body></html>\n"
    )


def section(title: str, content: str) -> str:
    """A titled card; ``content`` is trusted HTML built by the helpers here, ``title`` is escaped."""
    return f"<section><h2>{esc(title)}</h2>{content}</section>"


def _kpi_cards(metrics: Mapping[str, Any], benchmark: Mapping[str, Any] | None) -> str:
    cards = []
    for key in ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate", "num_trades"):
        v = metrics.get(key)
        cls_tone = tone(key, v)
        bench = ""
        if benchmark and key != "num_trades" and key != "win_rate":
            bench = f'<div class="bench">buy &amp; hold {esc(format_metric(key, benchmark.get(key)))}</div>'
        cls = f"value {cls_tone}" if cls_tone else "value"
        cards.append(f'<div class="card"><div class="label">{esc(METRIC_LABELS[key])}</div>'
                     f'<div class="{cls}">{esc(format_metric(key, v))}</div>{bench}</div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _describe(result: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    cfg = _mapping(result.get("config"))
    resolved = _mapping(cfg.get("resolved"))
    strategy = cfg.get("strategy") or "strategy"
    if isinstance(strategy, Mapping):
        strategy = strategy.get("name") or json.dumps(strategy, default=str)
    trades = [t for t in result.get("trades") or [] if isinstance(t, Mapping)]
    symbol = cfg.get("symbol") or resolved.get("symbol") or (trades[0].get("symbol") if trades else "") or ""
    facts = []
    if resolved.get("kind") == "portfolio":  # a system config's portfolio backtest: every strategy and symbol
        strategy = "portfolio: " + ", ".join(str(s) for s in resolved.get("strategies") or [])
        symbols = list(_mapping(resolved.get("symbols")))
        symbol = ", ".join(symbols[:6]) + (f" (+{len(symbols) - 6})" if len(symbols) > 6 else "")
        markets = {str(_mapping(v).get("market")) for v in _mapping(resolved.get("symbols")).values()}
        facts.append(" + ".join(sorted(markets)))
    for value in (resolved.get("market") or cfg.get("market"), resolved.get("timeframe") or cfg.get("timeframe")):
        if value:
            facts.append(str(value))
    equity = result.get("equity") or []
    summary = _mapping(result.get("summary"))
    first = summary.get("first_bar") or (equity[0][0] if equity else None)
    last = summary.get("last_bar") or (equity[-1][0] if equity else None)
    if first and last:
        facts.append(f"{short_time(first)} → {short_time(last)} UTC")
    bars = summary.get("bars") or len(equity)
    if bars:
        facts.append(f"{int(bars):,} bars")
    return str(strategy), str(symbol), facts


def _summary_table(summary: Mapping[str, Any], risk: Mapping[str, Any] | None) -> str:
    labels = (("initial_cash", "Initial cash"), ("final_equity", "Final equity"), ("cash", "Cash"),
              ("realized_pnl", "Realized P&L"), ("unrealized_pnl", "Unrealized P&L"), ("fees", "Fees paid"),
              ("orders", "Orders"), ("fills", "Fills"))
    rows: list[list[Cell]] = []
    for k, label in labels:
        if k in summary:
            text = str(summary[k]) if k in ("orders", "fills") else format_money(summary[k])
            rows.append([label, (text, _tone(summary[k]) if "pnl" in k else "")])
    if risk:
        rows.append(["Risk decisions", str(risk.get("decisions", "–"))])
        rej = risk.get("rejected")
        rows.append(["Rejected signals", str(len(rej) if isinstance(rej, list) else rej or 0)])
    if "reconciled" in summary:
        ok = bool(summary["reconciled"])
        rows.append(["Equity reconciles with ledger", ("yes" if ok else "NO", "" if ok else "neg")])
    return html_table([], rows, numeric=(1,), css_class="metrics")


def attribution_tables(attribution: Mapping[str, Any]) -> str:
    """A portfolio backtest's P&L per strategy, per market and per symbol: realized, fees, trades, win rate."""
    out = []
    for key, label in (("by_strategy", "Strategy"), ("by_market", "Market"), ("by_symbol", "Symbol")):
        rows: list[list[Cell]] = []
        for name, r in _mapping(attribution.get(key)).items():
            r = _mapping(r)
            rows.append([str(name), (format_money(r.get("realized_pnl")), _tone(r.get("realized_pnl"))),
                         format_money(r.get("fees")), (format_money(r.get("net_pnl")), _tone(r.get("net_pnl"))),
                         str(r.get("trades", "–")), format_pct(r.get("win_rate"), 1)])
        if rows:
            out.append(html_table([label, "Realized P&L", "Fees", "Net", "Trades", "Win rate"], rows,
                                  numeric=(1, 2, 3, 4, 5), css_class="metrics"))
    out.append('<p class="note">Realized P&L and fees add up to the account\'s; a strategy\'s trades are the '
               "fills that closed part of its own position, a market's and a symbol's the account's round trips.</p>")
    return "".join(out)


def render_html(result: Mapping[str, Any]) -> str:
    """The whole report page for one backtest result dict (the JSON result schema)."""
    strategy, symbol, facts = _describe(result)
    metrics = result.get("metrics") or {}
    benchmark = result.get("benchmark") or None
    title = f"{strategy} · {symbol}" if symbol else strategy
    body = [f'<header><div class="kicker">MMATS backtest report</div><h1>{esc(title)}</h1>'
            f'<div class="sub">{esc(" · ".join(facts))}</div></header>']

    warnings = [str(w) for w in result.get("warnings") or []]
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        body.append(f'<div class="warnings" role="alert"><strong>Warnings</strong><ul>{items}</ul></div>')
    if metrics:
        body.append(_kpi_cards(metrics, benchmark))

    equity, eq_times = series_from_pairs(result.get("equity") or [], "equity")
    bench_eq, _ = series_from_pairs(result.get("benchmark_equity") or [], "benchmark_equity", (eq_times, equity))
    events = [e for e in result.get("kill_switch") or [] if isinstance(e, Mapping)]
    markers = []
    if events:
        times = parse_times([str(e.get("time", "")) for e in events], lenient=True)
        for e, t in zip(events, times, strict=True):
            state = str(e.get("state", ""))
            markers.append(VLine(float(t), f"kill switch → {state} at {e.get('time')}: {e.get('reason', '')}",
                                 STATE_COLORS.get(state.upper(), "#4f8a5b")))
    eq_series: list[tuple[str, Points]] = [("Strategy", equity)]
    dd_series: list[tuple[str, Points]] = [("Strategy", _dd_points(equity))]
    if len(bench_eq):
        eq_series.append(("Buy & hold", bench_eq))
        dd_series.append(("Buy & hold", _dd_points(bench_eq)))
    charts = svg_line_chart(eq_series, title="Equity", markers=markers, colors=(STRATEGY_COLOR, BENCHMARK_COLOR))
    if markers:
        charts += '<p class="note">Dashed lines mark kill-switch transitions (hover the square for details).</p>'
    charts += svg_drawdown_chart(dd_series)
    body.append(section("Equity and drawdown", charts))
    if len(equity) or result.get("trades"):
        body.append(monthly_returns_section(equity))
        body.append(trade_pnl_section(result))

    if metrics:
        body.append(section("Performance", metrics_table(metrics, benchmark)))
    summary = result.get("summary")
    if isinstance(summary, Mapping) and summary:
        body.append(section("Account", _summary_table(summary, _mapping(result.get("risk")))))
    if events:
        body.append(section("Kill switch", kill_switch_table(events)))
    attribution = _mapping(result.get("attribution"))
    if any(isinstance(v, Mapping) and "trades" in v for v in _mapping(attribution.get("by_strategy")).values()):
        body.append(section("Attribution", attribution_tables(attribution)))
    trades = [t for t in result.get("trades") or [] if isinstance(t, Mapping)]
    body.append(section(f"Trades ({len(trades):,})", trades_table(trades)))
    config = result.get("config")
    if config:
        text = json.dumps(config, indent=2, default=str, ensure_ascii=False)
        body.append(section("Configuration", f"<pre>{esc(text)}</pre>"))
    return page(f"{title} — MMATS backtest", "".join(body))


def _dd_points(series: np.ndarray) -> np.ndarray:
    if len(series) == 0:
        return series
    ok = np.isfinite(series[:, 1])
    s = series[ok]
    return np.column_stack([s[:, 0], drawdown_series(s[:, 1])])


def write_report(result: Mapping[str, Any], path: str | Path) -> Path:
    """Render and write the report, creating parent directories; returns the path written."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(result), encoding="utf-8")
    return p
