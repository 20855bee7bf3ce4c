"""The built-in rules, and the one fixed order in which the gatekeeper applies them.

Cheap yes/no rules that depend on time, signal quality and account losses come first (they usually
decide alone); then the rules that cut the quantity, from the order itself outwards to the whole
account. The order is part of the contract: docs/risk.md lists it.
"""

from __future__ import annotations

from mmats.model import MarketType
from mmats.risk.limits import EffectiveRisk, ResolvedLimits
from mmats.risk.rules.base import PASS, RiskState, Rule, RuleContext, Verdict, cap_abs, no_new_exposure
from mmats.risk.rules.exposure import (
    CorrelationCluster,
    MaxAssetConcentration,
    MaxExposure,
    MaxExposurePerMarket,
    MaxLeverage,
    MaxOpenPositions,
    MaxOrderNotional,
    MaxPositionSize,
)
from mmats.risk.rules.flow import MinConfidence, OrderRateAnomaly, SignalConstraints, Throttle, TimeOfDay
from mmats.risk.rules.loss import MaxDrawdown, PeriodLoss
from mmats.risk.rules.margin import MarginRequirement, MaxMarginUtilisation, ShortSelling
from mmats.risk.sessions import Session

__all__ = [
    "PASS", "RULE_ORDER", "CorrelationCluster", "MarginRequirement", "MaxAssetConcentration", "MaxDrawdown",
    "MaxExposure", "MaxExposurePerMarket", "MaxLeverage", "MaxMarginUtilisation", "MaxOpenPositions",
    "MaxOrderNotional", "MaxPositionSize", "MinConfidence", "OrderRateAnomaly", "PeriodLoss", "RiskState",
    "Rule", "RuleContext", "ShortSelling", "SignalConstraints", "Throttle", "TimeOfDay", "Verdict",
    "build_rules", "cap_abs", "no_new_exposure",
]

RULE_ORDER = (
    "TimeOfDay", "MinConfidence", "Throttle", "OrderRateAnomaly", "MaxDrawdown", "DailyLossLimit",
    "WeeklyLossLimit", "MonthlyLossLimit", "SignalConstraints", "MaxOrderNotional", "MaxOpenPositions",
    "MaxPositionSize", "MaxAssetConcentration", "CorrelationCluster", "MaxExposurePerMarket", "MaxExposure",
    "MaxLeverage", "ShortSelling", "MarginRequirement", "MaxMarginUtilisation",
)


def build_rules(
    limits: ResolvedLimits,
    effective: EffectiveRisk,
    market: MarketType,
    session: Session | None,
) -> tuple[Rule, ...]:
    """The rules that apply to one (strategy, market, symbol), configured with their resolved limits.

    Unset limits produce no rule at all, so an evaluation only pays for what is configured.
    """
    v = limits.values
    lv = effective.levels
    rules: list[Rule] = []
    th = lv.trading_hours
    if th is not None and th.enabled and session is not None:
        rules.append(TimeOfDay(session, th.allow_exits_outside))
    if "min_confidence" in v and v["min_confidence"] > 0:
        rules.append(MinConfidence(v["min_confidence"]))
    if "max_signals" in v:
        rules.append(Throttle(int(v["max_signals"]), v.get("signal_window_s", 60.0)))
    if lv.order_rate is not None:
        rules.append(OrderRateAnomaly(lv.order_rate.max_orders, lv.order_rate.window_s))
    if "max_drawdown_pct" in v:
        rules.append(MaxDrawdown(v["max_drawdown_pct"]))
    for period in ("daily", "weekly", "monthly"):
        amount, pct = v.get(f"max_{period}_loss"), v.get(f"max_{period}_loss_pct")
        if amount is not None or pct is not None:
            rules.append(PeriodLoss(period, amount, pct))
    rules.append(SignalConstraints())
    if "max_order_notional" in v:
        rules.append(MaxOrderNotional(v["max_order_notional"]))
    if "max_open_positions" in v:
        rules.append(MaxOpenPositions(int(v["max_open_positions"])))
    if "max_position_pct" in v:
        rules.append(MaxPositionSize(v["max_position_pct"]))
    if "max_concentration_pct" in v:
        rules.append(MaxAssetConcentration(v["max_concentration_pct"]))
    if "max_cluster_pct" in v and lv.correlation is not None:
        rules.append(CorrelationCluster(v["max_cluster_pct"]))
    if "max_market_exposure_pct" in v:
        rules.append(MaxExposurePerMarket(v["max_market_exposure_pct"]))
    if "max_gross_exposure" in v or "max_net_exposure_pct" in v:
        rules.append(MaxExposure(v.get("max_gross_exposure"), v.get("max_net_exposure_pct")))
    if "max_leverage" in v:
        rules.append(MaxLeverage(v["max_leverage"]))
    # The instrument's own terms (mmats.risk.rules.margin): always, whatever the config says.
    rules.append(ShortSelling())
    rules.append(MarginRequirement())
    if "max_margin_utilisation" in v:
        rules.append(MaxMarginUtilisation(v["max_margin_utilisation"]))
    return tuple(rules)
