"""The one colour rule of every MMATS report: colour says what is good for the metric, never a rank.

A chart that paints the best of a bad lot green lies: a sweep whose Sharpe ratios run from -1.2 to -4.1
has no green cell. So each metric has a scale that knows its neutral value and its direction:

- ``diverging``: red below the neutral value, white at it, green above; the neutral value is 0 for
  returns, Sharpe and P&L, 1 for profit factor (compared on a log scale: 0.5 is as bad as 2 is good);
- ``loss``: drawdowns, which are never good: white at 0, deeper red the deeper they go, no green;
- ``neutral``: no good or bad direction on its own (trade count, holding time, win rate without the
  payoff): one blue hue from low to high, neither red nor green.

Table cells use ``tone`` (a CSS class ``pos`` / ``neg`` / ``""``), heatmap cells ``heat_color``,
histogram bars ``split_color``; they all read the same ``metric_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

POS_COLOR = "#2e7d5b"
NEG_COLOR = "#b23e37"
NEUTRAL_COLOR = "#2c5d8f"
MISSING_COLOR = "#eceef1"
TEXT_DARK = "#1f2933"
TEXT_LIGHT = "#ffffff"

_WHITE = (255, 255, 255)
_POS_RGB = (46, 125, 91)
_NEG_RGB = (178, 62, 55)
_NEUTRAL_RGB = (44, 93, 143)

MIN_SHADE = 0.14
"""The lightest shade of a non-neutral heatmap cell, so a value just off the neutral one keeps its colour."""

ScaleKind = Literal["diverging", "loss", "neutral"]


@dataclass(frozen=True, slots=True)
class MetricScale:
    """How one metric's values become colours: ``kind``, its neutral ``center``, and ``log`` comparison."""

    kind: ScaleKind
    center: float = 0.0
    log: bool = False


SIGNED = MetricScale("diverging", 0.0)
"""Returns, Sharpe, P&L: above 0 good, below 0 bad."""
RATIO = MetricScale("diverging", 1.0, log=True)
"""Profit factor, payoff ratio: above 1 good, below 1 bad."""
LOSS = MetricScale("loss")
NEUTRAL = MetricScale("neutral")

METRIC_SCALES: dict[str, MetricScale] = {
    "total_return": SIGNED, "cagr": SIGNED, "sharpe": SIGNED, "sortino": SIGNED, "calmar": SIGNED,
    "best_trade": SIGNED, "worst_trade": SIGNED, "return": SIGNED, "pnl": SIGNED, "expectancy": SIGNED,
    "profit_factor": RATIO, "payoff_ratio": RATIO,
    "max_drawdown": LOSS, "avg_drawdown": LOSS,
    "win_rate": NEUTRAL, "num_trades": NEUTRAL, "avg_trade_duration_s": NEUTRAL,
    # walk-forward efficiency (mean OOS / mean IS): around 0.5 or more reads as "not just fitted"
    "efficiency": MetricScale("diverging", 0.5),
}


def metric_scale(metric: str | MetricScale | None) -> MetricScale:
    """The scale of a metric key (a leading sort sign such as ``-max_drawdown`` is ignored).

    ``None`` means a signed quantity (diverging at 0); an unknown key gets the neutral scale, which can
    never call anything good or bad by mistake.
    """
    if isinstance(metric, MetricScale):
        return metric
    if metric is None:
        return SIGNED
    return METRIC_SCALES.get(metric.lstrip("+-"), NEUTRAL)


def _finite(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def sign_tone(value: object, center: float = 0.0) -> str:
    """``"pos"`` above ``center``, ``"neg"`` below, ``""`` at it or when missing (P&L, equity vs start)."""
    f = _finite(value)
    if f is None or f == center:
        return ""
    return "pos" if f > center else "neg"


def tone(metric: str | MetricScale | None, value: object) -> str:
    """The CSS class of a table cell or KPI card showing ``value`` of ``metric``."""
    scale = metric_scale(metric)
    if scale.kind == "diverging":
        return sign_tone(value, scale.center)
    if scale.kind == "loss":
        f = _finite(value)
        return "neg" if f is not None and f < 0 else ""
    return ""


def _mix(end: tuple[int, int, int], t: float) -> str:
    a = max(0.0, min(1.0, t))
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def _position(scale: MetricScale, v: float) -> float:
    if not scale.log:
        return v - scale.center
    if v <= 0:
        return -math.inf
    return math.log(v) - math.log(scale.center) if scale.center > 0 else math.log(v)


def heat_intensity(metric: str | MetricScale | None, value: float, lo: float, hi: float) -> float:
    """Signed position of ``value`` on the metric's scale in [-1, 1] (-1 worst, +1 best, 0 neutral).

    ``lo`` / ``hi`` are the range shown (e.g. the min and max of a heatmap); a diverging scale spans the
    larger distance from the neutral value on either side, so the colours of two cells compare across
    the neutral line, and a grid of only negative values stays red from end to end. Neutral scales
    return 0..1 from ``lo`` to ``hi``.
    """
    scale = metric_scale(metric)
    if scale.kind == "loss":
        depth = max(abs(min(lo, 0.0)), abs(min(hi, 0.0)), 1e-300)
        return -min(1.0, abs(min(value, 0.0)) / depth)
    if scale.kind == "neutral":
        return 0.5 if hi <= lo else max(0.0, min(1.0, (value - lo) / (hi - lo)))
    ends = [p for p in (_position(scale, lo), _position(scale, hi)) if math.isfinite(p)]
    span = max([abs(p) for p in ends] + [1e-300])
    pos = _position(scale, value)
    if pos == -math.inf:
        return -1.0
    return max(-1.0, min(1.0, pos / span))


def heat_color(metric: str | MetricScale | None, value: float, lo: float, hi: float) -> str:
    """The fill of a heatmap cell: see the module doc for the three scales; grey when missing."""
    if not math.isfinite(value) and not (value == math.inf and metric_scale(metric).kind == "diverging"):
        return MISSING_COLOR
    t = heat_intensity(metric, value, lo, hi)
    if metric_scale(metric).kind == "neutral":
        return _mix(_NEUTRAL_RGB, 0.12 + 0.7 * t)
    if t == 0:
        return "#ffffff"
    # the sign always shows: the faintest shade is still visibly red or green, not white
    return _mix(_POS_RGB if t > 0 else _NEG_RGB, MIN_SHADE + (1 - MIN_SHADE) * abs(t))


def text_color_on(fill: str) -> str:
    """Dark or white text, whichever reads on ``fill`` (a ``#rrggbb`` colour)."""
    try:
        r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    except (ValueError, IndexError):
        return TEXT_DARK

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    return TEXT_LIGHT if lum < 0.22 else TEXT_DARK


def split_color(value: float, center: float = 0.0) -> str:
    """A histogram bar's colour: red below ``center`` (a loss, below the start equity), green above."""
    return NEG_COLOR if value < center else POS_COLOR


def scale_note(metric: str | MetricScale | None, center_label: str | None = None) -> str:
    """One line for a chart's caption saying how to read its colours."""
    scale = metric_scale(metric)
    if scale.kind == "loss":
        return "Colour: white at 0, deeper red for deeper drawdowns."
    if scale.kind == "neutral":
        return "Colour: light to dark blue from the lowest to the highest value (not good or bad by itself)."
    c = center_label if center_label is not None else f"{scale.center:g}"
    return f"Colour: red below {c}, white at {c}, green above; the darkest shade is the farthest from {c}."
