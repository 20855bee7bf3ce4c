"""Signal -> order translation shared by the backtest engine and the live gatekeeper.

Parity between backtest and paper trading is a tested property; it holds by construction because both
call these functions: the same target-exposure sizing, the same rounding, the same order ids and the
same bracket children.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mmats.model import Instrument, Order, OrderType, Side, SignalAction, TimeInForce, TradeSignal
from mmats.orders import client_order_id
from mmats.risk.decision import OrderIntent


@dataclass(frozen=True, slots=True)
class SizedOrder:
    side: Side
    quantity: Decimal
    reduces_position: bool


def size_signal(
    signal: TradeSignal, price: float, cash: float, position: float, allocation: float, instrument: Instrument,
    equity: float | None = None,
) -> SizedOrder | None:
    """The order that moves ``position`` to the signal's target exposure of current equity.

    ``price`` is the close the strategy decided on; quantities round down to the lot. None when the
    target is already met (so a repeated signal creates nothing). ``position`` is what THIS strategy
    holds; ``equity`` is the whole account's (default: cash plus that position, the one-strategy,
    one-symbol case of a backtest).
    """
    if equity is None:
        equity = cash + position * price
    target = 0.0 if signal.action is SignalAction.CLOSE else signal.target_exposure * allocation
    target_qty = target * max(equity, 0.0) / price
    delta = target_qty - position
    quantity = instrument.round_quantity(abs(delta))
    if quantity <= 0:
        return None
    reduces = position != 0 and (delta > 0) != (position > 0) and abs(delta) <= abs(position) + 1e-12
    return SizedOrder(Side.BUY if delta > 0 else Side.SELL, quantity, reduces)


def intent_for(
    signal: TradeSignal, sized: SizedOrder, instrument: Instrument, strategy_id: str, signal_id: str,
    price: float, ts_ns: int,
) -> OrderIntent:
    return OrderIntent(strategy_id, signal_id, instrument, sized.side, sized.quantity,
                       instrument.round_price(price), ts_ns, sized.reduces_position, signal)


def entry_order(signal: TradeSignal, intent: OrderIntent, quantity: Decimal, ts_ns: int) -> Order:
    """The entry order for an intent; ``signal.metadata`` may ask for LIMIT/STOP types and a TIF."""
    meta = signal.metadata
    inst = intent.instrument
    price = meta.get("limit_price")
    stop = meta.get("stop_price")
    return Order(
        client_order_id=client_order_id(intent.strategy_id, intent.signal_id, "entry"),
        symbol=intent.symbol,
        side=intent.side,
        quantity=quantity,
        order_type=OrderType(str(meta["order_type"]).upper()) if "order_type" in meta else OrderType.MARKET,
        price=None if price is None else inst.round_price(float(price)),
        stop_price=None if stop is None else inst.round_price(float(stop)),
        time_in_force=TimeInForce(str(meta["time_in_force"]).upper()) if "time_in_force" in meta else TimeInForce.GTC,
        strategy_id=intent.strategy_id,
        signal_id=intent.signal_id,
        created_ns=ts_ns,
        updated_ns=ts_ns,
    )


def bracket_children(signal: TradeSignal, parent: Order, instrument: Instrument, ts_ns: int) -> list[Order]:
    """Stop-loss (STOP) and take-profit (LIMIT) children: reduce-only, one-cancels-other."""
    children: list[Order] = []
    legs = (("sl", signal.stop_loss, OrderType.STOP), ("tp", signal.take_profit, OrderType.LIMIT))
    for leg, level, kind in legs:
        if level is None:
            continue
        px = instrument.round_price(level)
        children.append(Order(
            client_order_id(parent.strategy_id, parent.signal_id, leg), parent.symbol, parent.side.opposite,
            parent.quantity, kind,
            price=px if kind is OrderType.LIMIT else None,
            stop_price=px if kind is OrderType.STOP else None,
            strategy_id=parent.strategy_id, signal_id=parent.signal_id, parent_id=parent.client_order_id,
            oco_group=parent.client_order_id, reduce_only=True, created_ns=ts_ns, updated_ns=ts_ns,
        ))
    return children


def flatten_order(symbol: str, quantity: Decimal, ts_ns: int, reason: str = "kill_switch") -> Order:
    """A reduce-only market order that takes a signed position to flat."""
    return Order(client_order_id(reason, str(ts_ns), f"flatten-{symbol}"), symbol,
                 Side.SELL if quantity > 0 else Side.BUY, abs(quantity), reduce_only=True,
                 strategy_id=reason, signal_id=str(ts_ns), created_ns=ts_ns, updated_ns=ts_ns)
