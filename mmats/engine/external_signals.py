"""The external signal contract (other systems, HTTP) and its mapping to the one internal ``TradeSignal``.

Validated with pydantic because it arrives from outside; the error names the field. After mapping,
the gatekeeper sees no difference between a strategy's signal and an external one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from mmats.errors import ValidationError
from mmats.model import SignalAction, TimeHorizon, TradeSignal


class SignalConstraints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_slippage_bps: float | None = Field(None, ge=0)
    max_notional: float | None = Field(None, gt=0)


class ExternalSignal(BaseModel):
    """``{strategy_id, symbol, side, confidence, target_exposure, time_horizon, constraints}``.

    ``target_exposure`` is the share of the strategy's allocated capital to hold on ``side``; 0 means
    flat. ``signal_id`` is optional: when a sender retries, reusing it makes the retry harmless.
    """

    model_config = ConfigDict(extra="forbid")

    strategy_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Literal["BUY", "SELL"]
    confidence: float = Field(ge=0, le=1)
    target_exposure: float = Field(ge=0, le=1)
    time_horizon: TimeHorizon = TimeHorizon.INTRADAY
    constraints: SignalConstraints = Field(default_factory=SignalConstraints)
    signal_id: str = ""
    reasoning: str = ""

    def to_trade_signal(self) -> TradeSignal:
        action = SignalAction.CLOSE if self.target_exposure == 0 else SignalAction(self.side)
        return TradeSignal(
            action=action,
            symbol=self.symbol,
            position_size=self.target_exposure,
            confidence=self.confidence,
            reasoning=self.reasoning,
            metadata={"source": "external"},
            strategy_id=self.strategy_id,
            signal_id=self.signal_id,
            max_slippage_bps=self.constraints.max_slippage_bps,
            max_notional=self.constraints.max_notional,
            time_horizon=self.time_horizon,
        )


def parse_external_signal(raw: dict[str, Any]) -> TradeSignal:
    """Validate an external payload and map it; errors read ``signal.constraints.max_notional: ...``."""
    try:
        return ExternalSignal.model_validate(raw).to_trade_signal()
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise ValidationError(f"signal.{path}: {err['msg']} (got {err.get('input')!r})") from None
