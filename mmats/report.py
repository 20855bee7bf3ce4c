"""Self-contained HTML report of a backtest result (the JSON schema of docs/result-schema.md).

Why no charting library: a report is an artifact people archive, mail and open years later on a
machine without network. So the page is one file with inline CSS and inline SVG drawn here in Python;
the only script is a few lines for hover read-outs, and the page reads fine without it.

Long series are reduced per chart with min/max bucketing (``downsample_minmax``): a 1M-bar equity curve
becomes ~2,000 points, and a one-bar spike or crash stays visible because each bucket keeps both its
extremes. Every string that comes from the user (strategy name, symbol, config, reasons) is escaped.

The chart and table helpers are public so the research reports (sweeps, walk-forward, heatmaps) build
their pages from the same pieces: ``page`` (shell, CSS, hover script), ``svg_line_chart``,
``svg_drawdown_chart``, ``svg_heatmap``, ``html_table``.
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
from mmats.metrics import METRIC_KEYS, drawdown_series

Points = Sequence[tuple[float, float]] | np.ndarray
"""A series' points: (x, y) pairs or an (n, 2) array; x is epoch nanoseconds or any number."""
Cell = str | tuple[str, str]
"""A table cell: text, or (text, css class) e.g. ("+12.0", "pos")."""

STRATEGY_COLOR = "#2c5d8f"
BENCHMARK_COLOR = "#9aa3ad"
PALETTE = (STRATEGY_COLOR, BENCHMARK_COLOR, "#c77c2e", "#4f8a5b", "#8e5ea2", "#b5483f", "#3f8f9a")
STATE_COLORS = {"SOFT": "#d39b22", "HARD": "#c0392b", "FREEZE": "#6c3fa0"}
MAX_TRADE_ROWS = 500
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
    f = _num(v)
    if f is None or f == 0:
        return ""
    return "pos" if f > 0 else "neg"


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
) -> str:
    """Lines (the first optionally filled down to 0) with axes, legend, markers and a hover read-out.

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
    if y0 < 0 < y1:
        zy = float(py(0.0))
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


def _heat_color(v: float, lo: float, hi: float) -> str:
    """Diverging muted red-white-green around 0 (or around the midpoint when all share one sign)."""
    if not math.isfinite(v):
        return "#eceef1"
    mid = 0.0 if lo < 0 < hi else (lo + hi) / 2
    span = max(hi - mid, mid - lo, 1e-300)
    t = max(-1.0, min(1.0, (v - mid) / span))
    end = (46, 125, 91) if t >= 0 else (178, 62, 55)
    a = abs(t)
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


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
) -> str:
    """A grid of values (rows = y_labels, columns = x_labels), e.g. Sharpe over two swept parameters."""
    z = np.asarray(values, dtype=np.float64)
    if z.ndim != 2 or z.shape != (len(y_labels), len(x_labels)):
        raise ValidationError(f"heatmap: values shape {z.shape} != ({len(y_labels)}, {len(x_labels)}) labels")
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    ml, mt = 90, 30 if title else 10
    width, height = ml + cell * z.shape[1] + 10, mt + cell * z.shape[0] + 46
    show_text = z.size <= 400
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" font-size="11" '
             f'style="max-width:{width}px">']
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            v = float(z[r, c])
            x, y = ml + c * cell, mt + r * cell
            text = value_format(v) if math.isfinite(v) else "–"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{_heat_color(v, lo, hi)}"><title>{esc(y_labels[r])} / {esc(x_labels[c])}: '
                         f'{esc(text)}</title></rect>')
            if show_text:
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                             f'class="cell">{esc(text)}</text>')
    for r, lab in enumerate(y_labels):
        parts.append(f'<text x="{ml - 6}" y="{mt + r * cell + cell / 2 + 4:.1f}" text-anchor="end" '
                     f'class="tick">{esc(lab)}</text>')
    for c, lab in enumerate(x_labels):
        parts.append(f'<text x="{ml + c * cell + cell / 2:.1f}" y="{mt + z.shape[0] * cell + 16}" '
                     f'text-anchor="middle" class="tick">{esc(lab)}</text>')
    if x_title:
        parts.append(f'<text x="{ml + cell * z.shape[1] / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                     f'class="axis-title">{esc(x_title)}</text>')
    if y_title:
        parts.append(f'<text x="12" y="{mt + cell * z.shape[0] / 2:.1f}" text-anchor="middle" class="axis-title" '
                     f'transform="rotate(-90 12 {mt + cell * z.shape[0] / 2:.1f})">{esc(y_title)}</text>')
    parts.append("</svg>")
    caption = f"<figcaption>{esc(title)}</figcaption>" if title else ""
    return f'<figure class="chart heatmap">{caption}{"".join(parts)}</figure>'


# ------------------------------------------------------------------------------------------- tables


def html_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    numeric: Sequence[int] = (),
    caption: str = "",
    css_class: str = "",
) -> str:
    """A table whose cells are escaped here; a cell may carry a CSS class as (text, class)."""
    num = set(numeric)
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
            classes = " ".join(x for x in ("num" if i in num else "", cls) if x)
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
        signed = k in ("total_return", "cagr", "sharpe", "sortino", "best_trade", "worst_trade")
        row.append((format_metric(k, metrics.get(k)), _tone(metrics.get(k)) if signed else ""))
        if benchmark:
            row.append((format_metric(k, benchmark.get(k)), _tone(benchmark.get(k)) if signed else ""))
        rows.append(row)
    return html_table(headers, rows, numeric=(1, 2), css_class="metrics")


def trades_table(trades: Sequence[Mapping[str, Any]], limit: int = MAX_TRADE_ROWS) -> str:
    """Closed trades (result schema dicts), capped so a 100k-trade run still opens instantly."""
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
        return f'<div class="table-wrap">{table}</div>'
    # The note goes above the scroll box: below 500 rows nobody would see it.
    return (f'<p class="note">Showing the first {limit:,} of {len(trades):,} trades; '
            f'the JSON result holds all of them.</p><div class="table-wrap">{table}</div>')


def kill_switch_table(events: Sequence[Mapping[str, Any]]) -> str:
    rows: list[list[Cell]] = [
        [short_time(e.get("time")), (str(e.get("state", "")), f"state-{str(e.get('state', '')).lower()}"),
         str(e.get("trigger", "")), str(e.get("reason", ""))]
        for e in events
    ]
    return html_table(["Time (UTC)", "State", "Trigger", "Reason"], rows, css_class="killswitch")


# --------------------------------------------------------------------------------------------- page

_CSS = """
:root{--fg:#1f2933;--muted:#6b7785;--line:#e3e6ea;--bg:#f6f7f9;--card:#fff;--pos:#2e7d5b;--neg:#b23e37;
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
tbody tr:hover{background:#f4f7fb}
table.metrics{max-width:560px}
.table-wrap{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:6px}
.table-wrap table td,.table-wrap table th{border-bottom:1px solid #eef0f2}
.pos{color:var(--pos)}.neg{color:var(--neg)}.muted{color:var(--muted);fill:var(--muted)}
td.long{color:var(--pos);font-weight:600}td.short{color:var(--neg);font-weight:600}
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
"""

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
        tone = _tone(v) if key in ("total_return", "cagr", "sharpe") else ("neg" if key == "max_drawdown" else "")
        bench = ""
        if benchmark and key != "num_trades" and key != "win_rate":
            bench = f'<div class="bench">buy &amp; hold {esc(format_metric(key, benchmark.get(key)))}</div>'
        cls = f"value {tone}" if tone else "value"
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

    if metrics:
        body.append(section("Performance", metrics_table(metrics, benchmark)))
    summary = result.get("summary")
    if isinstance(summary, Mapping) and summary:
        body.append(section("Account", _summary_table(summary, _mapping(result.get("risk")))))
    if events:
        body.append(section("Kill switch", kill_switch_table(events)))
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
