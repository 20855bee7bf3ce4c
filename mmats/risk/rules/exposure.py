"""Rules that cap how big positions and exposures may become.

Each one computes the largest order that keeps its measure within the limit, *after* the order, with
the order's symbol marked at the order's price and every other position at its last price. When the
measure is already over the limit, the order may still reduce it (close part of the position) but not
grow it.

The arithmetic is float (exact to ~1e-16 relative); the gatekeeper turns the result into a Decimal
rounded *down* to the lot. Caps are deliberately not shrunk by a safety margin: a limit that allows
exactly 10 shares must give 10 shares, not 9.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmats.model import AccountState
from mmats.risk.decision import OrderIntent, RiskReason
from mmats.risk.rules.base import PASS, RuleContext, Verdict, cap_abs

_BIG = 1e18  # "unbounded" observed value: reasons stay finite, hence JSON-safe


def _after_notional(ctx: RuleContext) -> float:
    return abs(ctx.pos + ctx.sign * ctx.qty) * ctx.price


def _share(amount: float, equity: float) -> float:
    return amount / equity if equity > 0 else _BIG


def _cap_share(ctx: RuleContext, name: str, max_share: float, others: float, message: str) -> Verdict:
    """The tail the share-of-equity caps have in common: the symbol may hold what ``max_share`` x equity
    leaves once ``others`` (the rest of the measured exposure) is counted. ``message`` is formatted only
    on a cut (``{asset}``, ``{market}``), so the common pass costs no string work."""
    allowed = cap_abs(ctx, (max_share * ctx.equity - others) / ctx.price)
    if allowed >= ctx.qty:
        return PASS
    return allowed, RiskReason(name, max_share, _share(others + _after_notional(ctx), ctx.equity),
                               message.format(asset=ctx.asset, market=ctx.market.value))


@dataclass(frozen=True, slots=True)
class MaxOrderNotional:
    """Fat-finger guard: one order's notional, in account currency. Applies to exits too."""

    max_notional: float
    name = "MaxOrderNotional"
    applies_to_reducing = True

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        allowed = self.max_notional / ctx.price
        if allowed >= ctx.qty:
            return PASS
        return allowed, RiskReason(self.name, self.max_notional, ctx.qty * ctx.price,
                                   "order notional above the limit")


@dataclass(frozen=True, slots=True)
class MaxOpenPositions:
    max_positions: int
    name = "MaxOpenPositions"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        n = ctx.exp().open_count
        if ctx.pos != 0.0 or n < self.max_positions:
            return PASS
        return 0.0, RiskReason(self.name, float(self.max_positions), float(n + 1),
                               "a new position would exceed the open positions limit")


@dataclass(frozen=True, slots=True)
class MaxPositionSize:
    """|position| x price <= max_pct x equity."""

    max_pct: float
    name = "MaxPositionSize"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        return _cap_share(ctx, self.name, self.max_pct, 0.0, "position would exceed its share of equity")


@dataclass(frozen=True, slots=True)
class MaxAssetConcentration:
    """Everything exposed to one asset (BTC/USDT + BTC-PERP ...) <= max_pct x equity."""

    max_pct: float
    name = "MaxAssetConcentration"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        exp = ctx.exp()
        others = exp.asset_gross.get(ctx.asset, 0.0) - exp.notional.get(ctx.symbol, 0.0)
        return _cap_share(ctx, self.name, self.max_pct, others, "exposure to {asset} would exceed its share of equity")


@dataclass(frozen=True, slots=True)
class CorrelationCluster:
    """Held symbols correlated above the threshold with this one count as one position, capped together."""

    max_pct: float
    name = "CorrelationCluster"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        st = ctx.state
        if st.correlation is None:
            return PASS
        others = st.cluster_cache.get(ctx.symbol)
        if others is None:
            exp = ctx.exp()
            notional = exp.notional
            others = 0.0
            for s in st.correlation.members(ctx.symbol):
                others += notional.get(s, 0.0)
            st.cluster_cache[ctx.symbol] = others
        return _cap_share(ctx, self.name, self.max_pct, others,
                          "correlated positions together would exceed their share of equity")


@dataclass(frozen=True, slots=True)
class MaxExposurePerMarket:
    """Gross exposure in the order's market (crypto, forex, stock) <= max_pct x equity."""

    max_pct: float
    name = "MaxExposurePerMarket"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        exp = ctx.exp()
        others = exp.market_gross.get(ctx.market, 0.0) - exp.notional.get(ctx.symbol, 0.0)
        return _cap_share(ctx, self.name, self.max_pct, others, "{market} exposure would exceed its share of equity")


@dataclass(frozen=True, slots=True)
class MaxExposure:
    """Total gross exposure (an amount) and net directional exposure (a share of equity)."""

    max_gross: float | None
    max_net_pct: float | None
    name = "MaxExposure"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        exp = ctx.exp()
        allowed = ctx.qty
        reason = None
        if self.max_gross is not None:
            others = exp.gross - exp.notional.get(ctx.symbol, 0.0)
            a = cap_abs(ctx, (self.max_gross - others) / ctx.price)
            if a < allowed:
                allowed = a
                reason = RiskReason(self.name, self.max_gross, others + _after_notional(ctx),
                                    "total gross exposure would exceed the limit")
        if self.max_net_pct is not None:
            net_now = exp.net - exp.signed.get(ctx.symbol, 0.0) + ctx.pos * ctx.price
            room = self.max_net_pct * ctx.equity - ctx.sign * net_now
            a = room / ctx.price if room > 0.0 else 0.0
            if a < allowed:
                allowed = a
                reason = RiskReason(self.name, self.max_net_pct,
                                    _share(abs(net_now + ctx.sign * ctx.qty * ctx.price), ctx.equity),
                                    "net exposure would exceed its share of equity")
        return (allowed, reason) if reason is not None else PASS


@dataclass(frozen=True, slots=True)
class MaxLeverage:
    """Gross exposure / equity <= max_leverage."""

    max_leverage: float
    name = "MaxLeverage"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        exp = ctx.exp()
        others = exp.gross - exp.notional.get(ctx.symbol, 0.0)
        return _cap_share(ctx, self.name, self.max_leverage, others, "leverage would exceed the limit")
