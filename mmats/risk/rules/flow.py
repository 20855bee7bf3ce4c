"""Rules about *when* and *how often* to trade, and about the signal's own constraints.

Time windows, signal quality and rate limits do not depend on position sizes: they pass, forbid new
exposure, or (for the signal's own constraints, which the strategy set for all its orders) cut the
order itself.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from mmats.model import AccountState
from mmats.risk.decision import OrderIntent, RiskReason
from mmats.risk.rules.base import PASS, RuleContext, Verdict, no_new_exposure
from mmats.risk.sessions import Session


@dataclass(frozen=True, slots=True)
class TimeOfDay:
    """Orders only inside the market's trading windows; exits outside them when ``allow_exits_outside``."""

    session: Session
    allow_exits_outside: bool = True
    name = "TimeOfDay"
    applies_to_reducing = True

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        if self.session.is_open(ctx.ts_ns):
            return PASS
        allowed = no_new_exposure(ctx) if self.allow_exits_outside else 0.0
        return allowed, RiskReason(self.name, 0.0, float(ctx.ts_ns // 1_000_000_000),
                                   f"{ctx.market.value} session {self.session.name!r} is closed")


@dataclass(frozen=True, slots=True)
class MinConfidence:
    min_confidence: float
    name = "MinConfidence"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        sig = intent.signal
        conf = sig.confidence if sig is not None else intent.extra.get("confidence", 1.0)
        if conf >= self.min_confidence:
            return PASS
        return no_new_exposure(ctx), RiskReason(self.name, self.min_confidence, conf, "signal confidence too low")


@dataclass(frozen=True, slots=True)
class Throttle:
    """At most ``max_signals`` evaluated signals per strategy within ``window_s`` seconds."""

    max_signals: int
    window_s: float
    name = "Throttle"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        times = ctx.state.signal_times.get(ctx.strategy_id)
        if times is None:
            return PASS
        n = len(times) - bisect_right(times, ctx.ts_ns - int(self.window_s * 1e9))
        if n < self.max_signals:
            return PASS
        return no_new_exposure(ctx), RiskReason(self.name, float(self.max_signals), float(n + 1),
                                                f"more than {self.max_signals} signals in {self.window_s:.0f} s")


@dataclass(frozen=True, slots=True)
class OrderRateAnomaly:
    """More than ``max_orders`` approved orders (all strategies) within ``window_s``: something is looping.

    The gatekeeper also reports the anomaly to the kill switch monitor.
    """

    max_orders: int
    window_s: float
    name = "OrderRateAnomaly"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        times = ctx.state.order_times
        horizon = ctx.ts_ns - int(self.window_s * 1e9)
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) < self.max_orders:
            return PASS
        return no_new_exposure(ctx), RiskReason(self.name, float(self.max_orders), float(len(times) + 1),
                                                f"order rate above {self.max_orders} per {self.window_s:.0f} s")


@dataclass(frozen=True, slots=True)
class SignalConstraints:
    """The signal's own ``max_notional`` and ``max_slippage_bps`` (vs ``intent.extra["expected_slippage_bps"]``)."""

    name = "SignalConstraints"
    applies_to_reducing = True

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        sig = intent.signal
        if sig is None:
            return PASS
        if sig.max_slippage_bps is not None:
            expected = intent.extra.get("expected_slippage_bps")
            if expected is not None and expected > sig.max_slippage_bps:
                return 0.0, RiskReason("SignalMaxSlippage", sig.max_slippage_bps, expected,
                                       "expected slippage above the signal's maximum")
        if sig.max_notional is not None:
            allowed = sig.max_notional / ctx.price
            if allowed < ctx.qty:
                return allowed, RiskReason("SignalMaxNotional", sig.max_notional, ctx.qty * ctx.price,
                                           "order notional above the signal's maximum")
        return PASS
