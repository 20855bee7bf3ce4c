"""Fill, slippage and commission models, and the simulated broker used by backtest AND paper trading.

One simulator for both environments is what makes paper results comparable with backtests. The broker
sees the world one bar at a time: an order submitted while bar t is known becomes eligible from bar t+1
(no fill at a price the strategy already saw). Within a bar the simulator is pessimistic: when a stop
and a take-profit of the same bracket are both touched, the stop fills first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mmats.errors import ValidationError
from mmats.model import Fill, Instrument, Liquidity, Order, OrderStatus, OrderType, Side, TimeInForce
from mmats.orders import apply_fill, transition

# --------------------------------------------------------------------------------------------- slippage


class SlippageModel(Protocol):
    """Adverse price move as a fraction of price, for a taker fill of ``quantity`` in the given bar."""

    def fraction(self, quantity: float, price: float, high: float, low: float, volume: float) -> float: ...


@dataclass(frozen=True, slots=True)
class NoSlippage:
    def fraction(self, quantity: float, price: float, high: float, low: float, volume: float) -> float:
        return 0.0


@dataclass(frozen=True, slots=True)
class FixedBpsSlippage:
    bps: float

    def __post_init__(self) -> None:
        _non_negative("slippage bps", self.bps)

    def fraction(self, quantity: float, price: float, high: float, low: float, volume: float) -> float:
        return self.bps * 1e-4


@dataclass(frozen=True, slots=True)
class VolatilitySlippage:
    """A share ``k`` of the fill bar's high-low range: wide bars are where market orders hurt."""

    k: float = 0.1

    def __post_init__(self) -> None:
        _non_negative("volatility slippage k", self.k)

    def fraction(self, quantity: float, price: float, high: float, low: float, volume: float) -> float:
        return self.k * (high - low) / price if price > 0 else 0.0


@dataclass(frozen=True, slots=True)
class VolumeSlippage:
    """Square-root market impact: ``base_bps + impact * sqrt(participation)`` of the bar's volume.

    ``volume_in_quote`` says the data's volume column is quote notional (as in the BTC perp file),
    so participation is ``quantity * price / volume``. Bars without volume (forex) get ``base_bps``.
    """

    impact: float = 0.1
    base_bps: float = 0.0
    volume_in_quote: bool = False

    def __post_init__(self) -> None:
        _non_negative("volume slippage impact", self.impact)
        _non_negative("volume slippage base_bps", self.base_bps)

    def fraction(self, quantity: float, price: float, high: float, low: float, volume: float) -> float:
        base = self.base_bps * 1e-4
        if volume <= 0:
            return base
        participation = quantity * price / volume if self.volume_in_quote else quantity / volume
        return base + self.impact * math.sqrt(participation)


# ------------------------------------------------------------------------------------------ commission


class CommissionModel(Protocol):
    """Fee in quote currency for one fill; never negative."""

    def fee(self, quantity: float, price: float, liquidity: Liquidity) -> float: ...


@dataclass(frozen=True, slots=True)
class NoCommission:
    def fee(self, quantity: float, price: float, liquidity: Liquidity) -> float:
        return 0.0


@dataclass(frozen=True, slots=True)
class PercentCommission:
    """Maker/taker fee in basis points of notional (crypto venues, many CFD brokers)."""

    taker_bps: float
    maker_bps: float | None = None

    def __post_init__(self) -> None:
        _non_negative("taker fee bps", self.taker_bps)
        if self.maker_bps is not None:
            _non_negative("maker fee bps", self.maker_bps)

    def fee(self, quantity: float, price: float, liquidity: Liquidity) -> float:
        bps = self.taker_bps if liquidity is Liquidity.TAKER or self.maker_bps is None else self.maker_bps
        return quantity * price * bps * 1e-4


@dataclass(frozen=True, slots=True)
class PerShareCommission:
    """US-stock style: a rate per share with a minimum per order and a cap as a share of notional."""

    per_share: float = 0.005
    minimum: float = 1.0
    max_pct: float = 0.01

    def __post_init__(self) -> None:
        _non_negative("per-share fee", self.per_share)
        _non_negative("per-share minimum", self.minimum)
        _non_negative("per-share max_pct", self.max_pct)

    def fee(self, quantity: float, price: float, liquidity: Liquidity) -> float:
        fee = max(self.minimum, quantity * self.per_share)
        cap = quantity * price * self.max_pct
        return min(fee, cap) if cap > 0 else fee


@dataclass(frozen=True, slots=True)
class SpreadCommission:
    """Forex: the cost of crossing a spread of ``pips``; each fill pays half the spread."""

    pips: float
    pip_size: float = 0.0001

    def __post_init__(self) -> None:
        _non_negative("spread pips", self.pips)
        if self.pip_size <= 0:
            raise ValidationError(f"pip_size must be > 0, got {self.pip_size}")

    def fee(self, quantity: float, price: float, liquidity: Liquidity) -> float:
        return quantity * self.pips * self.pip_size / 2


def _non_negative(what: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"{what} must be a finite number >= 0, got {value}")


def parse_bps(text: str, what: str) -> float:
    """'10bps', '0.1%', '10' (bps) -> basis points; the CLI's cost syntax."""
    t = text.strip().lower()
    try:
        if t.endswith("bps"):
            value = float(t[:-3])
        elif t.endswith("%"):
            value = float(t[:-1]) * 100
        else:
            value = float(t)
    except ValueError:
        raise ValidationError(f"{what}: {text!r} is not a cost like '10bps', '0.1%' or '10'") from None
    _non_negative(what, value)
    return value


# ------------------------------------------------------------------------------------- the simulator


@dataclass(slots=True)
class ExecutionConfig:
    """``max_volume_share``: cap a fill at this share of the bar's volume (None = off; ignored on bars with
    zero volume, such as forex). ``cash_only``: buys that add long exposure are cut to what cash pays for,
    fees included (spot crypto, a stock cash account); off for margin accounts, and never applied to an
    instrument with leverage above 1 (its buys are checked against free margin before they are sent)."""

    max_volume_share: float | None = None
    volume_in_quote: bool = False
    cash_only: bool = True

    def __post_init__(self) -> None:
        if self.max_volume_share is not None and not (0 < self.max_volume_share <= 1):
            raise ValidationError(f"max_volume_share must be in (0, 1], got {self.max_volume_share}")


@dataclass(slots=True)
class SimulatedBroker:
    """Holds open orders for one instrument and fills them against bars.

    ``process_bar`` is called once per bar *before* the strategy sees that bar's close. Orders carry
    the index of the bar on which they were submitted and are never filled on that same bar.
    """

    instrument: Instrument
    slippage: SlippageModel = field(default_factory=NoSlippage)
    commission: CommissionModel = field(default_factory=NoCommission)
    config: ExecutionConfig = field(default_factory=ExecutionConfig)
    open_orders: list[Order] = field(default_factory=list)
    _eligible_from: dict[str, int] = field(default_factory=dict)
    _children: dict[str, list[Order]] = field(default_factory=dict)
    _fill_seq: int = 0

    def submit(self, order: Order, bar_index: int, ts_ns: int, children: list[Order] | None = None) -> None:
        """Accept an order; bracket ``children`` wait until the parent is completely filled."""
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, ts_ns)
        transition(order, OrderStatus.ACCEPTED, ts_ns)
        self.open_orders.append(order)
        self._eligible_from[order.client_order_id] = bar_index + 1
        if children:
            self._children[order.client_order_id] = children

    def restore(self, order: Order, bar_index: int, children: list[Order] | None = None) -> None:
        """Put back an order that was working before a restart, as it is (no state change)."""
        self.open_orders.append(order)
        self._eligible_from[order.client_order_id] = bar_index + 1
        if children:
            self._children[order.client_order_id] = children

    def cancel(self, order: Order, ts_ns: int) -> None:
        """Cancel an open order; a partially filled parent still gets its protective children."""
        if order in self.open_orders:
            self._close(order, OrderStatus.CANCELED, ts_ns)

    def cancel_all(self, ts_ns: int, predicate: Callable[[Order], bool] | None = None) -> list[Order]:
        victims = [o for o in self.open_orders if predicate is None or predicate(o)]
        for o in victims:
            self.cancel(o, ts_ns)
        return victims

    def may_spend_cash(self) -> bool:
        """Whether ``process_bar`` can read its ``cash``: a cash-only rule and a buy that is not reduce-only
        among the working orders or the bracket children a fill may activate (otherwise any number does)."""
        if not self.config.cash_only:
            return False
        for order in self.open_orders:
            if order.side is Side.BUY and not order.reduce_only:
                return True
        return any(c.side is Side.BUY and not c.reduce_only for kids in self._children.values() for c in kids)

    def process_bar(
        self,
        i: int,
        ts_ns: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        v: float,
        position: float,
        cash: float,
    ) -> list[Fill]:
        """Fill what this bar allows; ``position`` and ``cash`` are the account's current float mirrors."""
        fills: list[Fill] = []
        day = ts_ns // 86_400_000_000_000
        # Stops before limits: the pessimistic intrabar order for brackets. A second pass picks up the
        # bracket children that an entry fill at this bar's open has just activated (only a broker holding
        # children can have any).
        may_activate = bool(self._children)
        working = self.open_orders
        batch = working[:] if len(working) < 2 else sorted(working, key=_intrabar_priority)
        for order in batch:
            position, cash = self._process_order(order, i, ts_ns, day, o, h, lo, v, position, cash, fills)
        if may_activate:
            seen = {order.client_order_id for order in batch}
            for order in sorted((x for x in self.open_orders if x.client_order_id not in seen), key=_intrabar_priority):
                position, cash = self._process_order(order, i, ts_ns, day, o, h, lo, v, position, cash, fills)
        return fills

    def _process_order(
        self, order: Order, i: int, ts_ns: int, day: int, o: float, h: float, lo: float, v: float,
        position: float, cash: float, fills: list[Fill],
    ) -> tuple[float, float]:
        if order.status.is_terminal or self._eligible_from.get(order.client_order_id, 0) > i:
            return position, cash
        if order.time_in_force is TimeInForce.DAY and day > order.created_ns // 86_400_000_000_000:
            self._close(order, OrderStatus.EXPIRED, ts_ns)
            return position, cash
        fill = self._try_fill(order, ts_ns, o, h, lo, v, position, cash)
        if fill is not None:
            fills.append(fill)
            position += float(fill.signed_quantity)
            cash -= float(fill.signed_quantity * fill.price) + float(fill.fee)
            if order.status is OrderStatus.FILLED:
                self._activate_children(order, i, ts_ns)
                self._cancel_oco_siblings(order, ts_ns)
        if order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) and order.status.is_open:
            self._close(order, OrderStatus.CANCELED, ts_ns)
        return position, cash

    # -------------------------------------------------------------------------------------- internals

    def _close(self, order: Order, status: OrderStatus, ts_ns: int) -> None:
        if status is OrderStatus.CANCELED:
            transition(order, OrderStatus.PENDING_CANCEL, ts_ns)
        transition(order, status, ts_ns)
        if order in self.open_orders:
            self.open_orders.remove(order)
        self._eligible_from.pop(order.client_order_id, None)
        for child in self._children.pop(order.client_order_id, []):
            if order.filled_quantity > 0 and child.status is OrderStatus.NEW:
                child.quantity = order.filled_quantity
                self.submit(child, -1, ts_ns)
            elif child.status is OrderStatus.NEW:
                transition(child, OrderStatus.CANCELED, ts_ns)

    def _activate_children(self, parent: Order, i: int, ts_ns: int) -> None:
        for child in self._children.pop(parent.client_order_id, []):
            child.quantity = parent.filled_quantity
            # Placed right after the parent's fill: they may trigger later in this same bar.
            self.submit(child, i - 1, ts_ns)

    def _cancel_oco_siblings(self, order: Order, ts_ns: int) -> None:
        if order.oco_group is None:
            return
        for other in list(self.open_orders):
            if other is not order and other.oco_group == order.oco_group:
                self._close(other, OrderStatus.CANCELED, ts_ns)

    def _trigger_price(self, order: Order, o: float, h: float, lo: float) -> float | None:
        """Price at which a market/stop order executes in this bar, before slippage (None = not yet)."""
        if order.order_type is OrderType.MARKET:
            return o
        if order.order_type is OrderType.LIMIT:
            return None
        stop = float(order.stop_price)  # type: ignore[arg-type]
        if order.side is Side.BUY:
            return o if o >= stop else (stop if h >= stop else None)
        return o if o <= stop else (stop if lo <= stop else None)

    def _limit_price(self, order: Order, start: float, h: float, lo: float) -> float | None:
        """Fill price of a resting limit order whose price path starts at ``start`` (the open or a trigger)."""
        limit = float(order.price)  # type: ignore[arg-type]
        if order.side is Side.BUY:
            return start if start <= limit else (limit if lo <= limit else None)
        return start if start >= limit else (limit if h >= limit else None)

    def _try_fill(
        self, order: Order, ts_ns: int, o: float, h: float, lo: float, v: float, position: float, cash: float
    ) -> Fill | None:
        liquidity = Liquidity.TAKER
        if order.order_type is OrderType.LIMIT:
            price = self._limit_price(order, o, h, lo)
            liquidity = Liquidity.MAKER if price is not None and price != o else Liquidity.TAKER
        elif order.order_type is OrderType.STOP_LIMIT:
            if not order.triggered:
                start = self._trigger_price(order, o, h, lo)
                if start is None:
                    return None
                order.triggered = True
                price = self._limit_price(order, start, h, lo)
            else:
                price = self._limit_price(order, o, h, lo)
            liquidity = Liquidity.MAKER
        else:
            price = self._trigger_price(order, o, h, lo)
        if price is None:
            return None

        remaining = order.remaining
        whole = qty = float(remaining)
        if self.config.max_volume_share is not None and v > 0:
            cap = self.config.max_volume_share * (v / price if self.config.volume_in_quote else v)
            qty = min(qty, cap)
        if liquidity is Liquidity.TAKER:
            slip = self.slippage.fraction(qty, price, h, lo, v)
            price = price * (1 + slip) if order.side is Side.BUY else price * (1 - slip)
        fill_price = self.instrument.round_price(price)
        short_of_cash = False
        # A leveraged instrument is bought on margin, which the gatekeeper checks before the order is sent.
        if (order.side is Side.BUY and self.config.cash_only and position >= 0 and not order.reduce_only
                and self.instrument.leverage <= 1.0):
            affordable = self._affordable(cash, float(fill_price), liquidity)
            short_of_cash = affordable < qty
            qty = min(qty, affordable)
        # Uncapped, the fill is exactly the remainder: a float round trip of a large quantity (1e12 units
        # of a micro-priced coin) can land a lot above it, which apply_fill rightly refuses as an overfill.
        quantity = remaining if qty >= whole else min(self.instrument.round_quantity(qty), remaining)
        if quantity <= 0:
            if short_of_cash:  # as a venue would: insufficient balance rejects the rest of the order
                self._close(order, OrderStatus.CANCELED, ts_ns)
                order.reject_reason = "insufficient cash"
            return None
        if order.time_in_force is TimeInForce.FOK and quantity < order.remaining:
            return None
        fee = self.instrument.round_money(self.commission.fee(float(quantity), float(fill_price), liquidity))
        apply_fill(order, quantity, fill_price, ts_ns)
        if order.status is OrderStatus.FILLED and order in self.open_orders:
            self.open_orders.remove(order)
            self._eligible_from.pop(order.client_order_id, None)
        elif short_of_cash and order.status.is_open:
            self._close(order, OrderStatus.CANCELED, ts_ns)  # the unaffordable rest is not left working
            order.reject_reason = "insufficient cash for the remainder"
        self._fill_seq += 1
        # At most one fill per order per bar, so (order, bar time) names a fill stably across restarts.
        return Fill(order.client_order_id, order.symbol, order.side, quantity, fill_price, fee, ts_ns,
                    liquidity, order.strategy_id, f"{order.client_order_id}@{ts_ns}")

    def _affordable(self, cash: float, price: float, liquidity: Liquidity) -> float:
        if cash <= 0:
            return 0.0
        unit_cost = price + self.commission.fee(1.0, price, liquidity)
        qty = cash / unit_cost
        # Fixed per-order minimums make fee(q) nonlinear: step down until cash really covers it.
        for _ in range(8):
            if qty * price + self.commission.fee(qty, price, liquidity) <= cash:
                break
            qty *= 0.999
        return qty


def _intrabar_priority(order: Order) -> int:
    return _PRIORITY[order.order_type]


_PRIORITY = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.STOP_LIMIT: 2, OrderType.LIMIT: 3}
