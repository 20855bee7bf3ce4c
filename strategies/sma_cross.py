"""Moving-average crossover: long when the fast SMA crosses above the slow one, flat (or short) below."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class SmaCross(IStrategy):
    name = "sma_cross"
    version = "1.0.0"
    author = "MMATS"
    description = "Trend following: enter on a fast/slow SMA cross, exit on the opposite cross."
    default_params: ClassVar[Mapping[str, Any]] = {"fast": 10, "slow": 30, "size": 1.0, "allow_short": False}

    def __init__(self) -> None:
        super().__init__()
        self._prev_above: bool | None = None
        self._fast = self._slow = ""

    def validate_params(self) -> None:
        fast, slow = self.params["fast"], self.params["slow"]
        if fast < 1 or slow < 2:
            raise StrategyError(f"sma_cross: fast={fast} and slow={slow} must be >= 1 and >= 2")
        if fast >= slow:
            raise StrategyError(f"sma_cross: fast={fast} must be smaller than slow={slow}")
        if not 0 < self.params["size"] <= 1:
            raise StrategyError(f"sma_cross: size={self.params['size']} must be in (0, 1]")
        self._fast, self._slow = f"SMA_{fast}", f"SMA_{slow}"
        self._prev_above = None

    def get_required_indicators(self) -> list[str]:
        if not self._fast:
            self.validate_params()
        return [self._fast, self._slow]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        ind = context.indicators
        above = ind[self._fast] > ind[self._slow]
        prev = self._prev_above
        self._prev_above = above
        if prev is None or above == prev:
            return None
        if above:
            return TradeSignal(SignalAction.BUY, context.symbol, self.params["size"],
                               reasoning=f"{self._fast} crossed above {self._slow}")
        action = SignalAction.SELL if self.params["allow_short"] else SignalAction.CLOSE
        return TradeSignal(action, context.symbol, self.params["size"],
                           reasoning=f"{self._fast} crossed below {self._slow}")
