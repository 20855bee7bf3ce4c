"""Pre-trade rules that come from how an instrument is held (``Instrument.kind``), plus the margin limit.

``ShortSelling`` and ``MarginRequirement`` are the venue's own rules, so they apply to every order
whatever the risk config says: a spot coin or a stock without a borrow cannot be sold short, and no
order may need more margin than the account has free. ``MaxMarginUtilisation`` is the configured limit
``max_margin_utilisation`` (margin used / equity, after the order), tighter than the venue's 100 %.

Margin of a position = |quantity| x price x ``Instrument.margin_rate``: 1/leverage (or the configured
initial margin) for perpetuals and forex, ``initial_margin`` for a stock short, nothing for what is
paid in cash. The order's symbol is counted at the order's price, the others at their last marks.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmats.model import AccountState, Instrument, InstrumentKind
from mmats.risk.decision import OrderIntent, RiskReason
from mmats.risk.rules.base import PASS, RuleContext, Verdict


def margin_room(inst: Instrument, pos: float, sign: int, qty: float, price: float,
                room: float) -> float:
    """Largest order quantity whose resulting position in ``inst`` needs at most ``room`` of margin.

    ``room`` is the margin the account allows this symbol (the limit minus what the other positions
    use). The part of an order that reduces the position is always allowed. Returns ``qty`` or less.
    """
    after = pos + sign * qty
    rate = inst.margin_rate(after)
    if rate <= 0.0:
        return qty
    cap = room / (price * rate) if room > 0.0 else 0.0
    if pos != 0.0 and (pos > 0.0) != (sign > 0):  # through flat: close all, then open up to the cap
        allowed = abs(pos) + cap
    else:
        allowed = cap - abs(pos)
        allowed = allowed if allowed > 0.0 else 0.0
    return allowed if allowed < qty else qty


def symbol_margin(inst: Instrument, pos: float, price: float) -> float:
    return abs(pos) * price * inst.margin_rate(pos) if pos else 0.0


def other_margin(account: AccountState, symbol: str) -> float:
    """Margin used by every position of ``account`` but ``symbol``'s, in the account's base currency."""
    total = 0.0
    for p in account.positions:
        if p.margin and p.symbol != symbol:
            total += float(p.margin * p.fx_rate)
    return total


def short_allowance(inst: Instrument, pos: float, sign: int, qty: float) -> Verdict:
    """A sell that would leave a short in an instrument that cannot be shorted is cut to the long held."""
    if inst.shortable or sign > 0 or pos - qty >= 0.0:
        return PASS
    held = pos if pos > 0.0 else 0.0
    if inst.kind is InstrumentKind.SPOT:
        why = f"{inst.symbol} is spot, bought with cash: it cannot be sold short (a perpetual swap can be)"
    else:
        why = f"{inst.symbol} is not shortable (no borrow: set shortable: true where the broker lends it)"
    return held, RiskReason("ShortSelling", held, pos - qty, why)


def margin_allowance(inst: Instrument, pos: float, sign: int, qty: float, price: float, equity: float,
                     others: float, max_utilisation: float, rule: str) -> Verdict:
    """The order cut so that the account's margin used stays within ``max_utilisation`` x equity;
    ``others`` is the margin the account's other positions use."""
    allowed = margin_room(inst, pos, sign, qty, price, max_utilisation * equity - others)
    if allowed >= qty:
        return PASS
    after = pos + sign * qty
    used_after = others + symbol_margin(inst, after, price)
    if rule == "MarginRequirement":
        why = (f"the order needs {used_after - others:.2f} margin for {inst.symbol} at leverage "
               f"{inst.leverage:g}; the account has {max(equity - others, 0.0):.2f} free")
        return allowed, RiskReason(rule, equity, used_after, why)
    util = used_after / equity if equity > 0 else 1e18
    return allowed, RiskReason(rule, max_utilisation, util, "margin used / equity would exceed the limit")


@dataclass(frozen=True, slots=True)
class ShortSelling:
    name = "ShortSelling"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        if intent.reduces_position:  # closes what the strategy holds, counting its orders still on the way
            return PASS
        return short_allowance(intent.instrument, ctx.pos, ctx.sign, ctx.qty)


@dataclass(frozen=True, slots=True)
class MarginRequirement:
    """No order may need more margin than the account has free (utilisation 100 %)."""

    name = "MarginRequirement"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        inst = intent.instrument
        if inst.margin_rate(ctx.pos + ctx.sign * ctx.qty) <= 0.0:
            return PASS
        return margin_allowance(inst, ctx.pos, ctx.sign, ctx.qty, ctx.price, ctx.equity,
                                other_margin(account, inst.symbol), 1.0, self.name)


@dataclass(frozen=True, slots=True)
class MaxMarginUtilisation:
    """Margin used / equity after the order <= ``max_utilisation``."""

    max_utilisation: float
    name = "MaxMarginUtilisation"
    applies_to_reducing = False

    def check(self, intent: OrderIntent, account: AccountState, ctx: RuleContext) -> Verdict:
        inst = intent.instrument
        if inst.margin_rate(ctx.pos + ctx.sign * ctx.qty) <= 0.0:
            return PASS
        return margin_allowance(inst, ctx.pos, ctx.sign, ctx.qty, ctx.price, ctx.equity,
                                other_margin(account, inst.symbol), self.max_utilisation, self.name)
