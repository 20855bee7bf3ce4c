"""MACD trend following: enter when the MACD line crosses its signal line, exit on the opposite cross."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class MacdTrend(IStrategy):
    """Gerald Appel's MACD signal-line cross, optionally only in the direction of a long EMA.

    A cross that the trend filter refuses still closes a position held the other way: the filter decides
    which entries are allowed, the cross alone decides when a trend trade is over.
    """

    name = "macd_trend"
    version = "1.0.0"
    author = "MMATS"
    description = ("Trend following: long when MACD crosses above its signal line (short below when "
                   "allow_short), exit on the opposite cross; optional EMA trend filter.")
    default_params: ClassVar[Mapping[str, Any]] = {
        "fast": 12, "slow": 26, "signal": 9, "trend_filter": 0, "size": 1.0, "allow_short": False,
    }

    def __init__(self) -> None:
        super().__init__()
        self._macd = self._signal = self._trend = ""
        self._prev_above: bool | None = None
        self._pos = 0

    def validate_params(self) -> None:
        p = self.params
        fast, slow, signal, trend = p["fast"], p["slow"], p["signal"], p["trend_filter"]
        if fast < 2 or slow < 2 or signal < 1:
            raise StrategyError(f"macd_trend: fast={fast} and slow={slow} must be >= 2 and signal={signal} >= 1")
        if fast >= slow:
            raise StrategyError(f"macd_trend: fast={fast} must be smaller than slow={slow}")
        if trend < 0 or trend == 1:
            raise StrategyError(f"macd_trend: trend_filter={trend} must be 0 (off) or an EMA period >= 2")
        if not 0 < p["size"] <= 1:
            raise StrategyError(f"macd_trend: size={p['size']} must be in (0, 1]")
        spec = f"MACD_{fast}_{slow}_{signal}"
        self._macd, self._signal = spec, f"{spec}.signal"
        self._trend = f"EMA_{trend}" if trend else ""
        self._prev_above = None
        self._pos = 0

    def get_required_indicators(self) -> list[str]:
        if not self._macd:
            self.validate_params()
        return [self._macd, self._trend] if self._trend else [self._macd]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        ind = context.indicators
        macd, signal = ind[self._macd], ind[self._signal]
        above = macd > signal
        prev = self._prev_above
        self._prev_above = above
        if prev is None or above == prev:
            return None
        close = context.bar.close
        trend = ind[self._trend] if self._trend else None
        p = self.params
        what = f"MACD {macd:.6g} crossed {'above' if above else 'below'} signal {signal:.6g}"
        if above:
            if trend is None or close > trend:
                self._pos = 1
                return TradeSignal(SignalAction.BUY, context.symbol, p["size"], reasoning=what)
        elif p["allow_short"] and (trend is None or close < trend):
            self._pos = -1
            return TradeSignal(SignalAction.SELL, context.symbol, p["size"], reasoning=what)
        # The filter refused the entry (or shorts are off): only close a position held the other way.
        if self._pos != 0 and (self._pos > 0) != above:
            self._pos = 0
            return TradeSignal(SignalAction.CLOSE, context.symbol, reasoning=what)
        return None

    def on_order_rejected(self, order: object, reason: str) -> None:
        # The entry never happened: the next cross decides afresh instead of waiting to exit a phantom.
        self._pos = 0
