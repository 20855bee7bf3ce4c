"""Position sizing: how large a *new* position should be, before the limits clip it.

Every method yields a notional, capped at ``max_fraction x equity x leverage`` (the buying power it may
use). Leverage enters in one place per method, on purpose:
- ``fixed_fractional`` commits ``fraction x equity`` as margin, so its notional is that times leverage;
- ``kelly``, ``volatility_target`` and ``risk_per_trade`` size by *risk* (edge, volatility, distance to
  the stop), which leverage does not change; leverage only raises their cap.
Quantities are rounded down to the lot and dropped below the venue's min notional: sizing never rounds
up past its cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from mmats.model import Instrument
from mmats.risk.limits import FixedFractionalSpec, KellySpec, RiskPerTradeSpec, VolatilityTargetSpec

SizingSpecT = FixedFractionalSpec | KellySpec | VolatilityTargetSpec | RiskPerTradeSpec


class TradeStats:
    """A strategy's realized record, for Kelly: win rate and payoff (average win / average loss)."""

    __slots__ = ("gross_loss", "gross_win", "losses", "wins")

    def __init__(self) -> None:
        self.wins = 0
        self.losses = 0
        self.gross_win = 0.0
        self.gross_loss = 0.0

    def record(self, pnl: float) -> None:
        if pnl > 0:
            self.wins += 1
            self.gross_win += pnl
        elif pnl < 0:
            self.losses += 1
            self.gross_loss -= pnl

    @property
    def trades(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    @property
    def payoff(self) -> float:
        """Average win / average loss; a record with wins and no loss has an unbounded payoff (Kelly's
        f* is then the win rate, i.e. 1, before ``kelly_fraction`` and ``cap``), one without wins none."""
        if not self.wins:
            return 0.0
        if not self.losses:
            return math.inf
        return (self.gross_win / self.wins) / (self.gross_loss / self.losses)


def kelly_fraction(win_rate: float, payoff: float) -> float:
    """Full Kelly f* = W - (1 - W) / R; negative means no edge (size 0)."""
    if payoff <= 0:
        return 0.0
    return win_rate - (1.0 - win_rate) / payoff


@dataclass(frozen=True, slots=True)
class SizingResult:
    quantity: Decimal
    notional: float
    method: str
    detail: str = ""


def target_notional(
    spec: SizingSpecT,
    equity: float,
    price: float,
    *,
    stop_loss: float | None = None,
    atr: float | None = None,
    stats: TradeStats | None = None,
) -> tuple[float, str]:
    """The notional (account currency) the method asks for, already capped; with a note when it is 0."""
    if equity <= 0 or price <= 0 or not math.isfinite(equity) or not math.isfinite(price):
        return 0.0, "no equity or no price"
    cap = spec.max_fraction * equity * spec.leverage
    if isinstance(spec, FixedFractionalSpec):
        notional = spec.fraction * equity * spec.leverage
        note = ""
    elif isinstance(spec, KellySpec):
        if stats is not None and stats.trades >= spec.min_trades:
            f = min(max(spec.kelly_fraction * kelly_fraction(stats.win_rate, stats.payoff), 0.0), spec.cap)
            note = "" if f > 0 else "no edge in the realized record"
        else:
            f = spec.fallback_fraction
            note = f"fewer than {spec.min_trades} trades: fallback fraction"
        notional = f * equity
    elif isinstance(spec, VolatilityTargetSpec):
        if atr is None or not (atr > 0 and math.isfinite(atr)):
            return 0.0, "no ATR yet (fewer bars than atr_period seen)"
        notional = spec.risk_fraction * equity / (atr * spec.atr_multiple) * price
        note = ""
    else:
        if stop_loss is None or not (stop_loss > 0):
            return 0.0, "no stop loss to size against"
        distance = abs(price - stop_loss)
        if distance <= 0:
            return 0.0, "stop loss at the entry price"
        notional = spec.risk_pct * equity / distance * price
        note = ""
    if notional > cap:
        return cap, f"capped at {spec.max_fraction:g} x equity x leverage {spec.leverage:g}"
    return max(notional, 0.0), note


def size_position(
    spec: SizingSpecT,
    equity: float,
    price: float,
    instrument: Instrument,
    *,
    stop_loss: float | None = None,
    atr: float | None = None,
    stats: TradeStats | None = None,
) -> SizingResult:
    """The quantity for a new position: the method's notional / price, rounded *down* to the lot."""
    notional, note = target_notional(spec, equity, price, stop_loss=stop_loss, atr=atr, stats=stats)
    if notional <= 0:
        return SizingResult(Decimal(0), 0.0, spec.method, note)
    qty = instrument.round_quantity(Decimal(repr(notional / price)))
    px = Decimal(repr(price))
    if qty <= 0 or not instrument.meets_min_notional(qty, px):
        return SizingResult(Decimal(0), 0.0, spec.method, "below the lot size or the venue's min notional")
    return SizingResult(qty, float(qty) * price, spec.method, note)
