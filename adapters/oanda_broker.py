"""Forex and CFD orders on OANDA v20 through oandapyV20: the kernel's ``VenueClient`` for one OANDA account.

Why it is built this way:

- **A translator, nothing more.** One call to OANDA becomes one ``VenueOrder`` / ``VenueFill`` / ... or one
  typed ``VenueError``; the adapter keeps no orders. Journaling, ask-before-resend, UNKNOWN until reconciled,
  breaker and rate limits live once in ``mmats.execution.live`` for every venue.
- **Our client order id travels on the order** (``clientExtensions.id``) **and on the trade it opens**
  (``tradeClientExtensions.id``), so OANDA finds the order by ``@<client id>`` and every fill carries it back
  (``clientOrderID``), even after a restart that lost every venue id.
- **Units are signed for the side** (buy +, sell -), as OANDA takes them. MARKET, LIMIT and STOP are sent;
  a take-profit (a LIMIT child) and a stop-loss (a STOP child) ride on the entry as ``takeProfitOnFill`` /
  ``stopLossOnFill`` and close the whole trade, so each must be for the entry's full quantity.
  STOP_LIMIT is refused before sending: OANDA's nearest is a STOP with a ``priceBound``, which does not rest
  as a limit once triggered.
- **OANDA answers a market order it could not fill with HTTP 201** and an ``orderCancelTransaction``
  (INSUFFICIENT_MARGIN, MARKET_HALTED, ...), and a request it refuses with 400 and an
  ``orderRejectTransaction``: both become a final, typed ``VenueError`` (the order never filled).
  CLIENT_ORDER_ID_ALREADY_EXISTS is ``DuplicateOrder``.
- **While placing, anything that may have reached OANDA** (timeout, 5xx, a dropped connection, an answer
  that cannot be read) is ``SubmitTimeout``; only a connection that was never made is safe to repeat.
  During reads and cancels the same failures are retryable VENUE_UNAVAILABLE errors. 429 is RATE_LIMITED
  with the Retry-After header, which oandapyV20's ``V20Error`` drops: a response hook on its session keeps it.
- **A fill is an ORDER_FILL transaction**, read with OANDA's own paging (``/transactions`` lists ``idrange``
  pages; each page is fetched through the configured address, never the host printed in the answer).
  Its fee is the ``commission`` (plus any guaranteed-stop execution fee) in the account currency;
  financing is not a fill fee (it accrues on open trades daily) and is not reported here.
- **Symbols** may be ``EUR/USD`` or ``EUR_USD``; OANDA's names are used on the wire and every report comes back
  in the form the venue was built with.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from adapters.oanda_market_data import OandaMarketData
from mmats.errors import ValidationError
from mmats.execution.venue import (
    AccountCheck,
    DuplicateOrder,
    RejectKind,
    SubmitTimeout,
    VenueCapabilities,
    VenueError,
    VenueFill,
    VenueOrder,
    VenuePosition,
)
from mmats.model import Environment, Instrument, MarketType, Order, OrderStatus, OrderType, Side, TimeInForce

__all__ = ["OandaVenue", "oanda_instrument", "reject_kind"]

#: OANDA's largest page of transactions.
MAX_PAGE = 1000
_SENT_TYPES = {OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT", OrderType.STOP: "STOP"}
#: OANDA order types as MMATS sees them (take-profit rests like a limit, stop-loss triggers like a stop).
_READ_TYPES = {"MARKET": OrderType.MARKET, "FIXED_PRICE": OrderType.MARKET, "LIMIT": OrderType.LIMIT,
               "MARKET_IF_TOUCHED": OrderType.LIMIT, "TAKE_PROFIT": OrderType.LIMIT, "STOP": OrderType.STOP,
               "STOP_LOSS": OrderType.STOP, "GUARANTEED_STOP_LOSS": OrderType.STOP,
               "TRAILING_STOP_LOSS": OrderType.STOP}
_STOP_LIKE = {"STOP", "STOP_LOSS", "GUARANTEED_STOP_LOSS", "TRAILING_STOP_LOSS"}
_TIME_IN_FORCE = {TimeInForce.GTC: "GTC", TimeInForce.DAY: "GFD", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
#: Reject / cancel reasons with a kind a user can act on; the rest are matched by pattern in ``reject_kind``.
_KINDS = {
    "INSUFFICIENT_MARGIN": RejectKind.INSUFFICIENT_FUNDS,
    "MARGIN_CHECK_VIOLATION": RejectKind.INSUFFICIENT_FUNDS,
    "MARKET_HALTED": RejectKind.MARKET_CLOSED,
    "INSTRUMENT_NOT_TRADEABLE": RejectKind.MARKET_CLOSED,
    "INSTRUMENT_PRICE_UNKNOWN": RejectKind.MARKET_CLOSED,
    "INSTRUMENT_MISSING": RejectKind.INVALID_SYMBOL,
    "INSTRUMENT_UNKNOWN": RejectKind.INVALID_SYMBOL,
    "POSITION_SIZE_EXCEEDED": RejectKind.INVALID_SIZE,
    "ACCOUNT_POSITION_VALUE_LIMIT_EXCEEDED": RejectKind.INVALID_SIZE,
    "POSITION_CLOSEOUT_FAILED": RejectKind.INVALID_SIZE,
    "TIME_IN_FORCE_INVALID": RejectKind.UNSUPPORTED,
    "POSITION_FILL_INVALID": RejectKind.UNSUPPORTED,
}
_NO_SUCH_ORDER = {"ORDER_DOESNT_EXIST", "NO_SUCH_ORDER"}


def oanda_instrument(symbol: str) -> str:
    """``EUR/USD`` -> ``EUR_USD``; an OANDA name is left as it is."""
    return symbol.strip().replace("/", "_").upper()


def reject_kind(reason: str) -> RejectKind:
    """What a user can do about one of OANDA's reject or cancel reasons (``TransactionRejectReason``,
    ``OrderCancelReason``; OANDA spells one ``UNITS_MIMIMUM_NOT_MET``)."""
    if reason in _KINDS:
        return _KINDS[reason]
    if "UNITS" in reason:
        return RejectKind.INVALID_SIZE
    if "PRICE" in reason or "DISTANCE" in reason:
        return RejectKind.INVALID_PRICE
    if (reason.startswith("ACCOUNT_") and "LOCKED" in reason) or reason == "ACCOUNT_NOT_ACTIVE":
        return RejectKind.PERMISSION_MISSING
    return RejectKind.OTHER


def _decimal(value: Any, default: Decimal | None = None) -> Decimal:
    """Money and units arrive as strings; a missing or unreadable one is the default (or an error)."""
    if value is None or value == "":
        if default is None:
            raise InvalidOperation(f"no number in {value!r}")
        return default
    return Decimal(str(value))


def _ns(text: Any) -> int:
    """OANDA's RFC 3339 times carry nanoseconds (``2016-10-24T21:48:18.593753865Z``); UNIX seconds also read."""
    raw = str(text or "")
    if not raw:
        return 0
    if raw[0].isdigit() and "T" not in raw:
        seconds, _, fraction = raw.partition(".")
        return int(seconds) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)
    whole = datetime.strptime(raw[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = raw[20:].rstrip("Z").split("+")[0].split("-")[0] if len(raw) > 19 and raw[19] == "." else ""
    return int(whole.timestamp()) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(max(ns, 0), 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _text(value: Decimal) -> str:
    """Units and prices as OANDA takes them: plain decimals, no exponent."""
    text = f"{value.normalize():f}"
    return "0" if text == "-0" else text


def _parse_error(message: str) -> dict[str, Any]:
    import json

    try:
        body = json.loads(message)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _never_sent(exc: BaseException) -> bool:
    """True only when the connection itself was never made (refused, connect timeout): nothing reached OANDA."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: BaseException | None = exc
    while seen is not None:
        reason = getattr(seen.args[0], "reason", None) if seen.args else None
        if isinstance(seen, NewConnectionError) or isinstance(reason, NewConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class OandaVenue:
    """One OANDA v20 account as the live execution needs it (``mmats.execution.venue.VenueClient``)."""

    def __init__(self, api: Any, account_id: str, *, environment: Environment, symbols: Sequence[str],
                 name: str = "oanda", page_size: int = MAX_PAGE) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValidationError(f"{name}: page_size must be within 1..{MAX_PAGE}, got {page_size}")
        self.api = api
        self.account_id = account_id
        self.environment = environment
        self.name = name
        self.page_size = page_size
        self._symbols = {oanda_instrument(s): s for s in symbols}
        self._slash = any("/" in s for s in symbols)
        self._currency: str | None = None
        self._last = threading.local()  # the Retry-After of this thread's last answer
        api.client.hooks["response"].append(self._remember)

    @classmethod
    def connect(cls, *, token: str, account_id: str, environment: Environment, symbols: Sequence[str],
                api_base: str | None = None, timeout_s: float = 10.0, name: str = "oanda",
                page_size: int = MAX_PAGE) -> OandaVenue:
        """PAPER trades on OANDA's practice server, LIVE on fxTrade; ``api_base`` points the client at another
        address (a fake venue, a gateway). Every request carries ``timeout_s``."""
        if environment not in (Environment.PAPER, Environment.LIVE):
            raise ValidationError(f"{name}: an OANDA venue is PAPER (practice) or LIVE, not {environment.value}")
        source = OandaMarketData.connect(token, account_id, api_base=api_base,
                                         live=environment is Environment.LIVE, timeout_s=timeout_s)
        return cls(source.api, account_id, environment=environment, symbols=symbols, name=name, page_size=page_size)

    # ------------------------------------------------------------------------------- reference data

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        from oandapyV20.endpoints.accounts import AccountInstruments

        names = {s: oanda_instrument(s) for s in symbols}
        if not names:
            return {}
        params = {"instruments": ",".join(sorted(set(names.values())))}
        answer = self._call(AccountInstruments(accountID=self.account_id, params=params), "account instruments")
        known = {str(i.get("name")): i for i in answer.get("instruments", [])}
        unknown = [s for s, n in names.items() if n not in known]
        if unknown:
            raise VenueError(f"{self.name}: no instrument {', '.join(unknown)} in account {self.account_id}",
                             retryable=False, kind=RejectKind.INVALID_SYMBOL)
        return {s: self._instrument(s, known[n]) for s, n in names.items()}

    @staticmethod
    def _instrument(symbol: str, info: Mapping[str, Any]) -> Instrument:
        """Tick = 10**-displayPrecision, lot = 10**-tradeUnitsPrecision, minimum = minimumTradeSize."""
        price_places = int(info["displayPrecision"])
        unit_places = int(info.get("tradeUnitsPrecision", 0))
        quote = str(info["name"]).split("_")[-1]
        return Instrument(symbol, MarketType.FOREX, quote, price_places, unit_places, Decimal(1).scaleb(-unit_places),
                          Decimal(0), Decimal(1).scaleb(int(info.get("pipLocation", -price_places))),
                          tick_size=Decimal(1).scaleb(-price_places),
                          min_quantity=_decimal(info.get("minimumTradeSize"), Decimal(0)))

    def capabilities(self) -> VenueCapabilities:
        return VenueCapabilities(
            frozenset(_SENT_TYPES), native_brackets=True, fractional=True,
            notes={
                "STOP_LIMIT": "not offered: OANDA's STOP takes a priceBound (worst fill price) instead, and it "
                              "does not rest as a limit order once triggered",
                "brackets": "one take-profit (LIMIT child) and one stop-loss (STOP child) per entry, for its "
                            "whole quantity: OANDA attaches them to the trade the entry opens",
                "units": "per instrument, via the lot: currencies trade whole units, some CFDs tenths",
                "time_in_force": "MARKET is FOK (or IOC); DAY is OANDA's GFD (5pm New York)",
                "fees": "commission in the account currency; financing accrues on open trades and is not a fee",
                "withdrawal": "OANDA tokens carry no withdrawal permission",
            })

    def account_check(self) -> AccountCheck:
        """401 is a bad token; 403 a token that cannot reach this account. OANDA's summary reports no trading
        lock (a locked account shows as ACCOUNT_*_LOCKED rejects) and no withdrawal right on a token."""
        try:
            summary = self._summary()
        except VenueError as exc:
            if exc.kind is RejectKind.AUTHENTICATION_FAILED:
                return AccountCheck(False, False, None, str(exc))
            if exc.kind is RejectKind.PERMISSION_MISSING:
                return AccountCheck(True, False, None, str(exc))
            raise
        return AccountCheck(True, True, None, f"account {self.account_id} in {summary.get('currency', '?')}")

    def market_open(self, symbol: str) -> bool:
        """OANDA's ``tradeable`` flag for the instrument now (older servers: ``status == "tradeable"``)."""
        from oandapyV20.endpoints.pricing import PricingInfo

        name = oanda_instrument(symbol)
        answer = self._call(PricingInfo(accountID=self.account_id, params={"instruments": name}), f"pricing {symbol}")
        for price in answer.get("prices", []):
            if price.get("instrument") == name:
                flag = price.get("tradeable")
                return bool(flag) if flag is not None else price.get("status") == "tradeable"
        return False

    # ------------------------------------------------------------------------------------- orders

    def place(self, order: Order, children: Sequence[Order] = ()) -> VenueOrder:
        from oandapyV20.endpoints.orders import OrderCreate

        body = {"order": self._order_request(order, children)}
        answer = self._call(OrderCreate(self.account_id, data=body), f"place {order.client_order_id}", placing=True)
        return self._placed(order, answer)

    def _order_request(self, order: Order, children: Sequence[Order]) -> dict[str, Any]:
        """The request body, or a final UNSUPPORTED error before anything is sent."""
        kind = _SENT_TYPES.get(order.order_type)
        if kind is None:
            raise VenueError(f"{self.name}: {order.order_type.value} orders are not offered by OANDA (its STOP "
                             "order with a priceBound is the nearest): refused before sending",
                             retryable=False, kind=RejectKind.UNSUPPORTED)
        cid = order.client_order_id
        if order.order_type is OrderType.MARKET:
            tif = "IOC" if order.time_in_force is TimeInForce.IOC else "FOK"
        else:
            tif = _TIME_IN_FORCE[order.time_in_force]
        spec: dict[str, Any] = {
            "type": kind, "instrument": oanda_instrument(order.symbol),
            "units": _text(order.quantity * order.side.sign), "timeInForce": tif,
            "positionFill": "REDUCE_ONLY" if order.reduce_only else "DEFAULT",
            "clientExtensions": {"id": cid}, "tradeClientExtensions": {"id": cid},
        }
        if order.order_type is OrderType.LIMIT and order.price is not None:
            spec["price"] = _text(order.price)
        if order.order_type is OrderType.STOP and order.stop_price is not None:
            spec["price"] = _text(order.stop_price)
        for child in children:
            key, price = (("takeProfitOnFill", child.price) if child.order_type is OrderType.LIMIT else
                          ("stopLossOnFill", child.stop_price) if child.order_type is OrderType.STOP else ("", None))
            why = ("OANDA attaches only a take-profit (LIMIT) and a stop-loss (STOP) to an entry" if not key else
                   f"a second {key}" if key in spec else
                   "the child must be on the entry's opposite side" if child.side is order.side else
                   "OANDA's take-profit / stop-loss close the whole trade: the child must be for the entry's "
                   "full quantity" if child.quantity != order.quantity else "")
            if why or price is None:
                raise VenueError(f"{self.name}: child {child.client_order_id} of {cid} refused before sending: "
                                 f"{why or 'no price'}", retryable=False, kind=RejectKind.UNSUPPORTED)
            spec[key] = {"price": _text(price), "timeInForce": "GTC", "clientExtensions": {"id": child.client_order_id}}
        return spec

    def _placed(self, order: Order, answer: Mapping[str, Any]) -> VenueOrder:
        create = answer.get("orderCreateTransaction") or {}
        fill = answer.get("orderFillTransaction")
        cancel = answer.get("orderCancelTransaction")
        cid = order.client_order_id
        if not create:
            raise SubmitTimeout(f"{self.name}: place {cid}: OANDA's answer names no created order")
        reason = str((cancel or {}).get("reason", ""))
        if cancel and not fill:
            raise VenueError(f"{self.name}: OANDA cancelled {cid} ({order.order_type.value} "
                             f"{order.symbol}) at once: {reason}", retryable=False, kind=reject_kind(reason))
        filled = _decimal(fill.get("units"), Decimal(0)).copy_abs() if fill else Decimal(0)
        price = _decimal(fill.get("price") or fill.get("fullVWAP")) if fill else None
        if fill and filled >= order.quantity:
            status = OrderStatus.FILLED
        elif cancel:
            status = OrderStatus.CANCELED  # IOC: part filled, the rest cancelled
        else:
            status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.ACCEPTED
        return VenueOrder(cid, str(create.get("id", "")), order.symbol, order.side, order.quantity, order.order_type,
                          status, filled, price, order.price, order.stop_price,
                          _ns((cancel or fill or create).get("time")), reason)

    def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        held = self._call_order(client_order_id)
        return None if held is None else self._venue_order(held["order"], held.get("lastTransactionID"))

    def cancel(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """OANDA cancels pending orders only: a 404 means filled, already cancelled or unknown, and the order is
        then read back as it is (None when OANDA has no such order at all)."""
        from oandapyV20.endpoints.orders import OrderCancel

        answer = self._call(OrderCancel(self.account_id, f"@{client_order_id}"), f"cancel {client_order_id}",
                            missing_ok=True)
        reason = str(((answer or {}).get("orderCancelTransaction") or {}).get("reason", "")) or None
        held = self._call_order(client_order_id)
        if held is None:
            return None
        return self._venue_order(held["order"], held.get("lastTransactionID"), cancel_reason=reason)

    def _call_order(self, client_order_id: str) -> dict[str, Any] | None:
        from oandapyV20.endpoints.orders import OrderDetails

        answer = self._call(OrderDetails(self.account_id, f"@{client_order_id}"), f"order {client_order_id}",
                            missing_ok=True)
        return None if answer is None else dict(answer)

    def open_orders(self) -> list[VenueOrder]:
        """Every pending order, ours or not (client id "" without one); take-profit / stop-loss orders are read
        with their trade, which OANDA does not repeat on them."""
        from oandapyV20.endpoints.orders import OrdersPending
        from oandapyV20.endpoints.trades import OpenTrades

        answer = self._call(OrdersPending(self.account_id), "pending orders")
        orders = list(answer.get("orders", []))
        trades: dict[str, dict[str, Any]] = {}
        if any("instrument" not in o for o in orders):
            opened = self._call(OpenTrades(self.account_id), "open trades")
            trades = {str(t["id"]): t for t in opened.get("trades", [])}
        last = answer.get("lastTransactionID")
        return [self._venue_order(o, last, trades=trades) for o in orders]

    def _venue_order(self, o: Mapping[str, Any], last_id: Any, *, trades: Mapping[str, Any] | None = None,
                     cancel_reason: str | None = None) -> VenueOrder:
        kind = str(o.get("type", ""))
        state = str(o.get("state", ""))
        instrument, units = o.get("instrument"), o.get("units")
        if instrument is None or units is None:  # a take-profit / stop-loss: its trade says what it closes
            trade = (trades or {}).get(str(o.get("tradeID"))) or self._trade(str(o.get("tradeID")))
            instrument = trade.get("instrument")
            held = _decimal(trade.get("currentUnits"), Decimal(0)) or _decimal(trade.get("initialUnits"), Decimal(0))
            units = -held
        signed = _decimal(units, Decimal(0))
        fills = self._order_fills(o, last_id) if self._has_fills(o) else []
        filled = sum((_decimal(f.get("units"), Decimal(0)).copy_abs() for f in fills), Decimal(0))
        average = (sum((_decimal(f.get("units"), Decimal(0)).copy_abs() * _decimal(f.get("price")) for f in fills),
                       Decimal(0)) / filled) if filled else None
        if fills and signed == 0:
            signed = sum((_decimal(f.get("units"), Decimal(0)) for f in fills), Decimal(0))
        quantity = signed.copy_abs()
        reason = ""
        if state == "FILLED":
            status = OrderStatus.FILLED
            filled = filled or quantity
            quantity = max(quantity, filled)
        elif state == "CANCELLED":
            reason = cancel_reason or self._cancel_reason(o)
            if reason == "TIME_IN_FORCE_EXPIRED":
                status = OrderStatus.EXPIRED
            elif kind == "MARKET" and not filled:
                status = OrderStatus.REJECTED  # a market order OANDA could not fill (margin, halted market)
            else:
                status = OrderStatus.CANCELED
        else:  # PENDING, TRIGGERED
            status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.ACCEPTED
        price = _decimal(o.get("price")) if o.get("price") is not None else None
        stop_like = kind in _STOP_LIKE
        ts = max(_ns(o.get(k)) for k in ("createTime", "filledTime", "cancelledTime"))
        return VenueOrder(
            str((o.get("clientExtensions") or {}).get("id", "")), str(o.get("id", "")), self._symbol(str(instrument)),
            Side.BUY if signed > 0 else Side.SELL, quantity, _READ_TYPES.get(kind, OrderType.MARKET), status, filled,
            average, None if stop_like else price, price if stop_like else None, ts, reason)

    @staticmethod
    def _has_fills(o: Mapping[str, Any]) -> bool:
        return any(o.get(k) for k in ("fillingTransactionID", "tradeOpenedID", "tradeReducedID", "tradeClosedIDs"))

    def _order_fills(self, o: Mapping[str, Any], last_id: Any) -> list[dict[str, Any]]:
        """The order's ORDER_FILL transactions: between its creation and its end (or the account's last
        transaction while it still rests), a page of ids at a time."""
        first = int(o["id"])
        end = o.get("fillingTransactionID") if o.get("state") == "FILLED" else (
            o.get("cancellingTransactionID") or last_id or o.get("fillingTransactionID"))
        last = int(end) if end else first
        return [t for t in self._fill_range(first, last) if str(t.get("orderID")) == str(o["id"])]

    def _fill_range(self, first: int, last: int) -> list[dict[str, Any]]:
        from oandapyV20.endpoints.transactions import TransactionIDRange

        out: list[dict[str, Any]] = []
        for low in range(first, last + 1, self.page_size):
            params = {"from": str(low), "to": str(min(low + self.page_size - 1, last)), "type": "ORDER_FILL"}
            page = self._call(TransactionIDRange(self.account_id, params=params), "transactions")
            out += [t for t in page.get("transactions", []) if t.get("type") == "ORDER_FILL"]
        return out

    def _cancel_reason(self, o: Mapping[str, Any]) -> str:
        """OANDA keeps why an order was cancelled on the cancel transaction, not on the order."""
        from oandapyV20.endpoints.transactions import TransactionDetails

        tx_id = o.get("cancellingTransactionID")
        if not tx_id:
            return ""
        answer = self._call(TransactionDetails(self.account_id, str(tx_id)), f"transaction {tx_id}")
        return str((answer.get("transaction") or {}).get("reason", ""))

    def _trade(self, trade_id: str) -> dict[str, Any]:
        from oandapyV20.endpoints.trades import TradeDetails

        answer = self._call(TradeDetails(self.account_id, trade_id), f"trade {trade_id}")
        return dict(answer.get("trade") or {})

    # --------------------------------------------------------------------------- fills and account

    def fills(self, since_ns: int, symbols: Sequence[str]) -> list[VenueFill]:
        """ORDER_FILL transactions since ``since_ns``, every page, oldest first; ``symbols`` empty: all."""
        from oandapyV20.endpoints.transactions import TransactionIDRange, TransactionList

        params = {"from": _rfc3339(since_ns), "pageSize": self.page_size, "type": "ORDER_FILL"}
        listing = self._call(TransactionList(self.account_id, params=params), "transactions")
        transactions: list[dict[str, Any]] = []
        for url in listing.get("pages", []):
            query = dict(parse_qsl(urlsplit(str(url)).query))
            if "from" not in query or "to" not in query:
                raise VenueError(f"{self.name}: unreadable transactions page {url!r}", retryable=True,
                                 kind=RejectKind.VENUE_UNAVAILABLE)
            page_params = {k: query[k] for k in ("from", "to", "type") if k in query}
            page = self._call(TransactionIDRange(self.account_id, params=page_params), "transactions page")
            transactions += page.get("transactions", [])
        wanted = {oanda_instrument(s) for s in symbols}
        currency = self._account_currency() if transactions else ""
        out = [self._fill(t, currency) for t in transactions
               if t.get("type") == "ORDER_FILL" and (not wanted or t.get("instrument") in wanted)
               and _decimal(t.get("units"), Decimal(0)) != 0 and _ns(t.get("time")) >= since_ns]
        return sorted(out, key=lambda f: (f.ts_ns, int(f.fill_id) if f.fill_id.isdigit() else 0))

    def _fill(self, t: Mapping[str, Any], currency: str) -> VenueFill:
        units = _decimal(t.get("units"))
        fee = _decimal(t.get("commission"), Decimal(0)).copy_abs() + \
            _decimal(t.get("guaranteedExecutionFee"), Decimal(0)).copy_abs()
        return VenueFill(str(t.get("id", "")), str(t.get("orderID", "")), str(t.get("clientOrderID") or ""),
                         self._symbol(str(t.get("instrument", ""))), Side.BUY if units > 0 else Side.SELL,
                         units.copy_abs(), _decimal(t.get("price") or t.get("fullVWAP")), fee, currency,
                         _ns(t.get("time")))

    def positions(self) -> list[VenuePosition]:
        """Net units per instrument (long.units + short.units; OANDA prints short units negative)."""
        from oandapyV20.endpoints.positions import OpenPositions

        answer = self._call(OpenPositions(self.account_id), "open positions")
        out = []
        for p in answer.get("positions", []):
            long, short = p.get("long") or {}, p.get("short") or {}
            net = _decimal(long.get("units"), Decimal(0)) + _decimal(short.get("units"), Decimal(0))
            if net == 0:
                continue
            side = long if net > 0 else short
            average = _decimal(side["averagePrice"]) if side.get("averagePrice") else None
            out.append(VenuePosition(self._symbol(str(p.get("instrument", ""))), net, average))
        return out

    def balances(self) -> dict[str, Decimal]:
        summary = self._summary()
        return {str(summary["currency"]): _decimal(summary.get("balance"))}

    def close(self) -> None:
        self.api.close()

    def _summary(self) -> dict[str, Any]:
        from oandapyV20.endpoints.accounts import AccountSummary

        answer = self._call(AccountSummary(self.account_id), "account summary")
        summary = dict(answer.get("account") or {})
        if summary.get("currency"):
            self._currency = str(summary["currency"])
        return summary

    def _account_currency(self) -> str:
        """The currency OANDA books commission in; an account's home currency never changes, so it is read once."""
        if self._currency is None:
            self._summary()
        return self._currency or ""

    def _symbol(self, instrument: str) -> str:
        if instrument in self._symbols:
            return self._symbols[instrument]
        return instrument.replace("_", "/") if self._slash else instrument

    # ---------------------------------------------------------------------------------- transport

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._last.retry_after = response.headers.get("Retry-After")
        return response

    def _retry_after(self) -> float | None:
        raw = getattr(self._last, "retry_after", None)
        try:
            return float(raw) if raw is not None else None
        except ValueError:  # an HTTP date: not worth parsing, the caller's backoff applies
            return None

    def _call(self, endpoint: Any, what: str, *, placing: bool = False, missing_ok: bool = False) -> Any:
        """One request; ``missing_ok``: None when OANDA answers that the order does not exist."""
        import requests
        from oandapyV20.exceptions import V20Error

        self._last.retry_after = None
        try:
            return self.api.request(endpoint)
        except V20Error as exc:
            body = _parse_error(str(exc.msg))
            if missing_ok and self._no_such_order(int(exc.code), body):
                return None
            raise self._http_error(int(exc.code), body, str(exc.msg), what, placing) from exc
        except requests.RequestException as exc:
            message = f"{self.name}: {what}: {type(exc).__name__}: {exc}"
            if _never_sent(exc):
                raise VenueError(message + " (not sent)", retryable=True, kind=RejectKind.VENUE_UNAVAILABLE) from exc
            if placing:
                raise SubmitTimeout(message) from exc
            raise VenueError(message, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE) from exc
        except Exception as exc:  # an answer that cannot be read (not JSON, an unexpected status)
            message = f"{self.name}: {what}: unreadable answer: {type(exc).__name__}: {exc}"
            if placing:
                raise SubmitTimeout(message) from exc
            raise VenueError(message, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE) from exc

    @staticmethod
    def _no_such_order(code: int, body: Mapping[str, Any]) -> bool:
        if code != 404:
            return False
        error = str(body.get("errorCode") or "")
        if error:
            return error in _NO_SUCH_ORDER
        message = str(body.get("errorMessage") or "").lower()
        return "order" in message and "not exist" in message

    def _http_error(self, code: int, body: Mapping[str, Any], raw: str, what: str, placing: bool) -> VenueError:
        reject = body.get("orderRejectTransaction") or body.get("orderCancelRejectTransaction") or {}
        reason = str(body.get("errorCode") or reject.get("rejectReason") or "")
        detail = str(body.get("errorMessage") or raw[:200])
        message = f"{self.name}: {what}: HTTP {code}{' ' + reason if reason else ''}: {detail}"
        if code == 401:
            return VenueError(message, retryable=False, kind=RejectKind.AUTHENTICATION_FAILED)
        if code == 403:
            return VenueError(message, retryable=False, kind=RejectKind.PERMISSION_MISSING)
        if code == 429:
            return VenueError(message, retryable=True, kind=RejectKind.RATE_LIMITED, retry_after_s=self._retry_after())
        if code >= 500 or code == 408:
            if placing:
                return SubmitTimeout(message)
            return VenueError(message, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)
        if reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
            return DuplicateOrder(message)
        kind = reject_kind(reason) if reason else RejectKind.OTHER
        if kind is RejectKind.OTHER and "'instrument" in detail:  # "Invalid value specified for 'instruments'"
            kind = RejectKind.INVALID_SYMBOL
        return VenueError(message, retryable=False, kind=kind)
