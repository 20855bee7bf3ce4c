"""Crypto exchanges through ccxt: the Broker port (``mmats.ports.Broker``) for a real venue.

Why it is built this way:

- The client order id is the idempotency key end to end. It goes to the venue on every send
  (``clientOrderId``, which ccxt maps to each exchange's own field), and a venue that answers
  "duplicate" is asked for the order it already holds. Not yet true: "a retried send never makes a
  second order" (a resend of a non-NEW order, or after a restart, is not asked first; docs/venues.md,
  "Known defects"), which is why the router does not route to this adapter.
- ccxt's exception tree is translated once, here, into the two outcomes the router's submitter
  (``mmats.routing.OrderSubmitter``) reasons about: *the venue certainly did not act* (network
  refused, 5xx, rate limit: retry) and *the answer was lost* (timeout: never resend, reconcile). A
  bad order, insufficient funds or refused credentials are final rejections with the venue's words.
- Quantities must be whole lots of the venue's step size (``instruments()`` gives the router the
  venue's own precision): an order off the lot is refused here, by name, rather than silently rounded
  (the venue would fill less than the order says, and the order could never be FILLED). Limit prices
  go through the venue's ``price_to_precision``.
- Money is ``Decimal`` from the venue's strings: ccxt's floats are read back through ``str`` so that
  ``0.1`` stays ``0.1``.
- Fills come from the venue's trade list, each with the venue's trade id as ``fill_id``, so a fill
  reported twice (in the order answer and again in the trade history) is booked once downstream.

What it does not do yet: the order router still routes to the paper venue only; wiring a live
Broker into the router (LIVE environment, fills polled or streamed into the router's batch) is the
next step, recorded in docs/venues.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt

from adapters.bar_source import decimal_places
from adapters.ccxt_client import make_exchange
from mmats.model import (
    Environment,
    Fill,
    Instrument,
    Liquidity,
    MarketType,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from mmats.orders import TRANSITIONS, apply_fill, transition
from mmats.ports import ReconcileReport
from mmats.routing import SubmitTimeout, VenueError

__all__ = ["CcxtBroker", "instrument_from_market", "status_of", "translate_error"]

# ccxt's unified order states -> ours (an open order with a fill is PARTIALLY_FILLED, see status_of)
_STATUS = {"open": OrderStatus.ACCEPTED, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
           "cancelled": OrderStatus.CANCELED, "rejected": OrderStatus.REJECTED, "expired": OrderStatus.EXPIRED}

#: Refused before the venue processed anything (rate limit or ban, request timestamp outside the window).
_NOT_PROCESSED = (ccxt.DDoSProtection, ccxt.InvalidNonce)
#: The venue's final word on this request.
_FINAL = (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended, ccxt.InsufficientFunds,
          ccxt.InvalidOrder, ccxt.BadSymbol, ccxt.BadRequest, ccxt.NotSupported, ccxt.OperationRejected)


def _refused(exc: BaseException) -> bool:
    """Whether the connection was never made (so nothing reached the venue): ccxt folds it into NetworkError."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def translate_error(exc: Exception, *, submitting: bool) -> VenueError:
    """One ccxt exception -> the submitter's vocabulary (``retryable``: the venue certainly did not act).

    While *submitting*, anything but a refusal before processing or a final answer is a lost answer
    (``SubmitTimeout``: the venue may hold the order, reconciliation finds out). That covers timeouts,
    5xx answers (Binance documents their outcome as unknown), dropped connections and answers ccxt does not
    classify. During a read or a cancel the same failures are only failed calls, safe to repeat.
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _FINAL):
        return VenueError(text, retryable=False)
    if isinstance(exc, _NOT_PROCESSED) or _refused(exc):
        return VenueError(text, retryable=True)
    if submitting:
        return SubmitTimeout(text)
    return VenueError(text, retryable=isinstance(exc, ccxt.OperationFailed))


def _is_duplicate(exc: Exception) -> bool:
    """Venues say "this client order id exists" in their own words; ccxt maps few of them."""
    if isinstance(exc, ccxt.DuplicateOrderId):
        return True
    text = str(exc).lower()
    return "duplicate order" in text or "duplicate clientorderid" in text or "clientorderid is duplicated" in text


def _dec(value: Any) -> Decimal | None:
    """A venue number as Decimal without float noise (ccxt hands out floats, strings or None)."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def instrument_from_market(market: Mapping[str, Any], kind: MarketType = MarketType.CRYPTO) -> Instrument:
    """What the venue accepts for one symbol, from ccxt's market structure (tick/step-size precision)."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = _dec(precision.get("price")) or Decimal("0.01")
    step = _dec(precision.get("amount")) or Decimal("0.00000001")
    if tick >= 1 and tick == tick.to_integral_value() and "." not in str(precision.get("price")):
        tick = Decimal(1).scaleb(-int(tick))  # ccxt's DECIMAL_PLACES mode: 2 means 0.01
    if step >= 1 and step == step.to_integral_value() and "." not in str(precision.get("amount")):
        step = Decimal(1).scaleb(-int(step))
    min_cost = _dec((limits.get("cost") or {}).get("min")) or Decimal(0)
    return Instrument(str(market["symbol"]), kind, str(market["quote"]), decimal_places(tick),
                      decimal_places(step), step, min_cost)


def status_of(info: Mapping[str, Any]) -> OrderStatus:
    """The venue's status of one order, from ccxt's unified order structure."""
    status = _STATUS.get(str(info.get("status") or "").lower(), OrderStatus.UNKNOWN)
    filled = _dec(info.get("filled")) or Decimal(0)
    if status is OrderStatus.ACCEPTED and filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


class CcxtBroker:
    """One ccxt exchange (spot) as an execution venue; see the module docstring for the rules."""

    def __init__(self, exchange: Any, *, name: str, environment: Environment,
                 market: MarketType = MarketType.CRYPTO, clock: Callable[[], int] = time.time_ns) -> None:
        if environment is Environment.BACKTEST:
            raise ValueError("a ccxt venue is PAPER (an exchange's test account) or LIVE, never BACKTEST")
        self.exchange = exchange
        self.name = name
        self.environment = environment
        self.market = market
        self.clock = clock
        self.orders: dict[str, Order] = {}  # client order id -> our order, for everything sent from here
        self._by_venue_id: dict[str, str] = {}  # venue order id -> client order id
        self._uncertain: set[str] = set()  # client ids whose last send failed without a final answer
        self._lock = threading.RLock()  # one ccxt client, called from the router's message and timer threads
        self.sends = 0
        self.duplicates = 0

    @classmethod
    def connect(cls, exchange_id: str, *, api_key: str, secret: str, environment: Environment,
                name: str | None = None, api_base: str | None = None, timeout_ms: int = 10_000,
                options: Mapping[str, Any] | None = None) -> CcxtBroker:
        """Build the ccxt client (``adapters.ccxt_client.make_exchange``) with the account's keys."""
        exchange = make_exchange(exchange_id, api_key=api_key, secret=secret, api_base=api_base,
                                 timeout_ms=timeout_ms, options=options)
        return cls(exchange, name=name or exchange_id, environment=environment)

    # ------------------------------------------------------------------------------------ markets

    def instruments(self, symbols: Iterable[str] | None = None) -> dict[str, Instrument]:
        """Instruments for ``symbols`` (every spot market when None); unknown symbols are named."""
        markets = self._call(self.exchange.load_markets)
        wanted = list(symbols) if symbols is not None else sorted(markets)
        unknown = [s for s in wanted if s not in markets]
        if unknown:
            raise VenueError(f"{self.name}: no market {', '.join(unknown)}", retryable=False)
        return {s: instrument_from_market(markets[s], self.market) for s in wanted}

    # ------------------------------------------------------------------------------------- orders

    def send(self, order: Order) -> bool:
        """Send ``order`` once: True when the venue took it now, False when it already held this client id.

        Raises ``VenueError`` (retryable or final) or ``SubmitTimeout``; the caller's submitter decides
        what happens next. On success ``order`` carries the venue's id, status and any immediate fills.
        """
        self._call(self.exchange.load_markets)
        cid = order.client_order_id
        self.orders[cid] = order
        kind = {OrderType.MARKET: "market", OrderType.LIMIT: "limit"}.get(order.order_type)
        if kind is None:
            order_type = order.order_type.value
            raise VenueError(f"{self.name}: {order_type} orders are not sent to ccxt venues (the router "
                             "keeps stops locally)", retryable=False)
        step = instrument_from_market(self._call(self.exchange.market, order.symbol), self.market).lot_size
        amount = abs(order.quantity)
        if amount <= 0 or amount % step != 0:
            raise VenueError(f"{self.name}: quantity {order.quantity} {order.symbol} is not a positive whole "
                             f"number of the venue's lot size {step}", retryable=False)
        price = None
        if order.order_type is OrderType.LIMIT:
            if order.price is None:
                raise VenueError(f"{self.name}: LIMIT order {cid} has no price", retryable=False)
            price = self.exchange.price_to_precision(order.symbol, str(order.price))
        params: dict[str, Any] = {"clientOrderId": cid}
        if order.order_type is OrderType.LIMIT:
            params["timeInForce"] = order.time_in_force.value if order.time_in_force.value != "DAY" else "GTC"
        if cid in self._uncertain:
            # A previous send of this id failed in a way that may still have reached the venue, and
            # Binance, for one, accepts a client id again once the first order is no longer open: ask first.
            try:
                held = self._fetch(cid, order.symbol)
            except VenueError as exc:  # cannot tell: never a rejection, reconciliation asks again later
                raise SubmitTimeout(f"before resending, could not ask the venue for {cid}: {exc}") from exc
            if held is not None:
                self._uncertain.discard(cid)
                self.duplicates += 1
                self._apply(order, held)
                return False
        self.sends += 1
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, self.clock())
        try:
            with self._lock:
                info = self.exchange.create_order(order.symbol, kind, order.side.value.lower(), str(amount),
                                                  price, params)
        except Exception as exc:
            if _is_duplicate(exc):
                self.duplicates += 1
                self.refresh(order)
                return False
            error = translate_error(exc, submitting=True)
            if error.retryable or isinstance(error, SubmitTimeout):
                self._uncertain.add(cid)
            raise error from exc
        self._uncertain.discard(cid)
        self._apply(order, info)
        return True

    def submit(self, order: Order) -> Order:
        """The Broker port's submit: one send, idempotent per client order id."""
        self.send(order)
        return order

    def cancel(self, client_order_id: str) -> bool:
        """Cancel at the venue; False when the venue no longer has it open (filled, canceled, unknown)."""
        order = self.orders.get(client_order_id)
        symbol = order.symbol if order is not None else None
        try:
            info = self._call(self.exchange.cancel_order, None, symbol, {"origClientOrderId": client_order_id},
                              allow=(ccxt.OrderNotFound,))
        except ccxt.OrderNotFound:
            if order is not None:
                self.refresh(order)
            return False
        if order is not None:
            self._apply(order, info)
        return True

    def refresh(self, order: Order) -> Order:
        """Bring ``order`` up to what the venue says (status, fills): the answer to a lost or duplicate send."""
        info = self._fetch(order.client_order_id, order.symbol)
        if info is None:
            if not order.status.is_terminal:
                transition(order, OrderStatus.REJECTED, self.clock(), reason=f"{self.name}: order not found")
            return order
        self._apply(order, info)
        return order

    def order_status(self, client_order_id: str, symbol: str | None = None) -> OrderStatus | None:
        """What reconciliation asks about an UNKNOWN order (``OrderSubmitter.reconcile``'s lookup).

        None means the venue has no such order (the send never arrived); a failed read is UNKNOWN,
        so the order is asked about again rather than wrongly rejected.
        """
        order = self.orders.get(client_order_id)
        try:
            info = self._fetch(client_order_id, symbol or (order.symbol if order is not None else None))
        except VenueError:
            return OrderStatus.UNKNOWN
        if info is None:
            return None
        if order is not None:
            self._apply(order, info)
        return status_of(info)

    def open_orders(self) -> list[Order]:
        """The venue's working orders, ours (by client id) merged with any placed elsewhere."""
        out: list[Order] = []
        for info in self._call(self.exchange.fetch_open_orders):
            cid = str(info.get("clientOrderId") or info.get("id"))
            order = self.orders.get(cid) or self._order_from(info)
            self._apply(order, info)
            out.append(order)
        return out

    def positions(self) -> list[Position]:
        """Spot holdings as long positions of the markets quoted in a held currency (cash is not one)."""
        self._call(self.exchange.load_markets)
        balance = self._call(self.exchange.fetch_balance)
        totals = balance.get("total") or {}
        out: list[Position] = []
        for symbol, market in sorted(self.exchange.markets.items()):
            if not market.get("spot", True):
                continue
            qty = _dec(totals.get(market["base"]))
            if qty and qty > 0 and not any(p.symbol.split("/")[0] == market["base"] for p in out):
                out.append(Position(symbol, self.market, qty))
        return out

    def cash(self) -> dict[str, Decimal]:
        balance = self._call(self.exchange.fetch_balance)
        return {c: d for c, v in (balance.get("total") or {}).items() if (d := _dec(v)) is not None and d != 0}

    def fills(self, since_ns: int, symbols: Iterable[str] | None = None) -> list[Fill]:
        """The venue's executions since ``since_ns`` for ``symbols`` (default: symbols of orders sent here)."""
        wanted = sorted(set(symbols) if symbols is not None else {o.symbol for o in self.orders.values()})
        out: list[Fill] = []
        for symbol in wanted:
            trades = self._call(self.exchange.fetch_my_trades, symbol, since_ns // 1_000_000)
            out += [f for t in trades if (f := self._fill_from(t)) is not None]
        out.sort(key=lambda f: (f.ts_ns, f.fill_id))
        return out

    def reconcile(self, since_ns: int) -> ReconcileReport:
        """Open orders, holdings, cash and executions since ``since_ns``, as the venue reports them now."""
        return ReconcileReport(self.clock(), tuple(self.open_orders()), tuple(self.positions()),
                               tuple(self.fills(since_ns)), self.cash())

    # ----------------------------------------------------------------------------------- internals

    def _call(self, fn: Callable[..., Any], *args: Any, allow: tuple[type[Exception], ...] = ()) -> Any:
        try:
            with self._lock:
                return fn(*args)
        except allow:
            raise
        except Exception as exc:
            raise translate_error(exc, submitting=False) from exc

    def _fetch(self, client_order_id: str, symbol: str | None) -> dict[str, Any] | None:
        try:
            info = self._call(self.exchange.fetch_order, None, symbol, {"origClientOrderId": client_order_id},
                              allow=(ccxt.OrderNotFound,))
        except ccxt.OrderNotFound:
            return None
        return dict(info)

    def _order_from(self, info: Mapping[str, Any]) -> Order:
        """An order the venue has that we did not send from this process (placed by hand, or before a restart)."""
        cid = str(info.get("clientOrderId") or info.get("id"))
        kind = OrderType.LIMIT if str(info.get("type")).lower() == "limit" else OrderType.MARKET
        order = Order(cid, str(info["symbol"]), Side(str(info["side"]).upper()), _dec(info.get("amount")) or Decimal(0),
                      kind, _dec(info.get("price")) if kind is OrderType.LIMIT else None,
                      status=OrderStatus.SUBMITTED, created_ns=int(info.get("timestamp") or 0) * 1_000_000)
        self.orders[cid] = order
        return order

    def _apply(self, order: Order, info: Mapping[str, Any]) -> None:
        """Move ``order`` to the venue's state along legal edges: id, acknowledgement, fills, final status."""
        ts = int(info.get("lastTradeTimestamp") or info.get("timestamp") or 0) * 1_000_000 or self.clock()
        venue_id = info.get("id")
        if venue_id:
            order.venue_order_id = str(venue_id)
            self._by_venue_id[str(venue_id)] = order.client_order_id
        if order.status is OrderStatus.NEW:
            transition(order, OrderStatus.SUBMITTED, ts)
        target = status_of(info)
        if order.status.is_terminal or target is OrderStatus.UNKNOWN:
            return
        if order.status in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN) and target is not OrderStatus.REJECTED:
            transition(order, OrderStatus.ACCEPTED, ts)
        filled = min(_dec(info.get("filled")) or Decimal(0), order.quantity)
        if filled > order.filled_quantity:
            avg = _dec(info.get("average")) or _dec(info.get("price")) or order.price or Decimal(0)
            delta = filled - order.filled_quantity
            # the price of the new part: the venue's average over everything minus what we booked
            booked = order.filled_quantity * (order.avg_fill_price or Decimal(0))
            price = (avg * filled - booked) / delta if avg > 0 else avg
            apply_fill(order, delta, price if price > 0 else avg, ts)
        if target in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED) \
                and target in TRANSITIONS[order.status]:
            reason = f"{self.name}: {target.value.lower()} at the venue"
            transition(order, target, ts, reason=reason)

    def _fill_from(self, trade: Mapping[str, Any]) -> Fill | None:
        trade_id = str(trade.get("id") or "")
        if not trade_id:
            return None
        venue_id = str(trade.get("order") or "")
        cid = self._by_venue_id.get(venue_id, str(trade.get("clientOrderId") or venue_id))
        fee = (trade.get("fee") or {}).get("cost")
        order = self.orders.get(cid)
        return Fill(cid, str(trade["symbol"]), Side(str(trade["side"]).upper()), _dec(trade["amount"]) or Decimal(0),
                    _dec(trade["price"]) or Decimal(0), _dec(fee) or Decimal(0),
                    int(trade.get("timestamp") or 0) * 1_000_000,
                    Liquidity.MAKER if trade.get("takerOrMaker") == "maker" else Liquidity.TAKER,
                    order.strategy_id if order is not None else "", f"{self.name}:{trade_id}")
