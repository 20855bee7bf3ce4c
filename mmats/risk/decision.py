"""The values that cross the risk boundary: what is asked (OrderIntent) and what is answered.

Errors are values here: a refusal is a ``RiskDecision`` with machine-readable reasons (rule, limit,
observed value), never an exception, so it can be journaled, shown over HTTP and fed back to the
strategy's ``on_order_rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from mmats.model import AccountState, Instrument, Side, TradeSignal


class DecisionStatus(StrEnum):
    APPROVED = "APPROVED"
    RESIZED = "RESIZED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class RiskReason:
    """Why a rule cut or refused an order; ``limit`` and ``observed`` are in the rule's own unit."""

    rule: str
    limit: float
    observed: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "limit": self.limit, "observed": self.observed, "message": self.message}


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the engine would like to send, before risk: side and quantity already sized.

    ``price`` is the reference price the order is evaluated at (the last close, or the limit price);
    ``reduces_position`` is True when the order only brings the position closer to flat, which the
    kill switch in SOFT still allows.
    """

    strategy_id: str
    signal_id: str
    instrument: Instrument
    side: Side
    quantity: Decimal
    price: Decimal
    ts_ns: int
    reduces_position: bool = False
    signal: TradeSignal | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity


@dataclass(frozen=True, slots=True)
class RiskDecision:
    status: DecisionStatus
    intent: OrderIntent
    quantity: Decimal
    reasons: tuple[RiskReason, ...] = ()

    @property
    def approved(self) -> bool:
        return self.status is not DecisionStatus.REJECTED and self.quantity > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "strategy_id": self.intent.strategy_id,
            "signal_id": self.intent.signal_id,
            "symbol": self.intent.symbol,
            "side": self.intent.side.value,
            "requested_quantity": str(self.intent.quantity),
            "quantity": str(self.quantity),
            "price": str(self.intent.price),
            "reasons": [r.to_dict() for r in self.reasons],
        }


class RiskGate(Protocol):
    """What the backtest engine and the gatekeeper actor call before any order reaches a broker."""

    def evaluate(self, intent: OrderIntent, account: AccountState) -> RiskDecision: ...


def decide(intent: OrderIntent, allowed: Decimal, reasons: list[RiskReason]) -> RiskDecision:
    """Turn the largest allowed quantity into a decision, rounding down to the instrument's lot size."""
    allowed = intent.instrument.round_quantity(max(Decimal(0), min(allowed, intent.quantity)))
    if allowed <= 0 or not intent.instrument.meets_min_notional(allowed, intent.price):
        if allowed > 0:
            reasons = [*reasons, RiskReason("MinNotional", float(intent.instrument.min_notional),
                                            float(allowed * intent.price), "order below the venue's min notional")]
        return RiskDecision(DecisionStatus.REJECTED, intent, Decimal(0), tuple(reasons))
    if allowed < intent.quantity:
        return RiskDecision(DecisionStatus.RESIZED, intent, allowed, tuple(reasons))
    return RiskDecision(DecisionStatus.APPROVED, intent, allowed, tuple(reasons))
