"""Mean reversion on RSI: buy when oversold, exit when the RSI recovers past the exit level."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext


class RsiReversion(IStrategy):
    name = "rsi_reversion"
    version = "1.0.0"
    author = "MMATS"
    description = "Buy when RSI falls below `oversold`, close when it rises above `exit`; optional stop loss."
    default_params: ClassVar[Mapping[str, Any]] = {
        "period": 14, "oversold": 30.0, "exit": 55.0, "size": 1.0, "stop_pct": 0.0,
    }

    def __init__(self) -> None:
        super().__init__()
        self._rsi = ""
        self._long = False

    def validate_params(self) -> None:
        p = self.params
        if p["period"] < 2:
            raise StrategyError(f"rsi_reversion: period={p['period']} must be >= 2")
        if not 0 < p["oversold"] < p["exit"] < 100:
            raise StrategyError(f"rsi_reversion: need 0 < oversold ({p['oversold']}) < exit ({p['exit']}) < 100")
        if not 0 < p["size"] <= 1:
            raise StrategyError(f"rsi_reversion: size={p['size']} must be in (0, 1]")
        if not 0 <= p["stop_pct"] < 1:
            raise StrategyError(f"rsi_reversion: stop_pct={p['stop_pct']} must be in [0, 1)")
        self._rsi = f"RSI_{p['period']}"
        self._long = False

    def get_required_indicators(self) -> list[str]:
        if not self._rsi:
            self.validate_params()
        return [self._rsi]

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        rsi = context.indicators[self._rsi]
        if not self._long and rsi < self.params["oversold"]:
            self._long = True
            stop = context.bar.close * (1 - self.params["stop_pct"]) if self.params["stop_pct"] else None
            return TradeSignal(SignalAction.BUY, context.symbol, self.params["size"], stop_loss=stop,
                               confidence=min(1.0, (self.params["oversold"] - rsi) / 30 + 0.5),
                               reasoning=f"{self._rsi}={rsi:.1f} below {self.params['oversold']}")
        if self._long and rsi > self.params["exit"]:
            self._long = False
            return TradeSignal(SignalAction.CLOSE, context.symbol, reasoning=f"{self._rsi}={rsi:.1f} recovered")
        return None

    def on_order_rejected(self, order: object, reason: str) -> None:
        # The entry never happened: look for the next oversold bar instead of waiting for an exit.
        self._long = False
