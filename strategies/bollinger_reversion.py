"""Bollinger band mean reversion: buy the close that comes back inside the lower band, exit at the middle."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext

EXITS = ("middle", "opposite")


class BollingerReversion(IStrategy):
    """Fade a stretch outside the bands once price turns back in, not while it is still running away.

    Entering on the close back inside (rather than on the first close outside) waits for the move to stop;
    the optional RSI filter further requires the bar that closed outside to be oversold (overbought for a
    short), so a slow drift along the band does not count as a stretch.
    """

    name = "bollinger_reversion"
    version = "1.0.0"
    author = "MMATS"
    description = ("Mean reversion: long when the close crosses back above the lower band, exit at the middle "
                   "(or upper) band; shorts mirrored when allow_short; optional RSI filter.")
    default_params: ClassVar[Mapping[str, Any]] = {
        "period": 20, "k": 2.0, "exit": "middle", "allow_short": False,
        "rsi_period": 0, "rsi_oversold": 30.0, "rsi_overbought": 70.0, "size": 1.0,
    }

    def __init__(self) -> None:
        super().__init__()
        self._bands = self._rsi = ""
        self._pos = 0
        self._prev_close = self._prev_lower = self._prev_upper = self._prev_rsi = math.nan

    def validate_params(self) -> None:
        p = self.params
        if p["period"] < 2:
            raise StrategyError(f"bollinger_reversion: period={p['period']} must be >= 2")
        if not 0 < p["k"] <= 10:
            raise StrategyError(f"bollinger_reversion: k={p['k']} must be in (0, 10] standard deviations")
        if p["exit"] not in EXITS:
            raise StrategyError(f"bollinger_reversion: exit={p['exit']!r} must be one of {', '.join(EXITS)}")
        if p["rsi_period"] < 0 or p["rsi_period"] == 1:
            raise StrategyError(f"bollinger_reversion: rsi_period={p['rsi_period']} must be 0 (off) or >= 2")
        if not 0 < p["rsi_oversold"] < p["rsi_overbought"] < 100:
            raise StrategyError(f"bollinger_reversion: need 0 < rsi_oversold ({p['rsi_oversold']}) "
                                f"< rsi_overbought ({p['rsi_overbought']}) < 100")
        if not 0 < p["size"] <= 1:
            raise StrategyError(f"bollinger_reversion: size={p['size']} must be in (0, 1]")
        self._bands = f"BBANDS_{p['period']}_{p['k']:g}"
        self._rsi = f"RSI_{p['rsi_period']}" if p["rsi_period"] else ""
        self._pos = 0
        self._prev_close = self._prev_lower = self._prev_upper = self._prev_rsi = math.nan

    def get_required_indicators(self) -> list[str]:
        if not self._bands:
            self.validate_params()
        return [self._bands, self._rsi] if self._rsi else [self._bands]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        ind, p = context.indicators, self.params
        close = context.bar.close
        lower, middle, upper = ind[f"{self._bands}.lower"], ind[f"{self._bands}.middle"], ind[f"{self._bands}.upper"]
        rsi = ind[self._rsi] if self._rsi else math.nan
        prev_close, prev_lower, prev_upper = self._prev_close, self._prev_lower, self._prev_upper
        prev_rsi = self._prev_rsi
        self._prev_close, self._prev_lower, self._prev_upper, self._prev_rsi = close, lower, upper, rsi

        if self._pos > 0 and close >= (middle if p["exit"] == "middle" else upper):
            self._pos = 0
            return TradeSignal(SignalAction.CLOSE, context.symbol,
                               reasoning=f"close {close:.6g} reached the {p['exit']} band")
        if self._pos < 0 and close <= (middle if p["exit"] == "middle" else lower):
            self._pos = 0
            return TradeSignal(SignalAction.CLOSE, context.symbol,
                               reasoning=f"close {close:.6g} reached the {p['exit']} band")
        # NaN comparisons are False, so the first bar (no previous values) never enters.
        if self._pos <= 0 and prev_close < prev_lower and close >= lower \
                and (not self._rsi or prev_rsi <= p["rsi_oversold"]):
            self._pos = 1
            return TradeSignal(SignalAction.BUY, context.symbol, p["size"],
                               reasoning=f"close {close:.6g} back above the lower band {lower:.6g}")
        if p["allow_short"] and self._pos >= 0 and prev_close > prev_upper and close <= upper \
                and (not self._rsi or prev_rsi >= p["rsi_overbought"]):
            self._pos = -1
            return TradeSignal(SignalAction.SELL, context.symbol, p["size"],
                               reasoning=f"close {close:.6g} back under the upper band {upper:.6g}")
        return None

    def on_order_rejected(self, order: object, reason: str) -> None:
        # The entry never happened: look for the next stretch instead of waiting to exit a phantom.
        self._pos = 0
