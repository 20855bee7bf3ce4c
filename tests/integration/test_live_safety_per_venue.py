"""The kernel's live safety rules over each REAL venue adapter, against its loopback fake (no Ray, no SDK mocks).

``tests/unit/test_live_execution.py`` proves the rules of ``mmats.execution.live`` against an in-memory venue;
here the same rules run as the order router runs them (``OrderSubmitter(...).submit(order, lambda:
live.submit(order, children, ts), ts)``) through ccxt (fake Binance, fake Bybit), oandapyV20 (fake OANDA) and
alpaca-py (fake Alpaca), so what is proven holds on each venue's own wire protocol: a lost answer is UNKNOWN
then reconciled without a second order, a restarted router asks before it resends, every typed refusal reaches
the order, Retry-After is waited out, the breaker opens and its probe closes it, precision is fitted before
sending, and HARD / FREEZE act at the venue. Every case runs on the four venues; where a venue has no such
concept the case says so and is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from adapters.alpaca_broker import AlpacaVenue
from adapters.ccxt_broker import CcxtVenue
from adapters.oanda_broker import OandaVenue
from mmats.execution.live import LiveExecution, LiveSettings
from mmats.execution.routing import OrderSubmitter, RetryPolicy, SubmitOutcome
from mmats.execution.venue import RejectKind, VenueClient
from mmats.execution.venue_guard import GuardSettings
from mmats.model import Environment, Instrument, Order, OrderStatus, OrderType, Side, TimeInForce
from tests.fixtures.fake_alpaca import FakeAlpaca
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.fake_bybit import FakeBybit
from tests.fixtures.fake_oanda import FakeOanda

KEY, SECRET = "mmats-safety-key", "mmats-safety-secret"
OANDA_TOKEN, OANDA_ACCOUNT = "oanda-safety-token-0001", "101-004-7654321-001"
OANDA_ORDERS = f"/v3/accounts/{OANDA_ACCOUNT}/orders"
CLIENT_TIMEOUT_S = 0.4  # every adapter's HTTP timeout: a hung venue costs a test 0.4 s
HANG_S = 1.0  # how long a fake sits on an answer it will lose: past the client's timeout
GUARD = GuardSettings(failures_to_open=3, open_s=0.3, backoff_s=0.01, max_backoff_s=0.05)
VENUES = ["binance", "bybit", "oanda", "alpaca"]
D = Decimal


# ------------------------------------------------------------------------------------------- the rigs


@dataclass
class RejectCase:
    """How one venue is made to refuse one kind: the order, and what differs from a plain build."""

    order: Order
    client: VenueClient | None = None
    instruments: dict[str, Instrument] | None = None
    settings: dict[str, Any] | None = None


@dataclass(frozen=True)
class Precision:
    """Off-grid inputs and what the venue must receive: quantity down to the lot, limit prices passive."""

    qty_in: str
    qty_out: str
    buy_in: str
    buy_out: str
    sell_in: str
    sell_out: str
    below_minimum: str  # a quantity under the venue's lot or minimum quantity


class Rig:
    """One fake venue, the real adapter connected to it, and the fake's own names for what tests look at."""

    name: ClassVar[str]
    symbol: ClassVar[str]
    qty: ClassVar[str]  # an ordinary order size
    price: ClassVar[Decimal]  # the fake's market price
    rest_buy: ClassVar[str]  # a buy limit under the market: it rests
    precision: ClassVar[Precision]
    min_notional: ClassVar[tuple[str, str] | None]  # (qty, limit price) under the minimum notional
    no_min_notional: ClassVar[str] = ""
    base_fee_on_buys: ClassVar[Decimal] = Decimal(0)  # Bybit spot takes a buy's fee in the coin bought
    fake: Any

    def __init__(self) -> None:
        self.clients: list[VenueClient] = []
        self.fake.start()
        self.inst = self.connect().instruments([self.symbol])  # precision from the venue itself

    def connect(self, *, bad_key: bool = False) -> VenueClient:
        """A fresh adapter connection to the fake (a restarted router gets a new one)."""
        client = self._connect(bad_key)
        self.clients.append(client)
        return client

    def _connect(self, bad_key: bool) -> VenueClient:
        raise NotImplementedError

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.fake.stop()

    # what the fake saw -------------------------------------------------------------------------------
    def requests(self) -> int:
        return len(self.fake.requests)

    def lookups(self, cid: str) -> int:
        """Reads that asked the venue for ``cid`` (by client id, in the path or in the query)."""
        return sum(1 for method, path, params in self.fake.requests
                   if method == "GET" and (cid in path or cid in {str(v) for v in params.values()}))

    def posts(self) -> int:
        raise NotImplementedError

    def orders_for(self, cid: str) -> int:
        """How many orders the venue holds under our client id (any state)."""
        raise NotImplementedError

    def open_at_venue(self, cid: str) -> bool:
        raise NotImplementedError

    def received(self, cid: str) -> tuple[Decimal, Decimal | None]:
        """(quantity, limit price) as the venue received them for ``cid``."""
        raise NotImplementedError

    # knobs -------------------------------------------------------------------------------------------
    def fill(self, cid: str, qty: Decimal) -> None:
        raise NotImplementedError

    def lose_next_place(self, how: str) -> None:
        """The venue acts on the next placement, then ``hang``s past the client timeout or ``drop``s it."""
        raise NotImplementedError

    def fail_open_orders(self, count: int) -> None:
        raise NotImplementedError

    def rate_limit_next_place(self, retry_after_s: float) -> None:
        raise NotImplementedError

    def place_foreign(self) -> tuple[str, str]:
        """A resting order someone else placed; returns the (foreign_orders field, value) naming it."""
        raise NotImplementedError

    def foreign_open(self, ident: str) -> bool:
        raise NotImplementedError

    def reject_case(self, kind: RejectKind) -> RejectCase:
        raise NotImplementedError


def venue_position(client: VenueClient, symbol: str) -> Decimal:
    return {p.symbol: p.quantity for p in client.positions()}.get(symbol, D(0))


class CcxtRig(Rig):
    """Shared by Binance and Bybit: the same ccxt adapter, two wire protocols."""

    create: ClassVar[tuple[str, str]]
    cid_param: ClassVar[str]
    qty_param: ClassVar[str]
    open_orders_path: ClassVar[str]
    symbol = "BTC/USDT"
    qty = "0.01"
    price = D(30000)
    rest_buy = "29000"

    def _connect(self, bad_key: bool) -> VenueClient:
        venue = CcxtVenue.connect(self.name, api_key=KEY, secret="not-the-secret" if bad_key else SECRET,
                                  environment=Environment.LIVE, symbols=[self.symbol], api_base=self.fake.base_url,
                                  timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
        venue.exchange.enableRateLimit = False  # ccxt's own limiter would add ~40 ms a call; the guard is tested
        return venue

    def posts(self) -> int:
        return int(self.fake.count(*self.create))

    def received(self, cid: str) -> tuple[Decimal, Decimal | None]:
        sent = [params for method, path, params in self.fake.requests
                if (method, path) == self.create and params.get(self.cid_param) == cid]
        assert sent, f"{cid} never reached the venue"
        price = sent[-1].get("price")
        return D(str(sent[-1][self.qty_param])), D(str(price)) if price is not None else None

    def fill(self, cid: str, qty: Decimal) -> None:
        self.fake.fill_partially(cid, qty)

    def lose_next_place(self, how: str) -> None:
        if how == "hang":
            self.fake.hang_next(self.create[1], "POST", HANG_S, act=True)
        else:
            self.fake.lose_next(self.create[1], "POST", None)

    def fail_open_orders(self, count: int) -> None:
        self.fake.fail_next(self.open_orders_path, "GET", 503, count=count)

    def rate_limit_next_place(self, retry_after_s: float) -> None:
        self.fake.fail_next(self.create[1], "POST", 429, retry_after=retry_after_s)

    def common_reject(self, kind: RejectKind) -> RejectCase | None:
        if kind is RejectKind.INVALID_SYMBOL:
            self.fake.delist("BTCUSDT")  # the venue stopped listing it after our markets were loaded
        elif kind is RejectKind.AUTHENTICATION_FAILED:
            return RejectCase(order(self, "s1-rej"), client=self.connect(bad_key=True))
        elif kind is RejectKind.PERMISSION_MISSING:
            self.fake.can_trade = False
        elif kind is RejectKind.MARKET_CLOSED:
            del self.fake.prices["BTCUSDT"]  # no market price: a market order cannot trade
        elif kind is RejectKind.INSUFFICIENT_FUNDS:
            return RejectCase(order(self, "s1-rej", qty="10"))  # 300,000 USDT of 100,000
        else:
            return None
        return RejectCase(order(self, "s1-rej"))


class BinanceRig(CcxtRig):
    name = "binance"
    create = ("POST", "/api/v3/order")
    cid_param, qty_param = "newClientOrderId", "quantity"
    open_orders_path = "/api/v3/openOrders"
    precision = Precision("0.0099999", "0.00999", "29000.019", "29000.01", "31000.011", "31000.02", "0.000004")
    min_notional = ("0.0001", "29000")  # 2.9 USDT, Binance's NOTIONAL minimum is 5

    def __init__(self) -> None:
        # duplicate_scope="open": Binance's rule, a closed order's client id is accepted again (a blind resend
        # of a filled order would be a second order: only asking first prevents it)
        self.fake = FakeBinance(KEY, SECRET, balances={"USDT": "100000"}, prices={"BTCUSDT": "30000"},
                                duplicate_scope="open")
        super().__init__()

    def orders_for(self, cid: str) -> int:
        return sum(1 for o in self.fake._orders_by_id.values() if o.client_order_id == cid)

    def open_at_venue(self, cid: str) -> bool:
        return any(o.client_order_id == cid for o in self.fake.open_orders())

    def place_foreign(self) -> tuple[str, str]:
        return "client_order_id", self.fake.place_foreign("BTCUSDT", "BUY", "0.001", "20000").client_order_id

    def foreign_open(self, ident: str) -> bool:
        return bool(self.fake.orders[ident].is_open)

    def reject_case(self, kind: RejectKind) -> RejectCase:
        if kind is RejectKind.INVALID_SIZE:  # MARKET_LOT_SIZE: at most 100 BTC in one market order
            return RejectCase(order(self, "s1-rej", qty="101"))
        if kind is RejectKind.INVALID_PRICE:  # PRICE_FILTER: above maxPrice
            return RejectCase(order(self, "s1-rej", side=Side.SELL, kind=OrderType.LIMIT, price="2000000"))
        case = self.common_reject(kind)
        assert case is not None
        return case


class BybitRig(CcxtRig):
    name = "bybit"
    create = ("POST", "/v5/order/create")
    cid_param, qty_param = "orderLinkId", "qty"
    open_orders_path = "/v5/order/realtime"
    base_fee_on_buys = Decimal("0.001")  # the fake's fee rate
    # Bybit takes a spot buy's fee in the base coin: 0.01 bought is 0.00999 held, so sell less than that
    precision = Precision("0.0050005", "0.005", "29000.019", "29000.01", "31000.011", "31000.02", "0.00004")
    min_notional = ("0.00005", "15000")  # 0.75 USDT, Bybit's minOrderAmt is 1

    def __init__(self) -> None:
        self.fake = FakeBybit(KEY, SECRET, balances={"USDT": "100000"}, prices={"BTCUSDT": "30000"})
        super().__init__()

    def orders_for(self, cid: str) -> int:
        return sum(1 for o in self.fake.by_id.values() if o.link_id == cid)

    def open_at_venue(self, cid: str) -> bool:
        return any(o.link_id == cid for o in self.fake.open_orders())

    def place_foreign(self) -> tuple[str, str]:  # Bybit's app sends no orderLinkId: known by its order id
        return "venue_order_id", self.fake.place_foreign("BTCUSDT", "Buy", "0.001", "20000").order_id

    def foreign_open(self, ident: str) -> bool:
        return bool(self.fake.by_id[ident].is_open)

    def reject_case(self, kind: RejectKind) -> RejectCase:
        if kind is RejectKind.INVALID_SIZE:  # 170135: above the symbol's maxOrderQty (71.7 BTC)
            return RejectCase(order(self, "s1-rej", qty="72"))
        if kind is RejectKind.INVALID_PRICE:  # 170193: a buy limit 50 % above the market
            return RejectCase(order(self, "s1-rej", kind=OrderType.LIMIT, price="50000"))
        case = self.common_reject(kind)
        assert case is not None
        return case


class OandaRig(Rig):
    name = "oanda"
    symbol = "EUR/USD"
    qty = "1000"
    price = D("1.10000")
    rest_buy = "1.05000"
    precision = Precision("1000.7", "1000", "1.090004", "1.09000", "1.110006", "1.11001", "0.4")
    min_notional = None
    no_min_notional = ("OANDA v20 has no minimum notional: its size floor is the instrument's minimumTradeSize, "
                       "a quantity (refused before sending in test_precision_is_fitted_before_sending)")

    def __init__(self) -> None:
        self.fake = FakeOanda(OANDA_TOKEN, OANDA_ACCOUNT, {"EUR_USD": "1.10000"})
        super().__init__()

    def _connect(self, bad_key: bool) -> VenueClient:
        return OandaVenue.connect(token="not-the-token" if bad_key else OANDA_TOKEN, account_id=OANDA_ACCOUNT,
                                  environment=Environment.LIVE, symbols=[self.symbol], api_base=self.fake.base_url,
                                  timeout_s=CLIENT_TIMEOUT_S)

    def posts(self) -> int:
        return int(self.fake.count("POST", OANDA_ORDERS))

    def orders_for(self, cid: str) -> int:
        return sum(1 for o in self.fake.orders.values() if o.client_id == cid)

    def open_at_venue(self, cid: str) -> bool:
        return any(o.client_id == cid for o in self.fake.pending())

    def received(self, cid: str) -> tuple[Decimal, Decimal | None]:
        held = self.fake.order(cid)  # the fake keeps the units and price exactly as they arrived
        assert held is not None, f"{cid} never reached the venue"
        return held.units.copy_abs(), held.price

    def fill(self, cid: str, qty: Decimal) -> None:
        self.fake.fill_order(cid, qty)  # OANDA fills its own quotes; a partial fill is the fake's knob

    def lose_next_place(self, how: str) -> None:
        if how == "hang":
            self.fake.hang_next(OANDA_ORDERS, HANG_S, act=True, method="POST")
        else:
            self.fake.drop_next(OANDA_ORDERS, act=True, method="POST")

    def fail_open_orders(self, count: int) -> None:
        self.fake.fail_next(f"/v3/accounts/{OANDA_ACCOUNT}/pendingOrders", 503, count=count, method="GET")

    def rate_limit_next_place(self, retry_after_s: float) -> None:
        self.fake.fail_next(OANDA_ORDERS, 429, method="POST", retry_after=retry_after_s)

    def place_foreign(self) -> tuple[str, str]:  # placed by hand on OANDA's platform: no client id
        return "venue_order_id", self.fake.place_foreign("EUR_USD", 500, "LIMIT", "1.04000")

    def foreign_open(self, ident: str) -> bool:
        return bool(self.fake.orders[ident].state == "PENDING")

    def reject_case(self, kind: RejectKind) -> RejectCase:
        inst = self.inst[self.symbol]
        if kind is RejectKind.INSUFFICIENT_FUNDS:  # 10M EUR at 3.33 % margin on a 100k USD account
            return RejectCase(order(self, "s1-rej", qty="10000000"))
        if kind is RejectKind.INVALID_SYMBOL:  # instrument data for a pair this account does not trade; the
            # order is sent (outside_hours "queue" skips the pricing question) and OANDA answers INSTRUMENT_UNKNOWN
            gone = replace(inst, symbol="GBP/ZAR")
            return RejectCase(order(self, "s1-rej", symbol="GBP/ZAR"), instruments={"GBP/ZAR": gone},
                              settings={"outside_hours": {"oanda": "queue"}})
        if kind is RejectKind.INVALID_SIZE:  # UNITS_LIMIT_EXCEEDED: above maximumOrderUnits
            return RejectCase(order(self, "s1-rej", qty="200000000"))
        if kind is RejectKind.INVALID_PRICE:  # instrument data older than the venue's (one more decimal):
            stale = replace(inst, price_precision=6, tick_size=D("0.000001"))  # PRICE_PRECISION_EXCEEDED
            return RejectCase(order(self, "s1-rej", kind=OrderType.LIMIT, price="1.050001"),
                              instruments={self.symbol: stale})
        if kind is RejectKind.AUTHENTICATION_FAILED:  # 401 on the first call (the pricing question)
            return RejectCase(order(self, "s1-rej"), client=self.connect(bad_key=True))
        if kind is RejectKind.PERMISSION_MISSING:
            self.fake.order_creation_locked = True  # ACCOUNT_ORDER_CREATION_LOCKED
        elif kind is RejectKind.MARKET_CLOSED:
            self.fake.halt("EUR_USD")  # pricing says tradeable=false
        return RejectCase(order(self, "s1-rej"))


class AlpacaRig(Rig):
    name = "alpaca"
    symbol = "AAPL"
    qty = "2"
    price = D("190.00")
    rest_buy = "150.00"
    precision = Precision("1.0000000004", "1", "185.017", "185.01", "195.011", "195.02", "0.0000000004")
    min_notional = None
    no_min_notional = ("Alpaca's assets carry no minimum notional (min_order_size is a quantity, refused before "
                       "sending in test_precision_is_fitted_before_sending)")

    def __init__(self) -> None:
        self.fake = FakeAlpaca(KEY, SECRET, {"AAPL": "190.00"})
        super().__init__()

    def _connect(self, bad_key: bool) -> VenueClient:
        return AlpacaVenue.connect(key_id=KEY, secret_key="not-the-secret" if bad_key else SECRET,
                                   environment=Environment.LIVE, symbols=[self.symbol], api_base=self.fake.base_url,
                                   timeout_s=CLIENT_TIMEOUT_S)

    def posts(self) -> int:
        return int(self.fake.count("POST", "/v2/orders"))

    def orders_for(self, cid: str) -> int:
        return sum(1 for o in self.fake.orders.values() if o.client_order_id == cid)

    def open_at_venue(self, cid: str) -> bool:
        return any(o.client_order_id == cid for o in self.fake.open_orders())

    def received(self, cid: str) -> tuple[Decimal, Decimal | None]:
        sent = [b for b in self.fake.bodies if b.get("client_order_id") == cid]
        assert sent, f"{cid} never reached the venue"
        price = sent[-1].get("limit_price")
        return D(str(sent[-1]["qty"])), D(str(price)) if price is not None else None

    def fill(self, cid: str, qty: Decimal) -> None:
        held = self.fake.order(cid)
        self.fake.fill_order(cid, qty, price=held.limit_price if held is not None else None)

    def lose_next_place(self, how: str) -> None:
        if how == "hang":
            self.fake.hang_next("/v2/orders", HANG_S, method="POST", act=True)
        else:
            self.fake.drop_next("/v2/orders", method="POST", act=True)

    def fail_open_orders(self, count: int) -> None:
        self.fake.fail_next("/v2/orders", 503, count=count, method="GET")

    def rate_limit_next_place(self, retry_after_s: float) -> None:
        self.fake.fail_next("/v2/orders", 429, method="POST", retry_after=retry_after_s)

    def place_foreign(self) -> tuple[str, str]:  # from Alpaca's dashboard: Alpaca's own UUID as client id
        return "client_order_id", self.fake.place_foreign("AAPL", "buy", "1", limit_price="140").client_order_id

    def foreign_open(self, ident: str) -> bool:
        held = self.fake.order(ident)
        return held is not None and bool(held.is_open)

    def reject_case(self, kind: RejectKind) -> RejectCase:
        inst = self.inst[self.symbol]
        if kind is RejectKind.INSUFFICIENT_FUNDS:  # 190,000 USD of buying power asked, 100,000 held
            return RejectCase(order(self, "s1-rej", qty="1000"))
        if kind is RejectKind.INVALID_SYMBOL:
            del self.fake.assets["AAPL"]  # delisted after our instruments were loaded: asset not found
        elif kind is RejectKind.INVALID_SIZE:  # the asset stopped being fractionable after we loaded it
            self.fake.assets["AAPL"]["fractionable"] = False
            return RejectCase(order(self, "s1-rej", qty="0.5"))
        elif kind is RejectKind.INVALID_PRICE:  # instrument data finer than the venue's: sub-penny refused
            stale = replace(inst, price_precision=3, tick_size=D("0.001"))
            return RejectCase(order(self, "s1-rej", kind=OrderType.LIMIT, price="150.001"),
                              instruments={self.symbol: stale})
        elif kind is RejectKind.AUTHENTICATION_FAILED:  # 401 on the first call (the market clock)
            return RejectCase(order(self, "s1-rej"), client=self.connect(bad_key=True))
        elif kind is RejectKind.PERMISSION_MISSING:
            self.fake.trading_blocked = True
        elif kind is RejectKind.MARKET_CLOSED:
            self.fake.market_open = False  # the clock says closed: refused (the default outside_hours)
        return RejectCase(order(self, "s1-rej"))


RIGS: dict[str, type[Rig]] = {"binance": BinanceRig, "bybit": BybitRig, "oanda": OandaRig, "alpaca": AlpacaRig}


@pytest.fixture(params=VENUES)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    built = RIGS[request.param]()
    try:
        yield built
    finally:
        built.close()


# ------------------------------------------------------------------------------------------ helpers


def order(rig: Rig, cid: str, qty: str | None = None, side: Side = Side.BUY, kind: OrderType = OrderType.MARKET,
          price: str | None = None, symbol: str | None = None) -> Order:
    return Order(cid, symbol or rig.symbol, side, D(qty or rig.qty), kind, D(price) if price else None,
                 time_in_force=TimeInForce.GTC, strategy_id="s1", created_ns=time.time_ns())


def booked(rig: Rig, order: Order, quantity: Decimal | None = None) -> Decimal:
    """What a fill of ``quantity`` (default: all of ``order``) leaves held: a fee taken in the coin bought
    is not held (the book holds what the venue holds)."""
    q = order.quantity if quantity is None else quantity
    return q - q * rig.base_fee_on_buys if order.side is Side.BUY else q


def build(rig: Rig, client: VenueClient | None = None, instruments: dict[str, Instrument] | None = None,
          **settings: Any) -> LiveExecution:
    """As the router builds it: the real adapter, the venue's instruments, one guard per venue."""
    inst = instruments or rig.inst
    live_settings = LiveSettings(**{"unknown_grace_s": 2.0, "reconcile_every_s": 3600.0, **settings})
    return LiveExecution({rig.name: (client or rig.connect(), list(inst))}, inst, D(100_000), live_settings,
                         {rig.name: GUARD})


def submitter() -> OrderSubmitter:
    return OrderSubmitter(RetryPolicy(max_attempts=3, base_delay_s=0.01), sleep=time.sleep)


def submit(live: LiveExecution, o: Order, sub: OrderSubmitter | None = None) -> SubmitOutcome:
    """What the router does for one order command."""
    ts = time.time_ns()
    return (sub or submitter()).submit(o, lambda: live.submit(o, [], ts), ts).outcome


def held(live: LiveExecution, symbol: str) -> Decimal:
    position = live.ledger.positions.get(symbol)
    return position.quantity if position is not None else D(0)


def poll_until_filled(live: LiveExecution, o: Order) -> list[Any]:
    fills: list[Any] = []
    for _ in range(5):
        fills += live.poll()[0]
        if o.status is OrderStatus.FILLED:
            break
        time.sleep(0.05)
    return fills


# ---------------------------------------------------------------------------------------------- cases


def test_submit_cancel_and_status_by_client_id(rig: Rig) -> None:
    live = build(rig)
    mkt = order(rig, "s1-mkt")
    assert submit(live, mkt) is SubmitOutcome.ACCEPTED and mkt.venue_order_id
    fills = poll_until_filled(live, mkt)
    assert mkt.status is OrderStatus.FILLED and [f.quantity for f in fills] == [booked(rig, mkt)]
    assert held(live, rig.symbol) == booked(rig, mkt)
    # a limit whose answer is lost (connection dropped after the venue acted): the kernel asks by client id
    rig.lose_next_place("drop")
    sub = submitter()
    lim = order(rig, "s1-lim", kind=OrderType.LIMIT, price=rig.rest_buy)
    assert submit(live, lim, sub) is SubmitOutcome.UNKNOWN and lim.status is OrderStatus.UNKNOWN
    asked = rig.lookups("s1-lim")
    assert live.resolve_unknown(sub.unknown) == [lim] and not sub.unknown
    assert lim.status is OrderStatus.ACCEPTED and lim.venue_order_id
    assert rig.lookups("s1-lim") > asked, "status asked by client id"
    assert live.cancel_order(lim, time.time_ns()) == [lim] and lim.status is OrderStatus.CANCELED
    assert not rig.open_at_venue("s1-lim")
    assert (rig.posts(), rig.orders_for("s1-lim"), rig.orders_for("s1-mkt")) == (2, 1, 1)


def test_a_partial_fill_is_booked_once(rig: Rig) -> None:
    live = build(rig)
    lim = order(rig, "s1-part", kind=OrderType.LIMIT, price=rig.rest_buy)
    assert submit(live, lim) is SubmitOutcome.ACCEPTED
    half = lim.quantity / 2
    rig.fill(lim.client_order_id, half)
    first, _ = live.poll()
    second, _ = live.poll()  # the same execution reported again is not booked again
    kept = booked(rig, lim, half)
    assert [(f.client_order_id, f.quantity) for f in first] == [(lim.client_order_id, kept)] and second == []
    assert (lim.status, lim.filled_quantity, held(live, rig.symbol)) == (OrderStatus.PARTIALLY_FILLED, half, kept)
    live.cancel_order(lim, time.time_ns())
    assert (lim.status, lim.filled_quantity) == (OrderStatus.CANCELED, half)
    assert live.poll()[0] == [] and held(live, rig.symbol) == kept and not rig.open_at_venue(lim.client_order_id)


REJECT_KINDS = [RejectKind.INSUFFICIENT_FUNDS, RejectKind.INVALID_SYMBOL, RejectKind.INVALID_SIZE,
                RejectKind.INVALID_PRICE, RejectKind.AUTHENTICATION_FAILED, RejectKind.PERMISSION_MISSING,
                RejectKind.MARKET_CLOSED]


@pytest.mark.parametrize("kind", REJECT_KINDS, ids=[k.value for k in REJECT_KINDS])
def test_each_typed_refusal_ends_rejected_with_its_kind(rig: Rig, kind: RejectKind) -> None:
    case = rig.reject_case(kind)
    live = build(rig, case.client, case.instruments, **(case.settings or {}))
    o = case.order
    assert submit(live, o) is SubmitOutcome.REJECTED, o.status
    assert o.status is OrderStatus.REJECTED and o.reject_reason.startswith(kind.value), o.reject_reason
    assert not rig.open_at_venue(o.client_order_id) and held(live, o.symbol) == 0
    assert live.poll()[0] == []


@pytest.mark.parametrize("how", ["hang", "drop"])
def test_a_lost_answer_is_unknown_then_reconciled_to_one_filled_order(rig: Rig, how: str) -> None:
    live = build(rig)
    sub = submitter()
    rig.lose_next_place(how)
    o = order(rig, "s1-lost")
    started = time.monotonic()
    assert submit(live, o, sub) is SubmitOutcome.UNKNOWN and o.status is OrderStatus.UNKNOWN
    waited = time.monotonic() - started
    assert waited < HANG_S, "gave up at the client's timeout, never resent"
    if how == "hang":
        assert waited >= CLIENT_TIMEOUT_S * 0.9, "the venue sat on the answer past the client's timeout"
    assert (rig.posts(), rig.orders_for("s1-lost")) == (1, 1)  # the venue acted
    assert live.resolve_unknown(sub.unknown) == [o] and not sub.unknown
    fills = poll_until_filled(live, o)
    assert o.status is OrderStatus.FILLED and [f.quantity for f in fills] == [booked(rig, o)]
    assert (rig.posts(), rig.orders_for("s1-lost"), held(live, rig.symbol)) == (1, 1, booked(rig, o))


def test_router_killed_between_send_and_answer_restores_and_never_resends(rig: Rig) -> None:
    live = build(rig)
    sent = order(rig, "s1-killed")
    stored = replace(sent)  # the system of record: journaled and stored before the send, status NEW
    rig.lose_next_place("hang")
    assert submit(live, sent) is SubmitOutcome.UNKNOWN
    assert (rig.posts(), rig.orders_for("s1-killed")) == (1, 1)
    # the router dies here: that LiveExecution and its connection are gone; a new one starts from the record
    fresh = build(rig, rig.connect())
    assert fresh.restore([stored], fills=[]) == 1 and stored.status is OrderStatus.UNKNOWN
    assert fresh.resolve_unknown({}) == [stored]
    fills = poll_until_filled(fresh, stored)
    assert stored.status is OrderStatus.FILLED and [f.quantity for f in fills] == [booked(rig, stored)]
    # the router replays the order command after the restart: the venue is asked, nothing is sent
    assert submit(fresh, stored) is SubmitOutcome.DUPLICATE
    assert (rig.posts(), rig.orders_for("s1-killed"), held(fresh, rig.symbol)) == (1, 1, booked(rig, stored))


def test_a_fill_while_mmats_was_down_is_found_at_start_and_booked_once(rig: Rig) -> None:
    live = build(rig)
    lim = order(rig, "s1-rest", kind=OrderType.LIMIT, price=rig.rest_buy)
    assert submit(live, lim) is SubmitOutcome.ACCEPTED and lim.venue_order_id
    stored = replace(lim)  # the record: acknowledged, with the venue's order id
    for client in rig.clients:
        client.close()  # MMATS stops; no LiveExecution runs while the venue fills the order
    rig.fill(lim.client_order_id, lim.quantity)
    fresh = build(rig, rig.connect())
    assert fresh.restore([stored], fills=[]) == 1
    fills, _ = fresh.reconcile_venues()
    assert [(f.client_order_id, f.quantity) for f in fills] == [(lim.client_order_id, booked(rig, lim))]
    assert stored.status is OrderStatus.FILLED and held(fresh, rig.symbol) == booked(rig, lim)
    again = fresh.reconcile_venues()[0] + fresh.poll()[0]
    assert [f for f in again if f.strategy_id != "reconciliation"] == [], "the venue's trade is booked once"


def test_a_foreign_order_is_listed_and_survives_freeze(rig: Rig) -> None:
    live = build(rig)
    ours = order(rig, "s1-ours", kind=OrderType.LIMIT, price=rig.rest_buy)
    assert submit(live, ours) is SubmitOutcome.ACCEPTED
    field, ident = rig.place_foreign()
    live.reconcile_venues()
    foreign = live.venues[rig.name].foreign_orders
    assert [f[field] for f in foreign] == [ident] and live.status()[0]["foreign_orders"] == 1
    assert live.cancel_all(time.time_ns()) == [ours] and ours.status is OrderStatus.CANCELED
    assert not rig.open_at_venue("s1-ours") and rig.foreign_open(ident), "a foreign order is never touched"
    fills, _ = live.reconcile_venues()
    assert fills == [] and [f[field] for f in live.venues[rig.name].foreign_orders] == [ident]


def test_429_with_retry_after_is_waited_out_then_one_order(rig: Rig) -> None:
    live = build(rig)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    live.venues[rig.name].guard.sleep = sleep
    rig.rate_limit_next_place(1)
    o = order(rig, "s1-rl")
    started = time.monotonic()
    assert submit(live, o) is SubmitOutcome.ACCEPTED
    assert len(waits) == 1 and 0.8 < waits[0] <= 1.0, waits  # the venue's Retry-After, before the next call
    assert time.monotonic() - started >= 0.9
    assert live.venues[rig.name].guard.rate_limited == 1
    assert (rig.posts(), rig.orders_for("s1-rl")) == (2, 1)  # refused once (not acted), then placed once
    poll_until_filled(live, o)
    assert o.status is OrderStatus.FILLED


def test_a_burst_of_5xx_on_reads_opens_the_breaker_and_the_probe_closes_it(rig: Rig) -> None:
    live = build(rig)
    rig.fail_open_orders(3)
    for _ in range(3):  # open orders: three polls in a row answered 503 (a timer's read is not retried)
        live.reconcile_venues()
    state = live.status()[0]
    assert (state["breaker"], state["breaker_opens"], state["failures"]) == ("open", 1, 3)
    mark = rig.requests()
    refused = order(rig, "s1-while-open")
    assert submit(live, refused) is SubmitOutcome.REJECTED
    assert refused.reject_reason.startswith("venue_unavailable"), refused.reject_reason
    assert rig.requests() == mark, "an open breaker sends nothing"
    time.sleep(GUARD.open_s + 0.05)
    live.reconcile_venues()  # the half-open probe (open orders) succeeds
    assert live.status()[0]["breaker"] == "closed" and not live.due_full_reconcile()
    after = order(rig, "s1-after")
    assert submit(live, after) is SubmitOutcome.ACCEPTED
    poll_until_filled(live, after)
    assert after.status is OrderStatus.FILLED and rig.orders_for("s1-while-open") == 0


def test_precision_is_fitted_before_sending(rig: Rig) -> None:
    live = build(rig)
    p = rig.precision
    own = order(rig, "s1-own")  # something to sell
    assert submit(live, own) is SubmitOutcome.ACCEPTED
    poll_until_filled(live, own)
    buy = order(rig, "s1-pbuy", qty=p.qty_in, kind=OrderType.LIMIT, price=p.buy_in)
    sell = order(rig, "s1-psell", qty=p.qty_in, side=Side.SELL, kind=OrderType.LIMIT, price=p.sell_in)
    assert submit(live, buy) is SubmitOutcome.ACCEPTED, buy.reject_reason
    assert submit(live, sell) is SubmitOutcome.ACCEPTED, sell.reject_reason
    assert rig.received("s1-pbuy") == (D(p.qty_out), D(p.buy_out)), "lot down, a buy's price down"
    assert rig.received("s1-psell") == (D(p.qty_out), D(p.sell_out)), "lot down, a sell's price up"
    mark = rig.requests()
    tiny = order(rig, "s1-tiny", qty=p.below_minimum)
    assert submit(live, tiny) is SubmitOutcome.REJECTED and tiny.reject_reason.startswith("invalid_size")
    assert rig.requests() == mark and rig.orders_for("s1-tiny") == 0


# Only the venues that have a minimum notional: OANDA's size floor is minimumTradeSize and Alpaca's is
# min_order_size, both quantities, refused before sending in test_precision_is_fitted_before_sending.
@pytest.mark.parametrize("rig", ["binance", "bybit"], indirect=True)
def test_a_notional_below_the_venue_minimum_is_refused_before_sending(rig: Rig) -> None:
    assert rig.min_notional is not None
    qty, price = rig.min_notional
    assert rig.inst[rig.symbol].min_notional > 0
    live = build(rig)
    mark = rig.requests()
    small = order(rig, "s1-small", qty=qty, kind=OrderType.LIMIT, price=price)
    assert submit(live, small) is SubmitOutcome.REJECTED
    assert small.reject_reason.startswith("invalid_size") and "notional" in small.reject_reason
    assert rig.requests() == mark, "refused before any request"


@pytest.mark.parametrize("rig", ["binance", "bybit", "oanda", "alpaca"], indirect=True)
def test_hard_flattens_the_venue_position_and_freeze_cancels_our_resting_orders(rig: Rig) -> None:
    live = build(rig)
    entry = order(rig, "s1-entry")
    assert submit(live, entry) is SubmitOutcome.ACCEPTED
    poll_until_filled(live, entry)
    client = live.venues[rig.name].client
    # the book holds what the venue holds (Bybit takes a spot buy's fee in the base coin: 0.01 -> 0.00999)
    assert held(live, rig.symbol) == venue_position(client, rig.symbol) != 0
    first = order(rig, "s1-rest-1", kind=OrderType.LIMIT, price=rig.rest_buy)
    assert submit(live, first) is SubmitOutcome.ACCEPTED
    # FREEZE: our resting orders are canceled at the venue
    assert live.cancel_all(time.time_ns()) == [first] and first.status is OrderStatus.CANCELED
    assert not rig.open_at_venue("s1-rest-1")
    second = order(rig, "s1-rest-2", kind=OrderType.LIMIT, price=rig.rest_buy)
    assert submit(live, second) is SubmitOutcome.ACCEPTED
    # HARD: cancel, then close the position with a market order
    live.flatten_all(time.time_ns(), {rig.symbol: float(rig.price)}, "kill")
    for _ in range(5):
        if held(live, rig.symbol) == 0:
            break
        live.poll()
        time.sleep(0.05)
    assert live.flatten_report == {rig.name: "ok"}, live.flatten_report
    assert second.status is OrderStatus.CANCELED and not rig.open_at_venue("s1-rest-2")
    assert venue_position(client, rig.symbol) == 0 and held(live, rig.symbol) == 0
