"""The order lifecycle: one transition table, fills, idempotent client ids, brackets.

Every component that touches an order (simulated broker, paper venue, order router, reconciliation)
moves it through ``transition`` and ``apply_fill`` only, so an order can never be in a state the table
does not explain, and a fill can never exceed what was ordered. Both failures are bugs in the caller,
not input problems, hence exceptions (``IllegalTransition``) rather than values.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from mmats.errors import IllegalTransition, ValidationError
from mmats.model import Order, OrderStatus, OrderType, Side, TimeInForce

S = OrderStatus

#: The one table of legal moves. UNKNOWN (a submit or cancel whose answer was lost) resolves to
#: whatever the venue reports during reconciliation. A fill may race an acknowledgement or a cancel,
#: which is why SUBMITTED and PENDING_CANCEL can move straight to (partially) filled.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.SUBMITTED, S.REJECTED, S.CANCELED}),
    S.SUBMITTED: frozenset({S.ACCEPTED, S.REJECTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL,
                            S.CANCELED, S.EXPIRED, S.UNKNOWN}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED,
                           S.REJECTED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED,
                                   S.UNKNOWN}),
    S.PENDING_CANCEL: frozenset({S.CANCELED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.EXPIRED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED,
                          S.REJECTED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


class Overfill(IllegalTransition):
    """A fill larger than the order's remaining quantity: the venue or the simulator double-counted."""


def can_transition(current: OrderStatus, new: OrderStatus) -> bool:
    return new in TRANSITIONS[current]


def transition(
    order: Order,
    new_status: OrderStatus,
    ts_ns: int,
    *,
    reason: str = "",
    venue_order_id: str | None = None,
) -> Order:
    """Move ``order`` along one edge of the table; anything else is a bug and raises."""
    if new_status not in TRANSITIONS[order.status]:
        raise IllegalTransition(
            f"order {order.client_order_id}: {order.status.value} -> {new_status.value} is not a legal transition"
        )
    if new_status is S.FILLED and order.filled_quantity != order.quantity:
        raise IllegalTransition(
            f"order {order.client_order_id}: FILLED with {order.filled_quantity} of {order.quantity} filled"
        )
    order.status = new_status
    order.updated_ns = ts_ns
    if reason and new_status in (S.REJECTED, S.CANCELED, S.EXPIRED):
        order.reject_reason = reason
    if venue_order_id is not None:
        order.venue_order_id = venue_order_id
    return order


def apply_fill(order: Order, quantity: Decimal, price: Decimal, ts_ns: int) -> Order:
    """Book one execution: filled quantity, volume-weighted average price and the resulting status."""
    if quantity <= 0 or price <= 0:
        raise IllegalTransition(f"order {order.client_order_id}: fill of {quantity} @ {price} is not positive")
    remaining = order.quantity - order.filled_quantity
    if quantity > remaining:
        raise Overfill(
            f"order {order.client_order_id}: fill of {quantity} exceeds the remaining {remaining} "
            f"(quantity {order.quantity}, filled {order.filled_quantity})"
        )
    new_status = S.FILLED if quantity == remaining else S.PARTIALLY_FILLED
    if new_status not in TRANSITIONS[order.status]:
        raise IllegalTransition(f"order {order.client_order_id}: cannot fill while {order.status.value}")
    filled = order.filled_quantity + quantity
    prev = order.avg_fill_price
    order.avg_fill_price = price if prev is None else (prev * order.filled_quantity + price * quantity) / filled
    order.filled_quantity = filled
    order.status = new_status
    order.updated_ns = ts_ns
    return order


# ---------------------------------------------------------------------------------- client order ids

_UNSAFE = re.compile(r"[^A-Za-z0-9]")


def client_order_id(strategy_id: str, signal_id: str, leg: str = "entry") -> str:
    """``<strategy>-<leg>-<16 hex>``, at most 36 characters (the tightest venue limit we know, Binance).

    SHA-256 rather than ``hash()`` because the id must be the same in every process and after a
    restart: a retried signal must find its order, not create a twin. The readable prefix is only for
    humans; the hash covers the full, unsanitised inputs.
    """
    digest = hashlib.sha256("\x1f".join((strategy_id, signal_id, leg)).encode()).hexdigest()[:16]
    return f"{_readable(strategy_id, 10, 's')}-{_readable(leg, 8, 'leg')}-{digest}"


@functools.lru_cache(maxsize=1024)
def _readable(text: str, width: int, empty: str) -> str:
    """The id's human part: a few strategy ids and legs, sanitised once each rather than on every order."""
    return _UNSAFE.sub("", text)[:width] or empty


class OrderRegistry:
    """Orders keyed by client id: the idempotency boundary of the order router.

    ``order_for`` builds an order only the first time a (strategy, signal, leg) is seen; a duplicate or
    retried signal gets the existing order back, whatever state it is in.
    """

    __slots__ = ("_orders",)

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}

    def order_for(
        self, strategy_id: str, signal_id: str, leg: str, build: Callable[[str], Order]
    ) -> tuple[Order, bool]:
        """The order of this signal leg, and whether it was created by this call."""
        cid = client_order_id(strategy_id, signal_id, leg)
        existing = self._orders.get(cid)
        if existing is not None:
            return existing, False
        order = build(cid)
        if order.client_order_id != cid:
            raise IllegalTransition(f"order builder ignored the client id {cid} (built {order.client_order_id})")
        self._orders[cid] = order
        return order, True

    def register(self, order: Order) -> tuple[Order, bool]:
        """Store an order built elsewhere; a known client id returns the stored order unchanged."""
        existing = self._orders.get(order.client_order_id)
        if existing is not None:
            return existing, False
        self._orders[order.client_order_id] = order
        return order, True

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def __iter__(self) -> Iterator[Order]:
        return iter(self._orders.values())

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return [o for o in self._orders.values()
                if o.status.is_open and (strategy_id is None or o.strategy_id == strategy_id)]

    def oco_siblings(self, order: Order) -> list[Order]:
        if order.oco_group is None:
            return []
        return [o for o in self._orders.values()
                if o.oco_group == order.oco_group and o.client_order_id != order.client_order_id]


# ---------------------------------------------------------------------------------------- brackets


@dataclass(frozen=True, slots=True)
class Bracket:
    """An entry with its protective children; the children stay NEW (inactive) until the entry fills."""

    entry: Order
    stop_loss: Order | None
    take_profit: Order | None

    @property
    def children(self) -> list[Order]:
        return [o for o in (self.stop_loss, self.take_profit) if o is not None]


def make_bracket(
    entry: Order,
    stop_loss_price: Decimal | None,
    take_profit_price: Decimal | None,
    ts_ns: int | None = None,
) -> Bracket:
    """Entry + STOP stop-loss + LIMIT take-profit, one-cancels-other, reduce-only.

    Levels on the wrong side of each other (a long whose stop is above its target) are refused as bad
    input: such a bracket would close the position at once.
    """
    if stop_loss_price is not None and take_profit_price is not None:
        wrong = stop_loss_price >= take_profit_price if entry.side is Side.BUY else (
            stop_loss_price <= take_profit_price)
        if wrong:
            raise ValidationError(
                f"bracket {entry.client_order_id}: stop loss {stop_loss_price} and take profit {take_profit_price} "
                f"are on the wrong sides for a {entry.side.value} entry"
            )
    ref = entry.price if entry.order_type is OrderType.LIMIT else None
    if ref is not None:
        sl_bad = stop_loss_price is not None and (
            stop_loss_price >= ref if entry.side is Side.BUY else stop_loss_price <= ref)
        tp_bad = take_profit_price is not None and (
            take_profit_price <= ref if entry.side is Side.BUY else take_profit_price >= ref)
        if sl_bad or tp_bad:
            raise ValidationError(f"bracket {entry.client_order_id}: levels on the wrong side of the entry {ref}")
    ts = entry.created_ns if ts_ns is None else ts_ns

    def child(leg: str, kind: OrderType, level: Decimal) -> Order:
        return Order(
            client_order_id(entry.strategy_id, entry.signal_id, leg), entry.symbol, entry.side.opposite,
            entry.quantity, kind,
            price=level if kind is OrderType.LIMIT else None,
            stop_price=level if kind is OrderType.STOP else None,
            time_in_force=TimeInForce.GTC,
            strategy_id=entry.strategy_id, signal_id=entry.signal_id, parent_id=entry.client_order_id,
            oco_group=entry.client_order_id, reduce_only=True, created_ns=ts, updated_ns=ts,
        )

    sl = None if stop_loss_price is None else child("sl", OrderType.STOP, stop_loss_price)
    tp = None if take_profit_price is None else child("tp", OrderType.LIMIT, take_profit_price)
    return Bracket(entry, sl, tp)


def children_to_activate(parent: Order, children: list[Order]) -> list[Order]:
    """Once the entry is FILLED, its inactive children, resized to what was actually filled."""
    if parent.status is not S.FILLED:
        return []
    out = []
    for c in children:
        if c.status is S.NEW and c.parent_id == parent.client_order_id:
            c.quantity = parent.filled_quantity
            out.append(c)
    return out


def on_child_filled(child: Order, siblings: list[Order]) -> list[Order]:
    """The OCO rule: any fill of one child means the other open children of its group must be canceled.

    Returns the orders to cancel (the caller sends the cancels and journals them); inactive (NEW)
    siblings are included, since they must never be activated afterwards.
    """
    if child.oco_group is None or child.filled_quantity <= 0:
        return []
    return [s for s in siblings
            if s.oco_group == child.oco_group and s.client_order_id != child.client_order_id and s.status.is_open]
