"""Rules that stop new exposure once the account has lost enough: drawdown and period losses.

They do not depend on the order's size, only on the account, so they either pass or forbid new
exposure; closing positions is always allowed. Equity references (peak, start of the UTC day, ISO week,
month) come from the kill-switch monitor, which sees every equity observation, not only those at
signal time.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmats.model import AccountState
from mmats.risk.decision import OrderIntent, RiskReason
from mmats.risk.exposure import SAFETY
from mmats.risk.rules.base import PASS, RuleContext, Verdict, no_new_exposure


@dataclass(frozen=True, slots=True)
class MaxDrawdown:
    """No new exposure while equity is ``max_pct`` or more below its peak."""

    max_pct: float
    name = "MaxDrawdown"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        exp = ctx.exp()
        peak = max(exp.peak, ctx.state.monitor.peak)
        if peak <= 0.0:
            return PASS
        dd = 1.0 - ctx.equity / peak
        if dd < self.max_pct * SAFETY:
            return PASS
        return no_new_exposure(ctx), RiskReason(self.name, self.max_pct, dd,
                                                f"drawdown from peak {peak:.2f} at or over the limit")


@dataclass(frozen=True, slots=True)
class PeriodLoss:
    """No new exposure once the loss since the period's start reaches ``max_amount`` or ``max_pct`` of it.

    ``period`` is daily, weekly (ISO weeks, Monday 00:00 UTC) or monthly; loss includes unrealized P&L.
    """

    period: str
    max_amount: float | None
    max_pct: float | None
    applies_to_reducing = False

    @property
    def name(self) -> str:
        return {"daily": "DailyLossLimit", "weekly": "WeeklyLossLimit", "monthly": "MonthlyLossLimit"}[self.period]

    def limit(self, start: float) -> float:
        amount = self.max_amount if self.max_amount is not None else float("inf")
        pct = self.max_pct * abs(start) if self.max_pct is not None else float("inf")
        return min(amount, pct)

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        start = ctx.state.monitor.period_start(self.period)
        if start == float("-inf"):
            return PASS
        loss = start - ctx.equity
        if loss <= 0.0:
            return PASS
        limit = self.limit(start)
        if loss < limit * SAFETY:
            return PASS
        return no_new_exposure(ctx), RiskReason(self.name, limit, loss,
                                                f"{self.period} loss at or over the limit (start equity {start:.2f})")
