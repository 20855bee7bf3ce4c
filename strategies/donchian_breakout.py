"""Donchian channel breakout (turtle style): buy a close above the prior channel high, exit below the low."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class DonchianBreakout(IStrategy):
    name = "donchian_breakout"
    version = "1.0.0"
    author = "MMATS"
    description = "Enter when the close breaks the previous `entry`-bar high; exit under the `exit`-bar low."
    default_params: ClassVar[Mapping[str, Any]] = {"entry": 20, "exit": 10, "size": 1.0, "allow_short": False}

    def __init__(self) -> None:
        super().__init__()
        self._up = self._lo = ""
        self._prev_high = math.nan
        self._prev_low = math.nan
        self._pos = 0

    def validate_params(self) -> None:
        p = self.params
        if p["entry"] < 2 or p["exit"] < 2:
            raise StrategyError(f"donchian_breakout: entry={p['entry']} and exit={p['exit']} must be >= 2")
        if not 0 < p["size"] <= 1:
            raise StrategyError(f"donchian_breakout: size={p['size']} must be in (0, 1]")
        self._up, self._lo = f"DONCHIAN_{p['entry']}.upper", f"DONCHIAN_{p['exit']}.lower"
        self._pos = 0

    def get_required_indicators(self) -> list[str]:
        if not self._up:
            self.validate_params()
        return [f"DONCHIAN_{self.params['entry']}", f"DONCHIAN_{self.params['exit']}"]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        # The channel includes the current bar, so compare with the previous bar's channel.
        close = context.bar.close
        prev_high, prev_low = self._prev_high, self._prev_low
        self._prev_high = context.indicators[self._up]
        self._prev_low = context.indicators[self._lo]
        if self._pos <= 0 and close > prev_high:
            self._pos = 1
            return TradeSignal(SignalAction.BUY, context.symbol, self.params["size"],
                               reasoning=f"close {close} broke the {self.params['entry']}-bar high {prev_high}")
        if self._pos >= 0 and close < prev_low:
            if self._pos == 1 and not self.params["allow_short"]:
                self._pos = 0
                return TradeSignal(SignalAction.CLOSE, context.symbol, reasoning=f"close {close} under low {prev_low}")
            if self.params["allow_short"]:
                self._pos = -1
                return TradeSignal(SignalAction.SELL, context.symbol, self.params["size"],
                                   reasoning=f"close {close} broke the {self.params['exit']}-bar low {prev_low}")
        return None
