"""The ccxt venue adapter (``CcxtVenue``), driven through the real ccxt client against fake Binance and fake
Bybit spot venues on 127.0.0.1, with the same tests on both: that is what proves the adapter is generic.

What matters for real money: the client id goes out on every send and numbers go out exactly as the kernel
rounded them; what cannot be sent is refused before any HTTP call; every failure lands in the right typed
outcome (a lost answer is ``SubmitTimeout`` and the order is then found at the venue; a failed read is an
error, never "no such order"); and what the venue reports (orders, partial fills, paged trade history,
holdings, balances, key permissions) comes back in the kernel's types with Decimal money.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from adapters.ccxt_broker import PROFILES, CcxtVenue, instrument_from_market, translate_error
from mmats.execution.venue import DuplicateOrder, RejectKind, SubmitTimeout, VenueClient, VenueError
from mmats.model import Environment, MarketType, Order, OrderStatus, OrderType, Side, TimeInForce
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.fake_bybit import FakeBybit

KEY, SECRET = "mmats-test-key", "mmats-test-secret"
BTC, ETH = "BTC/USDT", "ETH/USDT"
TIMEOUT_MS = 500  # short, so a hung venue costs a test half a second
BALANCES = {"USDT": "100000", "BTC": "1", "ETH": "0.5", "DOGE": "1000"}
PRICES = {"BTCUSDT": "30000", "ETHUSDT": "2000"}


@dataclass
class Rig:
    """One fake exchange, a venue adapter on it, and the exchange's own names for what the tests look at."""

    kind: str
    fake: Any  # FakeBinance | FakeBybit: the same knobs, different wire protocol
    venue: CcxtVenue
    create: tuple[str, str]  # (method, path) of placing an order
    lookup: tuple[str, str]  # the first lookup by client id
    trades: tuple[str, str]
    balance: tuple[str, str]
    cid_param: str
    qty_param: str
    stop_param: str

    def sent(self, cid: str) -> dict[str, Any]:
        """The create request that carried ``cid`` (the venue's own parameter names)."""
        found = [params for method, path, params in self.fake.requests
                 if (method, path) == self.create and params.get(self.cid_param) == cid]
        assert found, f"no create request carried {cid}"
        return dict(found[-1])

    def requests_since(self, mark: int) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.fake.requests[mark:]]


def make_venue(kind: str, fake: Any, *, secret: str = SECRET, symbols: tuple[str, ...] = (BTC, ETH),
               **profile_changes: Any) -> CcxtVenue:
    venue = CcxtVenue.connect(kind, api_key=KEY, secret=secret, environment=Environment.LIVE, symbols=symbols,
                              api_base=fake.base_url, timeout_ms=TIMEOUT_MS)
    assert venue.exchange.enableRateLimit is True  # what users run ...
    venue.exchange.enableRateLimit = False  # ... but the tests must stay fast (each call would wait ~40 ms)
    if profile_changes:
        venue.profile = replace(venue.profile, **profile_changes)
    return venue


def make_rig(kind: str, **fake_options: Any) -> Rig:
    if kind == "binance":
        # duplicate_scope="open": Binance's documented rule (a client id is unique among OPEN orders)
        fake: Any = FakeBinance(KEY, SECRET, balances=BALANCES, prices=PRICES, duplicate_scope="open", **fake_options)
        fake.start()
        return Rig(kind, fake, make_venue(kind, fake), ("POST", "/api/v3/order"), ("GET", "/api/v3/order"),
                   ("GET", "/api/v3/myTrades"), ("GET", "/api/v3/account"), "newClientOrderId", "quantity",
                   "stopPrice")
    fake = FakeBybit(KEY, SECRET, balances=BALANCES, prices=PRICES, **fake_options)
    fake.start()
    return Rig(kind, fake, make_venue(kind, fake), ("POST", "/v5/order/create"), ("GET", "/v5/order/realtime"),
               ("GET", "/v5/execution/list"), ("GET", "/v5/account/wallet-balance"), "orderLinkId", "qty",
               "triggerPrice")


@pytest.fixture(params=["binance", "bybit"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    built = make_rig(request.param)
    try:
        yield built
    finally:
        built.venue.close()
        built.fake.stop()


def order(cid: str, qty: str = "0.01", side: Side = Side.BUY, kind: OrderType = OrderType.MARKET,
          price: str | None = None, stop: str | None = None, symbol: str = BTC,
          tif: TimeInForce = TimeInForce.GTC) -> Order:
    return Order(cid, symbol, side, Decimal(qty), kind, Decimal(price) if price else None,
                 Decimal(stop) if stop else None, tif, strategy_id="s1")


# ---------------------------------------------------------------------------------------- instruments


def test_the_adapter_is_a_venue_client_and_ccxt_runs_as_users_run_it(rig: Rig) -> None:
    venue: VenueClient = rig.venue  # the kernel's protocol, checked by mypy
    assert venue.name == rig.kind and venue.environment is Environment.LIVE
    assert venue.market_open(BTC) is True
    fresh = CcxtVenue.connect(rig.kind, api_key=KEY, secret=SECRET, environment=Environment.LIVE, symbols=[BTC],
                              api_base=rig.fake.base_url)
    assert fresh.exchange.enableRateLimit is True and fresh.exchange.options["maxRetriesOnFailure"] == 0
    with pytest.raises(ValueError, match="no capability profile"):
        CcxtVenue.connect("kraken", api_key=KEY, secret=SECRET, environment=Environment.LIVE, symbols=[BTC])
    with pytest.raises(ValueError, match="BACKTEST"):
        CcxtVenue(rig.venue.exchange, name="x", environment=Environment.BACKTEST, symbols=[BTC])


def test_instruments_come_from_the_venue_in_its_precision_mode(rig: Rig) -> None:
    inst = rig.venue.instruments([BTC, ETH])
    expected: dict[str, dict[str, tuple[Decimal, int, int, Decimal | None, Decimal, Decimal]]] = {
        "binance": {BTC: (Decimal("0.00001"), 5, 2, None, Decimal("0.00001"), Decimal(5)),
                    ETH: (Decimal("0.00001"), 5, 2, None, Decimal("0.00001"), Decimal(5))},
        "bybit": {BTC: (Decimal("0.000001"), 6, 2, None, Decimal("0.000048"), Decimal(1)),
                  ETH: (Decimal("0.00001"), 5, 2, Decimal("0.05"), Decimal("0.00062"), Decimal(1))}}
    for symbol, (lot, qty_places, price_places, tick, min_qty, min_notional) in expected[rig.kind].items():
        got = inst[symbol]
        assert (got.lot_size, got.quantity_precision, got.price_precision, got.tick_size, got.min_quantity,
                got.min_notional) == (lot, qty_places, price_places, tick, min_qty, min_notional), symbol
        assert got.quote_currency == "USDT" and got.market is MarketType.CRYPTO
    with pytest.raises(VenueError, match="no market DOGE/USDT") as err:
        rig.venue.instruments([BTC, "DOGE/USDT"])
    assert not err.value.retryable and err.value.kind is RejectKind.INVALID_SYMBOL


def _market(price: object, amount: object) -> dict[str, Any]:
    return {"symbol": "X/USD", "quote": "USD", "precision": {"price": price, "amount": amount},
            "limits": {"cost": {"min": "10"}, "amount": {"min": "0.1"}}}


def test_precision_modes_are_read_never_guessed() -> None:
    half = instrument_from_market(_market("0.5", "0.001"), precision_mode=TICK_SIZE)
    assert (half.tick_size, half.price_precision, half.lot_size, half.quantity_precision) == (
        Decimal("0.5"), 1, Decimal("0.001"), 3)
    tens = instrument_from_market(_market("10", "1"), precision_mode=TICK_SIZE)
    assert (tens.tick_size, tens.price_precision, tens.lot_size) == (Decimal(10), 0, Decimal(1))
    places = instrument_from_market(_market(2, 3), precision_mode=DECIMAL_PLACES)  # 2 decimals, not a tick of 2
    assert (places.tick_size, places.price_precision, places.lot_size, places.min_notional, places.min_quantity) == (
        None, 2, Decimal("0.001"), Decimal(10), Decimal("0.1"))
    with pytest.raises(VenueError, match="significant digits") as err:
        instrument_from_market(_market(5, 8), precision_mode=SIGNIFICANT_DIGITS)
    assert err.value.kind is RejectKind.UNSUPPORTED
    with pytest.raises(VenueError, match="no price precision"):
        instrument_from_market(_market(None, "0.1"))


# ------------------------------------------------------------------------------------------ placing


def test_market_order_fills_and_carries_the_client_id_and_exact_quantity(rig: Rig) -> None:
    answer = rig.venue.place(order("s1-m-1", qty="0.01"))
    assert (answer.client_order_id, answer.status, answer.order_type) == ("s1-m-1", OrderStatus.FILLED,
                                                                          OrderType.MARKET)
    assert answer.filled_quantity == Decimal("0.01") and answer.avg_fill_price == Decimal(30000)
    assert answer.venue_order_id and answer.price is None and answer.ts_ns > 0
    sent = rig.sent("s1-m-1")
    assert sent[rig.qty_param] == "0.01"  # exactly as the kernel rounded it


def test_limit_order_rests_with_its_exact_price(rig: Rig) -> None:
    answer = rig.venue.place(order("s1-l-1", qty="0.012", kind=OrderType.LIMIT, price="29000.07"))
    assert (answer.status, answer.order_type, answer.price, answer.quantity) == (
        OrderStatus.ACCEPTED, OrderType.LIMIT, Decimal("29000.07"), Decimal("0.012"))
    sent = rig.sent("s1-l-1")
    assert (sent["price"], sent[rig.qty_param], sent["timeInForce"]) == ("29000.07", "0.012", "GTC")
    assert [o.client_order_id for o in rig.venue.open_orders()] == ["s1-l-1"]


def test_stop_market_waits_for_its_stop_price_then_fills(rig: Rig) -> None:
    answer = rig.venue.place(order("s1-stop-1", side=Side.SELL, kind=OrderType.STOP, stop="29000"))
    assert (answer.status, answer.order_type, answer.stop_price, answer.price) == (
        OrderStatus.ACCEPTED, OrderType.STOP, Decimal(29000), None)
    assert rig.sent("s1-stop-1")[rig.stop_param] == "29000"
    rig.fake.set_price("BTCUSDT", "29500")
    assert rig.venue.fetch_order("s1-stop-1", BTC).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    rig.fake.set_price("BTCUSDT", "28900")
    held = rig.venue.fetch_order("s1-stop-1", BTC)
    assert held is not None and held.order_type is OrderType.STOP
    assert (held.status, held.filled_quantity, held.avg_fill_price) == (OrderStatus.FILLED, Decimal("0.01"),
                                                                        Decimal(28900))


def test_stop_limit_triggers_into_a_resting_limit(rig: Rig) -> None:
    answer = rig.venue.place(order("s1-sl-1", side=Side.SELL, kind=OrderType.STOP_LIMIT, price="28950",
                                   stop="29000"))
    assert (answer.status, answer.order_type, answer.price, answer.stop_price) == (
        OrderStatus.ACCEPTED, OrderType.STOP_LIMIT, Decimal(28950), Decimal(29000))
    rig.fake.set_price("BTCUSDT", "28900")  # triggered; 28900 is below the sell limit: it rests
    held = rig.venue.fetch_order("s1-sl-1", BTC)
    assert held is not None and held.status is OrderStatus.ACCEPTED and held.filled_quantity == 0
    rig.fake.set_price("BTCUSDT", "28960")
    held = rig.venue.fetch_order("s1-sl-1", BTC)
    assert held is not None and (held.status, held.avg_fill_price) == (OrderStatus.FILLED, Decimal(28950))


def test_what_cannot_be_sent_is_refused_before_any_http_call(rig: Rig) -> None:
    rig.venue.instruments([BTC, ETH])  # markets loaded once; nothing after this may reach the venue
    no_stops = make_venue(rig.kind, rig.fake, order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}))
    assert no_stops.capabilities().order_types == {OrderType.MARKET, OrderType.LIMIT}
    assert rig.venue.capabilities().order_types == {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
                                                    OrderType.STOP_LIMIT}
    assert rig.venue.capabilities().native_brackets is False
    no_stops.instruments([BTC])
    mark = len(rig.fake.requests)
    cases: list[tuple[CcxtVenue, Order, tuple[Order, ...], RejectKind, str]] = [
        (no_stops, order("u1", side=Side.SELL, kind=OrderType.STOP, stop="29000"), (), RejectKind.UNSUPPORTED,
         "STOP orders are not offered"),
        (rig.venue, order("u2", kind=OrderType.LIMIT, price="29000", tif=TimeInForce.DAY), (),
         RejectKind.UNSUPPORTED, "time in force DAY"),
        (rig.venue, order("u3", tif=TimeInForce.IOC), (), RejectKind.UNSUPPORTED, "limit orders only"),
        (rig.venue, order("u4"), (order("u4-tp", side=Side.SELL, kind=OrderType.LIMIT, price="31000"),),
         RejectKind.UNSUPPORTED, "take-profit"),
        (rig.venue, order("u5", qty="0.0100001"), (), RejectKind.INVALID_SIZE, "not a whole number of the lot"),
        (rig.venue, order("u6", kind=OrderType.LIMIT, price="29000.001"), (), RejectKind.INVALID_PRICE,
         "not on the tick"),
        (rig.venue, order("u7", side=Side.SELL, kind=OrderType.STOP, stop="28999.999"), (), RejectKind.INVALID_PRICE,
         "stop price"),
        (rig.venue, order("u8", symbol="DOGE/USDT"), (), RejectKind.INVALID_SYMBOL, "no market"),
    ]
    for venue, sent, children, kind, words in cases:
        with pytest.raises(VenueError, match=words) as err:
            venue.place(sent, children)
        assert (err.value.kind, err.value.retryable) == (kind, False), sent.client_order_id
    assert rig.requests_since(mark) == [], "a refusal must not cost a single HTTP call"


def test_a_market_that_does_not_list_stops_refuses_them_before_sending() -> None:
    rig = make_rig("binance", order_types={"ETHUSDT": ("LIMIT", "LIMIT_MAKER", "MARKET")})
    try:
        rig.venue.instruments([ETH])
        mark = len(rig.fake.requests)
        with pytest.raises(VenueError, match="ETH/USDT does not take STOP orders") as err:
            rig.venue.place(order("e1", qty="0.1", side=Side.SELL, kind=OrderType.STOP, stop="1900", symbol=ETH))
        assert err.value.kind is RejectKind.UNSUPPORTED and rig.requests_since(mark) == []
        assert rig.venue.place(order("b1", side=Side.SELL, kind=OrderType.STOP, stop="29000")).status \
            is OrderStatus.ACCEPTED  # BTC/USDT lists STOP_LOSS
    finally:
        rig.fake.stop()


# --------------------------------------------------------------------------------- cancel and lookups


def test_cancel_by_client_id(rig: Rig) -> None:
    rig.venue.place(order("c-rest", kind=OrderType.LIMIT, price="29000"))
    canceled = rig.venue.cancel("c-rest", BTC)
    assert canceled is not None and (canceled.client_order_id, canceled.status) == ("c-rest", OrderStatus.CANCELED)
    again = rig.venue.cancel("c-rest", BTC)  # no longer open: returned as it is, not an error
    assert again is not None and again.status is OrderStatus.CANCELED
    rig.venue.place(order("c-filled"))
    filled = rig.venue.cancel("c-filled", BTC)
    assert filled is not None and filled.status is OrderStatus.FILLED
    assert rig.venue.cancel("c-never-sent", BTC) is None
    assert rig.fake.open_orders() == []


def test_an_untriggered_stop_is_cancelled(rig: Rig) -> None:
    rig.venue.place(order("c-stop", side=Side.SELL, kind=OrderType.STOP_LIMIT, price="28900", stop="29000"))
    canceled = rig.venue.cancel("c-stop", BTC)
    assert canceled is not None and canceled.status is OrderStatus.CANCELED
    assert canceled.order_type is OrderType.STOP_LIMIT and rig.fake.open_orders() == []


def test_fetch_by_client_id_and_a_positive_not_found(rig: Rig) -> None:
    placed = rig.venue.place(order("f-1", kind=OrderType.LIMIT, price="29000"))
    held = rig.venue.fetch_order("f-1", BTC)
    assert held is not None and (held.venue_order_id, held.status, held.price) == (
        placed.venue_order_id, OrderStatus.ACCEPTED, Decimal(29000))
    assert rig.venue.fetch_order("f-unknown", BTC) is None


@pytest.mark.parametrize("failure", ["503", "hang"])
def test_a_failed_read_is_an_error_never_none(rig: Rig, failure: str) -> None:
    rig.venue.place(order("r-1", kind=OrderType.LIMIT, price="29000"))
    method, path = rig.lookup
    if failure == "503":
        rig.fake.fail_next(path, method, 503)
    else:
        rig.fake.hang_next(path, method, 1.0, act=False)
    for probe in ("r-1", "r-unknown"):
        with pytest.raises(VenueError) as err:
            rig.venue.fetch_order(probe, BTC)
        assert (err.value.retryable, err.value.kind) == (True, RejectKind.VENUE_UNAVAILABLE)
        assert not isinstance(err.value, SubmitTimeout)
        rig.fake.fail_next(path, method, 503) if failure == "503" else rig.fake.hang_next(path, method, 1.0,
                                                                                           act=False)
    rig.fake.clear_faults()
    assert rig.venue.fetch_order("r-unknown", BTC) is None


@pytest.mark.parametrize("call", ["open_orders", "fills", "balances", "positions", "cancel"])
def test_5xx_while_reading_is_retryable(rig: Rig, call: str) -> None:
    rig.venue.place(order("x-1", kind=OrderType.LIMIT, price="29000"))
    paths = {"open_orders": ("GET", "/api/v3/openOrders" if rig.kind == "binance" else "/v5/order/realtime"),
             "fills": rig.trades, "balances": rig.balance, "positions": rig.balance,
             "cancel": rig.lookup if rig.kind == "bybit" else ("DELETE", "/api/v3/order")}
    method, path = paths[call]
    rig.fake.fail_next(path, method, 502)
    calls: dict[str, Callable[[], object]] = {
        "open_orders": rig.venue.open_orders, "fills": lambda: rig.venue.fills(0, [BTC]),
        "balances": rig.venue.balances, "positions": rig.venue.positions,
        "cancel": lambda: rig.venue.cancel("x-1", BTC)}
    with pytest.raises(VenueError) as err:
        calls[call]()
    assert (err.value.retryable, err.value.kind, type(err.value)) == (True, RejectKind.VENUE_UNAVAILABLE, VenueError)


def test_bybit_finds_an_order_gone_from_the_realtime_book_in_the_history() -> None:
    rig = make_rig("bybit")
    try:
        rig.venue.place(order("h-1"))
        rig.fake.recent_closed_kept = 0  # /v5/order/realtime no longer answers for it
        held = rig.venue.fetch_order("h-1", BTC)
        assert held is not None and held.status is OrderStatus.FILLED
        assert rig.fake.count("GET", "/v5/order/history") >= 1
        assert rig.venue.fetch_order("h-unknown", BTC) is None  # both books said no
    finally:
        rig.fake.stop()


# -------------------------------------------------------------------------------- fills and partial


def test_a_partial_fill_is_reported_then_the_rest_cancelled(rig: Rig) -> None:
    placed = rig.venue.place(order("p-1", qty="0.01", kind=OrderType.LIMIT, price="29000"))
    rig.fake.fill_partially("p-1", "0.004")
    held = rig.venue.fetch_order("p-1", BTC)
    assert held is not None and (held.status, held.filled_quantity, held.avg_fill_price) == (
        OrderStatus.PARTIALLY_FILLED, Decimal("0.004"), Decimal(29000))
    (fill,) = rig.venue.fills(time.time_ns() - 60 * 10**9, [BTC])
    assert (fill.venue_order_id, fill.side, fill.quantity, fill.price) == (placed.venue_order_id, Side.BUY,
                                                                           Decimal("0.004"), Decimal(29000))
    # Bybit's trade report carries the client id; Binance's does not (the kernel maps it by venue id)
    assert fill.client_order_id == ("p-1" if rig.kind == "bybit" else "")
    assert fill.liquidity.value == "MAKER"
    canceled = rig.venue.cancel("p-1", BTC)
    assert canceled is not None and (canceled.status, canceled.filled_quantity) == (OrderStatus.CANCELED,
                                                                                    Decimal("0.004"))


def test_fees_are_reported_as_the_venue_charges_them(rig: Rig) -> None:
    rig.venue.place(order("fee-buy", qty="0.01"))
    rig.venue.place(order("fee-sell", qty="0.01", side=Side.SELL))
    buy, sell = rig.venue.fills(time.time_ns() - 60 * 10**9, [BTC])
    assert (sell.fee, sell.fee_currency) == (Decimal("0.3"), "USDT")
    if rig.kind == "binance":  # this fake charges the quote on both sides
        assert (buy.fee, buy.fee_currency) == (Decimal("0.3"), "USDT")
    else:  # Bybit charges a spot buy in the base coin received
        assert (buy.fee, buy.fee_currency) == (Decimal("0.00001"), "BTC")


def test_binance_fee_in_the_base_received() -> None:
    rig = make_rig("binance", fee_mode="received")
    try:
        rig.venue.place(order("fee-base"))
        (fill,) = rig.venue.fills(0, [BTC])
        assert (fill.fee, fill.fee_currency) == (Decimal("0.00001"), "BTC")
    finally:
        rig.fake.stop()


def test_ids_are_unique_per_venue_across_symbols(rig: Rig) -> None:
    btc = rig.venue.place(order("id-btc"))
    eth = rig.venue.place(order("id-eth", qty="0.1", symbol=ETH))
    assert btc.venue_order_id != eth.venue_order_id  # Binance numbers both "1": reported as "BTC/USDT:1"
    fills = rig.venue.fills(time.time_ns() - 60 * 10**9, [BTC, ETH])
    assert len({f.fill_id for f in fills}) == 2
    assert {f.venue_order_id for f in fills} == {btc.venue_order_id, eth.venue_order_id}
    assert rig.venue.fetch_order("id-eth", ETH).venue_order_id == eth.venue_order_id  # type: ignore[union-attr]


def test_fills_page_through_the_whole_history(rig: Rig) -> None:
    paging = replace(rig.venue.profile.trade_paging, limit=3)  # small pages: the same code as 1000 / 100
    venue = make_venue(rig.kind, rig.fake, trade_paging=paging)
    for i in range(4):
        venue.place(order(f"old-{i}", qty="0.001"))
    rig.fake.shift_history(-3 * 86_400_000)  # older than Binance's 24 h request window
    for i in range(3):
        venue.place(order(f"new-{i}", qty="0.001"))
    mark = len(rig.fake.requests)
    fills = venue.fills(time.time_ns() - 4 * 86_400 * 10**9, [BTC])
    assert len(fills) == 7 and len({f.fill_id for f in fills}) == 7
    assert [f.ts_ns for f in fills] == sorted(f.ts_ns for f in fills)
    assert sum(1 for r in rig.requests_since(mark) if r == rig.trades) > 2, "more than one page was read"
    recent = venue.fills(time.time_ns() - 3600 * 10**9, [BTC])
    assert len(recent) == 3
    if rig.kind == "bybit":
        assert sorted(f.client_order_id for f in recent) == ["new-0", "new-1", "new-2"]


# -------------------------------------------------------------------------------------- rejections


REJECTIONS = ["insufficient_funds", "invalid_symbol", "invalid_size", "invalid_price", "authentication",
              "permission", "duplicate"]


@pytest.mark.parametrize("case", REJECTIONS)
def test_each_rejection_is_typed(rig: Rig, case: str) -> None:
    venue = rig.venue
    venue.instruments([BTC, ETH])
    sent = order(f"rej-{case}")
    expected: RejectKind | None = None
    if case == "insufficient_funds":
        sent, expected = order("rej-funds", qty="10"), RejectKind.INSUFFICIENT_FUNDS  # 300,000 USDT
    elif case == "invalid_symbol":
        rig.fake.delist("ETHUSDT")
        sent, expected = order("rej-sym", qty="0.1", symbol=ETH), RejectKind.INVALID_SYMBOL
    elif case == "invalid_size":  # on the lot, but below the venue's minimum (Binance: notional; Bybit: qty)
        sent, expected = order("rej-size", qty="0.0001" if rig.kind == "binance" else "0.00002"), \
            RejectKind.INVALID_SIZE
    elif case == "invalid_price":  # Binance: above maxPrice; Bybit: outside the price band
        sent = order("rej-price", kind=OrderType.LIMIT, side=Side.SELL if rig.kind == "binance" else Side.BUY,
                     price="2000000" if rig.kind == "binance" else "50000")
        expected = RejectKind.INVALID_PRICE
    elif case == "authentication":
        venue = make_venue(rig.kind, rig.fake, secret="not-the-secret")
        venue.instruments([BTC])
        expected = RejectKind.AUTHENTICATION_FAILED
    elif case == "permission":
        rig.fake.can_trade = False
        expected = RejectKind.PERMISSION_MISSING
    else:
        venue.place(order("rej-dup", kind=OrderType.LIMIT, price="29000"))
        sent = order("rej-dup", kind=OrderType.LIMIT, price="28000")
    before = len(rig.fake.open_orders())
    with pytest.raises(VenueError) as err:
        venue.place(sent)
    if case == "duplicate":
        assert isinstance(err.value, DuplicateOrder) and not err.value.retryable
        assert venue.fetch_order("rej-dup", BTC).price == Decimal(29000)  # type: ignore[union-attr]
    else:
        assert (err.value.kind, err.value.retryable, type(err.value)) == (expected, False, VenueError), str(err.value)
    assert len(rig.fake.open_orders()) == before


def test_429_with_retry_after(rig: Rig) -> None:
    method, path = rig.create
    rig.fake.fail_next(path, method, 429, retry_after=7)
    with pytest.raises(VenueError) as err:
        rig.venue.place(order("rl-1"))
    assert (err.value.kind, err.value.retryable, err.value.retry_after_s) == (RejectKind.RATE_LIMITED, True, 7.0)
    assert not isinstance(err.value, SubmitTimeout) and "rl-1" not in rig.fake.orders
    assert rig.venue.place(order("rl-1")).status is OrderStatus.FILLED  # the same id, once the wait is over


def test_bybit_rate_limit_reset_timestamp_is_the_wait() -> None:
    rig = make_rig("bybit")
    try:
        rig.fake.rate_limit_next("/v5/order/create", "POST", reset_in_s=3)
        with pytest.raises(VenueError) as err:
            rig.venue.place(order("rl-2"))
        assert (err.value.kind, err.value.retryable) == (RejectKind.RATE_LIMITED, True)
        assert err.value.retry_after_s is not None and 2.0 < err.value.retry_after_s <= 3.0
    finally:
        rig.fake.stop()


# ------------------------------------------------------------------------------------- lost answers


@pytest.mark.parametrize("loss", ["hang_after_acting", "503_after_acting", "dropped_after_acting"])
def test_a_lost_answer_is_submit_timeout_and_the_order_is_at_the_venue(rig: Rig, loss: str) -> None:
    rig.venue.instruments([BTC])
    method, path = rig.create
    if loss == "hang_after_acting":
        rig.fake.hang_next(path, method, 1.0, act=True)  # longer than the client's 0.5 s
    else:
        rig.fake.lose_next(path, method, 503 if loss == "503_after_acting" else None)
    with pytest.raises(SubmitTimeout) as err:
        rig.venue.place(order("lost-1"))
    assert err.value.retryable is False
    held = rig.venue.fetch_order("lost-1", BTC)  # what the kernel asks before anything is resent
    assert held is not None and held.status is OrderStatus.FILLED and held.filled_quantity == Decimal("0.01")


def test_5xx_before_acting_is_still_a_lost_answer_while_placing(rig: Rig) -> None:
    method, path = rig.create
    rig.fake.fail_next(path, method, 503)  # the venue did not act, but the client cannot know that
    with pytest.raises(SubmitTimeout):
        rig.venue.place(order("lost-2"))
    assert rig.venue.fetch_order("lost-2", BTC) is None


def test_a_venue_that_is_down_refuses_the_connection_then_comes_back_with_its_state(rig: Rig) -> None:
    rig.venue.place(order("down-1", kind=OrderType.LIMIT, price="29000"))
    port = rig.fake.base_url
    rig.fake.stop()
    with pytest.raises(VenueError) as err:
        rig.venue.place(order("down-2"))
    assert (type(err.value), err.value.retryable, err.value.kind) == (VenueError, True, RejectKind.VENUE_UNAVAILABLE)
    with pytest.raises(VenueError) as err:
        rig.venue.fetch_order("down-1", BTC)
    assert err.value.retryable
    rig.fake.start()
    assert rig.fake.base_url == port
    held = rig.venue.fetch_order("down-1", BTC)
    assert held is not None and held.status is OrderStatus.ACCEPTED
    assert rig.venue.fetch_order("down-2", BTC) is None


def test_chaos_never_hides_an_order_or_reports_a_false_retry(rig: Rig) -> None:
    rig.venue.instruments([BTC])
    rig.fake.set_chaos(0.35, seed=11, hang_s=0.7)
    outcomes: dict[str, str] = {}
    for i in range(10):
        cid = f"chaos-{i}"
        try:
            rig.venue.place(order(cid, qty="0.001", kind=OrderType.LIMIT if i % 2 else OrderType.MARKET,
                                  price="29000" if i % 2 else None))
            outcomes[cid] = "placed"
        except SubmitTimeout:
            outcomes[cid] = "unknown"
        except VenueError as exc:
            assert exc.retryable, str(exc)
            outcomes[cid] = "retry"
    rig.fake.set_chaos(0)
    assert rig.fake.faults > 0
    for cid, outcome in outcomes.items():
        held = rig.venue.fetch_order(cid, BTC)
        if outcome == "placed":
            assert held is not None, cid
        if outcome == "retry":  # "retryable" promises the venue did not act
            assert held is None and cid not in rig.fake.orders, cid
        assert (held is not None) == (cid in rig.fake.orders), cid


# --------------------------------------------------------------------- foreign orders, holdings, keys


def test_foreign_orders_appear_under_their_own_client_id(rig: Rig) -> None:
    ours = rig.venue.place(order("mine-1", kind=OrderType.LIMIT, price="29000"))
    foreign = rig.fake.place_foreign("ETHUSDT", "SELL", "0.1", "2500")
    foreign_id = f"{ETH}:{foreign.order_id}" if rig.kind == "binance" else foreign.order_id  # Binance: per symbol
    by_venue_id = {o.venue_order_id: o for o in rig.venue.open_orders()}
    assert set(by_venue_id) == {ours.venue_order_id, foreign_id}
    theirs = by_venue_id[foreign_id]
    assert theirs.client_order_id == (foreign.client_order_id if rig.kind == "binance" else "")
    assert (theirs.symbol, theirs.side, theirs.quantity, theirs.price) == (ETH, Side.SELL, Decimal("0.1"),
                                                                           Decimal(2500))
    assert by_venue_id[ours.venue_order_id].client_order_id == "mine-1"


def test_open_orders_page_through_the_book() -> None:
    rig = make_rig("bybit")
    try:
        venue = make_venue("bybit", rig.fake, open_orders_page_limit=2)
        for i in range(5):
            venue.place(order(f"book-{i}", qty="0.001", kind=OrderType.LIMIT, price=str(29000 - i)))
        assert sorted(o.client_order_id for o in venue.open_orders()) == [f"book-{i}" for i in range(5)]
    finally:
        rig.fake.stop()


def test_positions_are_configured_bases_and_balances_are_totals(rig: Rig) -> None:
    rig.venue.place(order("pos-1", qty="0.01"))
    rig.venue.place(order("pos-2", qty="0.01", kind=OrderType.LIMIT, price="29000"))  # locks 290 USDT: still held
    held = {p.symbol: p.quantity for p in rig.venue.positions()}
    btc = Decimal("1.01") - (Decimal("0.00001") if rig.kind == "bybit" else 0)  # Bybit took its fee in BTC
    assert held == {BTC: btc, ETH: Decimal("0.5")}  # USDT is cash, DOGE is no configured market's base
    balances = rig.venue.balances()
    usdt = Decimal(100000) - Decimal(300) - (Decimal("0.3") if rig.kind == "binance" else 0)
    assert balances == {"USDT": usdt, "BTC": btc, "ETH": Decimal("0.5"), "DOGE": Decimal(1000)}


def test_holdings_that_cannot_be_attributed_are_refused_at_build() -> None:
    exchange = ccxt.binance()
    with pytest.raises(ValueError, match="share the base BTC"):
        CcxtVenue(exchange, name="b", environment=Environment.LIVE, symbols=["BTC/USDT", "BTC/USDC"])
    with pytest.raises(ValueError, match="quote"):
        CcxtVenue(exchange, name="b", environment=Environment.LIVE, symbols=["BTC/USDT", "ETH/BTC"])
    with pytest.raises(ValueError, match="no entry"):
        CcxtVenue(ccxt.kraken(), name="k", environment=Environment.LIVE, symbols=["BTC/USD"])


def test_account_check_reports_what_the_key_can_do(rig: Rig) -> None:
    check = rig.venue.account_check()
    assert (check.authenticated, check.can_trade, check.can_withdraw) == (True, True, True)
    assert any("withdraw" in p for p in check.problems)
    rig.fake.can_withdraw = False
    assert rig.venue.account_check().problems == []
    rig.fake.can_trade = False
    check = rig.venue.account_check()
    assert (check.can_trade, check.problems) == (False, ["the key has no trading permission"])
    refused = make_venue(rig.kind, rig.fake, secret="wrong").account_check()
    assert refused.authenticated is False and refused.problems[0].startswith("authentication failed")


@pytest.fixture()
def binance() -> Iterator[Rig]:
    built = make_rig("binance")
    try:
        yield built
    finally:
        built.venue.close()
        built.fake.stop()


def test_binance_a_trade_only_key_passes_even_when_the_account_can_withdraw(binance: Rig) -> None:
    binance.fake.account_can_withdraw = True  # /api/v3/account canWithdraw: the account's, not the key's
    binance.fake.can_withdraw = False  # the key's enableWithdrawals
    check = binance.venue.account_check()
    assert (check.authenticated, check.can_trade, check.can_withdraw, check.problems) == (True, True, False, [])
    assert binance.fake.count("GET", "/sapi/v1/account/apiRestrictions") == 1
    assert "enableWithdrawals=False" in check.detail and "canWithdraw=True" in check.detail


def test_binance_a_key_that_can_withdraw_is_refused_whatever_the_account_says(binance: Rig) -> None:
    binance.fake.account_can_withdraw = False
    binance.fake.can_withdraw = True
    check = binance.venue.account_check()
    assert (check.can_trade, check.can_withdraw) == (True, True)
    assert check.problems == ["the key can withdraw funds: create a trade-only key (docs/venues.md)"]


def test_binance_a_read_only_key_cannot_trade(binance: Rig) -> None:
    binance.fake.can_withdraw = False
    binance.fake.read_only = True  # enableSpotAndMarginTrading false; the account itself can trade
    check = binance.venue.account_check()
    assert (check.authenticated, check.can_trade, check.can_withdraw) == (True, False, False)
    assert check.problems == ["the key has no trading permission"]
    with pytest.raises(VenueError):  # and Binance refuses its orders (-2015): nothing is placed
        binance.venue.place(order("ro-1"))
    assert binance.fake.open_orders() == [] and binance.fake.trades == []


def test_binance_key_restrictions_failures_are_typed(binance: Rig) -> None:
    binance.fake.fail_next("/sapi/v1/account/apiRestrictions", "GET", 503)
    with pytest.raises(VenueError) as err:  # a failed read is an error, never "this key is fine"
        binance.venue.account_check()
    assert err.value.retryable and err.value.kind is RejectKind.VENUE_UNAVAILABLE
    binance.fake.fail_next("/sapi/v1/account/apiRestrictions", "GET", 429, retry_after=2)
    with pytest.raises(VenueError) as err:
        binance.venue.account_check()
    assert (err.value.retryable, err.value.kind, err.value.retry_after_s) == (True, RejectKind.RATE_LIMITED, 2.0)
    assert binance.venue.account_check().can_withdraw is True, "the next check reads the key again"


def test_binance_testnet_serves_no_key_restrictions_so_withdraw_is_unknown(binance: Rig) -> None:
    binance.fake.can_withdraw = False
    del binance.venue.exchange.urls["api"]["sapi"]  # what ccxt's sandbox mode leaves: no sapi URL
    check = binance.venue.account_check()
    assert (check.can_trade, check.can_withdraw, check.problems) == (True, None, [])
    assert binance.fake.count("GET", "/sapi/v1/account/apiRestrictions") == 0


# -------------------------------------------------------------------------- the translation table


def _err(cls: type[Exception], text: str) -> Exception:
    return cls(text)


TABLE: list[tuple[str, Exception, bool, type[VenueError], RejectKind, bool]] = [
    ("binance", _err(ccxt.InsufficientFunds, 'binance {"code":-2010,"msg":"Account has insufficient balance"}'),
     True, VenueError, RejectKind.INSUFFICIENT_FUNDS, False),
    ("binance", _err(ccxt.InvalidOrder, 'binance {"code":-2010,"msg":"Duplicate order sent."}'), True,
     DuplicateOrder, RejectKind.OTHER, False),
    ("binance", _err(ccxt.BadSymbol, 'binance {"code":-1121,"msg":"Invalid symbol."}'), True, VenueError,
     RejectKind.INVALID_SYMBOL, False),
    ("binance", _err(ccxt.InvalidOrder, "binance order amount should be evenly divisible by lot size "
                                        '{"code":-1013,"msg":"Filter failure: LOT_SIZE"}'), True, VenueError,
     RejectKind.INVALID_SIZE, False),
    ("binance", _err(ccxt.ExchangeError, 'binance {"code":-1013,"msg":"Filter failure: NOTIONAL"}'), True,
     VenueError, RejectKind.INVALID_SIZE, False),
    ("binance", _err(ccxt.InvalidOrder, 'binance {"code":-1013,"msg":"Filter failure: MIN_QTY"}'), True,
     VenueError, RejectKind.INVALID_SIZE, False),
    ("binance", _err(ccxt.InvalidOrder, 'binance {"code":-1013,"msg":"Filter failure: PRICE_FILTER"}'), True,
     VenueError, RejectKind.INVALID_PRICE, False),
    ("binance", _err(ccxt.AuthenticationError, 'binance {"code":-2015,"msg":"Invalid API-key"}'), True,
     VenueError, RejectKind.AUTHENTICATION_FAILED, False),
    ("binance", _err(ccxt.PermissionDenied, "binance This account may not place or cancel orders."), True,
     VenueError, RejectKind.PERMISSION_MISSING, False),
    ("binance", _err(ccxt.RateLimitExceeded, 'binance {"code":-1003,"msg":"Too many requests"}'), True,
     VenueError, RejectKind.RATE_LIMITED, True),
    ("binance", _err(ccxt.DDoSProtection, "binance 418 I'm a teapot"), False, VenueError, RejectKind.RATE_LIMITED,
     True),
    ("binance", _err(ccxt.ExchangeNotAvailable, "binance POST /api/v3/order 503 Service Unavailable"), True,
     SubmitTimeout, RejectKind.VENUE_UNAVAILABLE, False),
    ("binance", _err(ccxt.ExchangeNotAvailable, "binance GET /api/v3/order 503 Service Unavailable"), False,
     VenueError, RejectKind.VENUE_UNAVAILABLE, True),
    ("binance", _err(ccxt.RequestTimeout, "binance POST /api/v3/order"), True, SubmitTimeout,
     RejectKind.VENUE_UNAVAILABLE, False),
    ("binance", _err(ccxt.RequestTimeout, "binance GET /api/v3/order"), False, VenueError,
     RejectKind.VENUE_UNAVAILABLE, True),
    ("binance", _err(ccxt.NetworkError, "Connection aborted."), True, SubmitTimeout, RejectKind.VENUE_UNAVAILABLE,
     False),
    ("binance", _err(ccxt.NetworkError, "[Errno 111] Connection refused"), True, VenueError,
     RejectKind.VENUE_UNAVAILABLE, True),
    ("binance", _err(ccxt.ExchangeError, "binance something nobody documented"), True, SubmitTimeout,
     RejectKind.VENUE_UNAVAILABLE, False),
    ("binance", _err(ccxt.InvalidNonce, "binance -1021 Timestamp outside of the recvWindow"), True, VenueError,
     RejectKind.OTHER, True),
    ("binance", _err(ccxt.MarketClosed, 'binance {"code":-1013,"msg":"Market is closed."}'), True, VenueError,
     RejectKind.MARKET_CLOSED, False),
    ("bybit", _err(ccxt.InsufficientFunds, 'bybit {"retCode":170131,"retMsg":"Insufficient balance."}'), True,
     VenueError, RejectKind.INSUFFICIENT_FUNDS, False),
    ("bybit", _err(ccxt.InvalidOrder, 'bybit {"retCode":170121,"retMsg":"Invalid symbol."}'), True, VenueError,
     RejectKind.INVALID_SYMBOL, False),
    ("bybit", _err(ccxt.InvalidOrder, 'bybit {"retCode":170136,"retMsg":"Order quantity lower than the minimum."}'),
     True, VenueError, RejectKind.INVALID_SIZE, False),
    ("bybit", _err(ccxt.InvalidOrder, 'bybit {"retCode":170193,"retMsg":"Buy order price cannot be higher"}'),
     True, VenueError, RejectKind.INVALID_PRICE, False),
    ("bybit", _err(ccxt.InvalidOrder, 'bybit {"retCode":170141,"retMsg":"Duplicate clientOrderId."}'), True,
     DuplicateOrder, RejectKind.OTHER, False),
    ("bybit", _err(ccxt.AuthenticationError, 'bybit {"retCode":10003,"retMsg":"API key is invalid."}'), True,
     VenueError, RejectKind.AUTHENTICATION_FAILED, False),
    ("bybit", _err(ccxt.PermissionDenied, 'bybit {"retCode":10005,"retMsg":"Permission denied"}'), True,
     VenueError, RejectKind.PERMISSION_MISSING, False),
    ("bybit", _err(ccxt.RateLimitExceeded, 'bybit {"retCode":10006,"retMsg":"Too many visits."}'), True,
     VenueError, RejectKind.RATE_LIMITED, True),
    ("bybit", _err(ccxt.RateLimitExceeded, "bybit GET /v5/order/realtime 429 Too Many Requests"), False,
     VenueError, RejectKind.RATE_LIMITED, True),
]


@pytest.mark.parametrize(("exchange", "exc", "placing", "cls", "kind", "retryable"), TABLE,
                         ids=[f"{e}-{type(x).__name__}-{i}" for i, (e, x, *_) in enumerate(TABLE)])
def test_translation_table(exchange: str, exc: Exception, placing: bool, cls: type[VenueError], kind: RejectKind,
                           retryable: bool) -> None:
    got = translate_error(exc, PROFILES[exchange], placing=placing)
    assert (type(got), got.kind, got.retryable) == (cls, kind, retryable)


def test_retry_after_comes_from_the_answer_headers() -> None:
    exc = ccxt.RateLimitExceeded("binance 429")
    got = translate_error(exc, PROFILES["binance"], placing=True, headers={"Retry-After": "12"})
    assert got.retry_after_s == 12.0
    got = translate_error(exc, PROFILES["bybit"], placing=True, headers={"X-Bapi-Limit-Reset-Timestamp": "10500"},
                          now_ms=10_000)
    assert got.retry_after_s == 0.5
    assert translate_error(exc, PROFILES["binance"], placing=True).retry_after_s is None
