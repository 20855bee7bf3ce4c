"""Performance metrics of a backtest: the project's official definitions.

Every consumer (the JSON result, the HTML report, sweeps, walk-forward) calls ``compute_metrics`` so a
number means the same thing everywhere. Everything is vectorized with numpy: sweeps call this thousands
of times and a 1M-bar equity curve must cost milliseconds, not seconds.

Definitions (returns and drawdowns are fractions: 0.05 = 5 %; ``r`` are the simple per-bar returns
``equity[i] / equity[i-1] - 1``):

- ``total_return`` = ``equity[-1] / equity[0] - 1``.
- ``cagr`` = ``(equity[-1] / equity[0]) ** (1 / years) - 1`` with ``years`` = (last - first timestamp)
  in seconds / (365.25 * 86400); 0 when the span is 0; -1 when equity ends at or below 0 (ruin); +inf
  when the power overflows (a huge return over a tiny span: meaningless, and shown as such).
- ``sharpe`` = ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)``, risk-free rate 0; 0.0 with fewer
  than 2 returns or a standard deviation of (numerically) 0.
- ``sortino`` = ``mean(r) / downside_dev * sqrt(periods_per_year)`` with
  ``downside_dev = sqrt(mean(min(r, 0) ** 2))`` over ALL returns (target downside deviation with target
  0, as empyrical computes it); 0.0 when there is no downside (never +inf: a ratio over an empty
  denominator says nothing about risk).
- ``max_drawdown`` = ``min(equity / cummax(equity) - 1)``: in [-1, 0] for positive equity.
- ``avg_drawdown`` = mean over drawdown *episodes* (a maximal contiguous run of bars below the running
  peak by more than 1e-12, so float noise on a flat curve does not count) of each episode's deepest
  point; 0 when there is none. An episode still open at the end counts.
- ``win_rate`` = trades with ``pnl > 0`` / ``num_trades`` (0 without trades); ``pnl`` is net of fees.
- ``profit_factor`` = sum of winning pnl / |sum of losing pnl|; ``inf`` when there are wins and no
  losses, 0.0 when there are no wins (including no trades). ``json_safe`` turns ``inf`` into ``None``.
- ``num_trades`` = number of closed round trips.
- ``avg_trade_duration_s`` = mean of ``exit - entry`` in seconds (0 without trades).
- ``best_trade`` / ``worst_trade`` = max / min of each trade's return ``pnl / (entry_price * quantity)``
  (0 without trades; a trade with zero notional counts as a 0 return).

Once equity reaches 0 or below the account is ruined: returns after that bar are undefined (a ratio of
non-positive numbers), so the return-based ratios use the bars up to and including the ruin only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmats.errors import ValidationError
from mmats.model import MarketType

METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "avg_drawdown",
    "win_rate",
    "profit_factor",
    "num_trades",
    "avg_trade_duration_s",
    "best_trade",
    "worst_trade",
)

SECONDS_PER_YEAR = 365.25 * 86400.0
_DAY = 86400
_WEEK = 7 * _DAY
# Below this a standard deviation or drawdown is float noise, not risk: per-bar returns of a real
# instrument vary by 1e-6 or more, while ratios of equal floats jitter by ~1e-16.
_NOISE = 1e-12


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One closed round trip as the engine reports it; ``pnl`` is net of ``fees``."""

    symbol: str
    side: str
    quantity: float
    entry_ns: int
    entry_price: float
    exit_ns: int
    exit_price: float
    pnl: float
    fees: float
    reason: str = ""  # why the position closed when not by an order: "liquidation", "margin_closeout"

    @property
    def return_fraction(self) -> float:
        notional = abs(self.entry_price * self.quantity)
        return self.pnl / notional if notional > 0 else 0.0

    @property
    def duration_s(self) -> float:
        return (self.exit_ns - self.entry_ns) / 1e9


def periods_per_year(timeframe_seconds: int, market: MarketType | str) -> float:
    """How many bars of this size a year holds, to annualize per-bar Sharpe and Sortino.

    Bars only exist while the market trades, so the count follows each market's calendar:

    - crypto trades 24/7: ``365 * 86400 / tf`` (1d -> 365, 1h -> 8760);
    - forex trades ~24 h on ~260 weekdays: ``260 * 86400 / tf`` (1d -> 260, 1h -> 6240);
    - US stocks trade 252 sessions of 6.5 h: daily -> 252, intraday ``252 * 6.5 h / tf`` (1h -> 1638),
      never below 252 (a bar longer than the session is still one bar per session).

    Bars of several days count trading days (a 2d stock bar -> 126); from a week up they count
    calendar time (weekly -> 52.18, for every market) since weekly and monthly bars span weekends.
    """
    tf = int(timeframe_seconds)
    if tf <= 0:
        raise ValidationError(f"periods_per_year: timeframe_seconds must be > 0, got {timeframe_seconds}")
    try:
        m = MarketType(market)
    except ValueError:
        raise ValidationError(f"periods_per_year: unknown market {market!r}") from None
    if tf >= _WEEK:
        return SECONDS_PER_YEAR / tf
    if m is MarketType.CRYPTO:
        return 365.0 * _DAY / tf
    if m is MarketType.FOREX:
        return 260.0 * _DAY / tf
    if tf >= _DAY:
        return 252.0 * _DAY / tf
    return max(252.0, 252.0 * 6.5 * 3600 / tf)


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at every bar (<= 0), the curve the report draws under equity."""
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size == 0:
        return eq.copy()
    peak = np.maximum.accumulate(eq)
    out = np.zeros_like(eq)
    np.divide(eq, peak, out=out, where=peak > 0)
    out -= 1.0
    # Before the first positive peak there is nothing to draw down from.
    out[peak <= 0] = 0.0
    return out


def _avg_drawdown(dd: np.ndarray) -> float:
    below = dd < -_NOISE
    if not below.any():
        return 0.0
    starts = np.flatnonzero(below & ~np.concatenate(([False], below[:-1])))
    # Each segment [start_k, start_{k+1}) holds one episode followed by bars at the peak (dd ~ 0),
    # so the segment minimum is the episode's deepest point.
    return float(np.minimum.reduceat(dd, starts).mean())


def sharpe_sortino(r: np.ndarray, ppy: float) -> tuple[float, float]:
    """Sharpe and Sortino of the returns ``r``, annualised with ``ppy`` (the rule of ``compute_metrics``)."""
    return _ratios(r, ppy)


def _ratios(r: np.ndarray, ppy: float) -> tuple[float, float]:
    if r.size < 2:
        return 0.0, 0.0
    mean = float(r.mean())
    std = float(r.std(ddof=1))
    sharpe = mean / std * math.sqrt(ppy) if std > _NOISE else 0.0
    neg = np.minimum(r, 0.0)
    downside = math.sqrt(float(np.dot(neg, neg)) / r.size)
    sortino = mean / downside * math.sqrt(ppy) if downside > _NOISE else 0.0
    return sharpe, sortino


def _cagr(ratio: float, span_s: float) -> float:
    if ratio <= 0:
        return -1.0
    if span_s <= 0:
        return 0.0
    years = span_s / SECONDS_PER_YEAR
    try:
        return math.exp(math.log(ratio) / years) - 1.0
    except OverflowError:
        return math.inf


def _trade_metrics(trades: Sequence[TradeRecord]) -> dict[str, float]:
    n = len(trades)
    if n == 0:
        return {"win_rate": 0.0, "profit_factor": 0.0, "num_trades": 0.0, "avg_trade_duration_s": 0.0,
                "best_trade": 0.0, "worst_trade": 0.0}
    pnl = np.fromiter((t.pnl for t in trades), dtype=np.float64, count=n)
    dur = np.fromiter((t.exit_ns - t.entry_ns for t in trades), dtype=np.float64, count=n) / 1e9
    notional = np.abs(np.fromiter((t.entry_price * t.quantity for t in trades), dtype=np.float64, count=n))
    rets = np.zeros(n)
    np.divide(pnl, notional, out=rets, where=notional > 0)
    gross_win = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    pf = gross_win / gross_loss if gross_loss > 0 else (math.inf if gross_win > 0 else 0.0)
    return {
        "win_rate": float(np.count_nonzero(pnl > 0)) / n,
        "profit_factor": pf,
        "num_trades": float(n),
        "avg_trade_duration_s": float(dur.mean()),
        "best_trade": float(rets.max()),
        "worst_trade": float(rets.min()),
    }


def compute_metrics(
    equity: np.ndarray,
    ts_ns: np.ndarray,
    trades: Sequence[TradeRecord],
    periods_per_year: float,
) -> dict[str, float]:
    """The 12 official metrics (see the module docstring) of one equity curve and its closed trades."""
    eq = np.asarray(equity, dtype=np.float64)
    ts = np.asarray(ts_ns)
    if eq.ndim != 1 or eq.size == 0:
        raise ValidationError(f"compute_metrics: equity must be a non-empty 1-D array, got shape {eq.shape}")
    if ts.shape != eq.shape:
        raise ValidationError(f"compute_metrics: ts_ns has shape {ts.shape}, equity {eq.shape}")
    if not np.isfinite(eq).all():
        bad = int(np.flatnonzero(~np.isfinite(eq))[0])
        raise ValidationError(f"compute_metrics: equity[{bad}] is {eq[bad]!r} (must be finite)")
    if eq[0] <= 0:
        raise ValidationError(f"compute_metrics: equity must start > 0, got {eq[0]!r}")
    if not (periods_per_year > 0 and math.isfinite(periods_per_year)):
        raise ValidationError(f"compute_metrics: periods_per_year must be > 0, got {periods_per_year!r}")

    ratio = float(eq[-1] / eq[0])
    ruined = np.flatnonzero(eq <= 0)
    live = eq if ruined.size == 0 else eq[: int(ruined[0]) + 1]
    r = live[1:] / live[:-1] - 1.0
    sharpe, sortino = _ratios(r, periods_per_year)
    dd = drawdown_series(eq)
    out = {
        "total_return": ratio - 1.0,
        "cagr": _cagr(ratio, float(int(ts[-1]) - int(ts[0])) / 1e9),
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": float(min(0.0, dd.min())),
        "avg_drawdown": _avg_drawdown(dd),
    }
    out.update(_trade_metrics(trades))
    return {k: out[k] for k in METRIC_KEYS}


def buy_and_hold_equity(close: np.ndarray, initial_cash: float, fee_rate: float = 0.0) -> np.ndarray:
    """The benchmark a strategy must beat: all-in at the first close, paying one fee, marked to close.

    The first point is the cash just before the fill, the following ones the position marked to each
    close, so the entry fee shows in the first return and therefore in every metric (an equity curve
    that started after the fee would hide it from ``total_return``).
    """
    px = np.asarray(close, dtype=np.float64)
    if px.ndim != 1 or px.size == 0:
        raise ValidationError("buy_and_hold_equity: close must be a non-empty 1-D array")
    if not (px[0] > 0 and math.isfinite(px[0])):
        raise ValidationError(f"buy_and_hold_equity: first close must be a positive price, got {px[0]!r}")
    if not (0.0 <= fee_rate < 1.0):
        raise ValidationError(f"buy_and_hold_equity: fee_rate must be within [0, 1), got {fee_rate!r}")
    qty = float(initial_cash / (px[0] * (1.0 + fee_rate)))
    eq: np.ndarray = px * qty
    eq[0] = initial_cash
    return eq


def benchmark_metrics(
    close: np.ndarray,
    ts_ns: np.ndarray,
    initial_cash: float,
    periods_per_year: float,
    fee_rate: float = 0.0,
    symbol: str = "",
) -> dict[str, float]:
    """Buy-and-hold metrics, with the holding counted as one round trip from the first to the last bar."""
    px = np.asarray(close, dtype=np.float64)
    ts = np.asarray(ts_ns)
    eq = buy_and_hold_equity(px, initial_cash, fee_rate)
    qty = initial_cash / (px[0] * (1.0 + fee_rate))
    trade = TradeRecord(
        symbol=symbol,
        side="LONG",
        quantity=float(qty),
        entry_ns=int(ts[0]),
        entry_price=float(px[0]),
        exit_ns=int(ts[-1]),
        exit_price=float(px[-1]),
        pnl=float(eq[-1] - initial_cash),
        fees=float(initial_cash - qty * px[0]),
    )
    return compute_metrics(eq, ts, [trade], periods_per_year)


def json_safe(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """JSON has no inf/NaN (``json.dumps(allow_nan=False)`` refuses them): they become ``null``.

    ``num_trades`` is a count and is written as an integer so readers need not round it.
    """
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        if not math.isfinite(v):
            out[k] = None
        elif k == "num_trades":
            out[k] = int(v)
        else:
            out[k] = float(v)
    return out
