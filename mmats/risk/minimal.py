"""A minimal pre-trade gate: max position size and max order notional (two limits, no state).

The full gatekeeper (`mmats.risk.gatekeeper`) implements the same ``RiskGate`` protocol and replaces
this one in the backtest engine without any change to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mmats.model import AccountState
from mmats.risk.decision import OrderIntent, RiskDecision, RiskReason, decide
from mmats.risk.rules.margin import margin_allowance, other_margin, short_allowance


@dataclass(frozen=True, slots=True)
class MinimalRiskGate:
    """``max_position_pct``: |position| x price <= pct x equity after the order (1.0 = all-in, no leverage)."""

    max_position_pct: float = 1.0
    max_order_notional: float | None = None

    def evaluate(self, intent: OrderIntent, account: AccountState) -> RiskDecision:
        allowed = intent.quantity
        reasons: list[RiskReason] = []
        price = intent.price  # of one unit in the account's base currency (mmats.fx)
        quote = intent.instrument.quote_currency
        if quote != account.currency and account.fx_rates:
            price *= account.fx_rate(quote)
        if self.max_order_notional is not None:
            cap = Decimal(repr(self.max_order_notional)) / price
            if cap < allowed:
                allowed = cap
                reasons.append(RiskReason("MaxOrderNotional", self.max_order_notional, float(intent.notional),
                                          "order notional above the limit"))
        if not intent.reduces_position and account.equity > 0:
            pos = account.position(intent.symbol)
            current = pos.quantity if pos is not None else Decimal(0)
            limit_qty = Decimal(repr(self.max_position_pct)) * account.equity / price
            after = abs(current + intent.signed_quantity)
            if after > limit_qty:
                room = max(Decimal(0), limit_qty - abs(current)) if _same_direction(current, intent) else (
                    abs(current) + limit_qty)
                if room < allowed:
                    allowed = room
                    reasons.append(RiskReason("MaxPositionSize", self.max_position_pct,
                                              float(after * price / account.equity), "position above % of equity"))
        allowed = _instrument_terms(intent, account, allowed, reasons, price)
        return decide(intent, allowed, reasons)


def _instrument_terms(intent: OrderIntent, account: AccountState, allowed: Decimal,
                      reasons: list[RiskReason], price: Decimal | None = None) -> Decimal:
    """The venue's rules the full gatekeeper applies too: no short where the instrument cannot be shorted,
    no order needing more margin than the account has free."""
    inst = intent.instrument
    pos_snap = account.position(intent.symbol)
    pos = float(pos_snap.quantity) if pos_snap is not None else 0.0
    sign = intent.side.sign
    qty = float(allowed)
    for cap, reason in (
        short_allowance(inst, pos, sign, qty),
        margin_allowance(inst, pos, sign, qty, float(intent.price if price is None else price), float(account.equity),
                         other_margin(account, intent.symbol), 1.0, "MarginRequirement")
        if inst.margin_rate(pos + sign * qty) > 0.0 else (qty, None),
    ):
        if reason is not None and cap < qty:
            qty = cap
            reasons.append(reason)
    return allowed if qty >= float(allowed) else Decimal(repr(max(qty, 0.0)))


def _same_direction(current: Decimal, intent: OrderIntent) -> bool:
    return current == 0 or (current > 0) == (intent.signed_quantity > 0)
