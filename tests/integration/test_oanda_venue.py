"""OANDA orders through the real oandapyV20 client against a fake OANDA v20 on 127.0.0.1 (no Ray).

Each test drives ``OandaVenue`` call by call and checks both what the adapter reports and what the fake venue
now holds, so a report that disagrees with the venue fails here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.oanda_broker import OandaVenue, oanda_instrument, reject_kind
from mmats.errors import ValidationError
from mmats.execution.venue import DuplicateOrder, RejectKind, SubmitTimeout, VenueClient, VenueError
from mmats.model import Environment, MarketType, Order, OrderStatus, OrderType, Side
from tests.fixtures.fake_oanda import FakeOanda

TOKEN, ACCOUNT = "oanda-test-token-0001", "101-004-1234567-001"
ORDERS = f"/v3/accounts/{ACCOUNT}/orders"
SYMBOLS = ["EUR/USD", "USD_JPY", "DE30_EUR"]


@pytest.fixture()
def fake() -> Iterator[FakeOanda]:
    with FakeOanda(TOKEN, ACCOUNT, {"EUR_USD": "1.10000", "USD_JPY": "150.000", "DE30_EUR": "15000.0"}) as venue:
        yield venue


def connect(fake: FakeOanda, *, token: str = TOKEN, account: str = ACCOUNT, timeout_s: float = 2.0,
            page_size: int = 1000, symbols: list[str] | None = None) -> OandaVenue:
    return OandaVenue.connect(token=token, account_id=account, environment=Environment.PAPER,
                              symbols=symbols or SYMBOLS, api_base=fake.base_url, timeout_s=timeout_s,
                              page_size=page_size)


@pytest.fixture()
def venue(fake: FakeOanda) -> Iterator[OandaVenue]:
    client = connect(fake)
    yield client
    client.close()


def market(cid: str, qty: str = "1000", side: Side = Side.BUY, symbol: str = "EUR/USD") -> Order:
    return Order(cid, symbol, side, Decimal(qty))


def limit(cid: str, price: str, qty: str = "1000", side: Side = Side.BUY, symbol: str = "EUR/USD") -> Order:
    return Order(cid, symbol, side, Decimal(qty), OrderType.LIMIT, price=Decimal(price))


def stop(cid: str, price: str, qty: str = "1000", side: Side = Side.BUY, symbol: str = "EUR/USD") -> Order:
    return Order(cid, symbol, side, Decimal(qty), OrderType.STOP, stop_price=Decimal(price))


# ---------------------------------------------------------------------------------------- reference data


def test_it_is_a_venue_client_with_oandas_order_types(venue: OandaVenue) -> None:
    client: VenueClient = venue  # checked by mypy against the protocol
    assert client.name == "oanda"
    caps = venue.capabilities()
    assert caps.order_types == frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP})
    assert caps.native_brackets and "priceBound" in caps.notes["STOP_LIMIT"]
    assert venue.environment is Environment.PAPER


def test_instruments_precision_from_the_account_and_both_symbol_forms(fake: FakeOanda, venue: OandaVenue) -> None:
    inst = venue.instruments(["EUR/USD", "EUR_USD", "USD_JPY", "DE30_EUR"])
    eur, jpy, dax = inst["EUR/USD"], inst["USD_JPY"], inst["DE30_EUR"]
    assert inst["EUR_USD"].symbol == "EUR_USD" and eur.symbol == "EUR/USD"
    assert (eur.market, eur.quote_currency, eur.price_precision, eur.tick_size, eur.pip_size) == (
        MarketType.FOREX, "USD", 5, Decimal("0.00001"), Decimal("0.0001"))
    assert (eur.quantity_precision, eur.lot_size, eur.min_quantity) == (0, Decimal(1), Decimal(1))
    assert (jpy.quote_currency, jpy.tick_size) == ("JPY", Decimal("0.001"))
    # a CFD trading tenths: tradeUnitsPrecision 1 and minimumTradeSize come through
    assert (dax.quote_currency, dax.tick_size, dax.lot_size, dax.min_quantity) == (
        "EUR", Decimal("0.1"), Decimal("0.1"), Decimal(1))
    with pytest.raises(VenueError, match="GBP/ZZZ") as err:
        venue.instruments(["EUR/USD", "GBP/ZZZ"])
    assert err.value.kind is RejectKind.INVALID_SYMBOL and not err.value.retryable
    assert oanda_instrument("eur/usd") == "EUR_USD"


def test_account_check_balances_and_bad_credentials(fake: FakeOanda, venue: OandaVenue) -> None:
    check = venue.account_check()
    assert (check.authenticated, check.can_trade, check.can_withdraw, check.problems) == (True, True, None, [])
    assert venue.balances() == {"USD": Decimal("100000.0000")}
    bad = connect(fake, token="wrong-token").account_check()
    assert not bad.authenticated and "401" in bad.detail
    other = connect(fake, account="101-004-7654321-001").account_check()
    assert other.authenticated and not other.can_trade and "403" in other.detail


def test_market_open_follows_pricing_tradeable(fake: FakeOanda, venue: OandaVenue) -> None:
    assert venue.market_open("EUR/USD") is True
    fake.halt("EUR_USD")
    assert venue.market_open("EUR/USD") is False and venue.market_open("USD_JPY") is True
    fake.halt("EUR_USD", False)
    assert venue.market_open("EUR_USD") is True
    with pytest.raises(VenueError) as err:
        venue.market_open("XXX/YYY")
    assert err.value.kind is RejectKind.INVALID_SYMBOL


def test_an_environment_other_than_paper_or_live_is_refused(fake: FakeOanda) -> None:
    with pytest.raises(ValidationError, match="BACKTEST"):
        OandaVenue.connect(token=TOKEN, account_id=ACCOUNT, environment=Environment.BACKTEST, symbols=SYMBOLS,
                           api_base=fake.base_url)


# ------------------------------------------------------------------------------------------------ orders


def test_market_order_fills_with_its_fee_and_signed_units(fake: FakeOanda, venue: OandaVenue) -> None:
    since = time.time_ns() - 1_000_000_000
    vo = venue.place(market("m-1", "1000", Side.SELL))
    assert (vo.status, vo.client_order_id, vo.symbol, vo.side) == (OrderStatus.FILLED, "m-1", "EUR/USD", Side.SELL)
    assert (vo.filled_quantity, vo.avg_fill_price) == (Decimal(1000), Decimal("1.09995"))  # the bid
    held = fake.order("m-1")
    assert held is not None and held.units == Decimal(-1000) and held.id == vo.venue_order_id
    assert held.trade_client_extensions == {"id": "m-1"}  # the trade carries our id too
    assert fake.position("EUR_USD") == Decimal(-1000)
    (fill,) = venue.fills(since, ["EUR/USD"])
    assert (fill.client_order_id, fill.venue_order_id, fill.side, fill.quantity, fill.price) == (
        "m-1", vo.venue_order_id, Side.SELL, Decimal(1000), Decimal("1.09995"))
    assert (fill.fee, fill.fee_currency) == (Decimal("0.0500"), "USD")  # commission, in the account currency
    assert fill.fill_id not in (vo.venue_order_id, "") and fill.ts_ns >= since
    assert venue.fetch_order("m-1", "EUR/USD") == vo  # the same order, read back by client id


def test_limit_rests_then_a_price_move_fills_it(fake: FakeOanda, venue: OandaVenue) -> None:
    vo = venue.place(limit("l-1", "1.09000"))
    assert (vo.status, vo.filled_quantity, vo.price) == (OrderStatus.ACCEPTED, Decimal(0), Decimal("1.09000"))
    (working,) = venue.open_orders()
    assert (working.client_order_id, working.status, working.order_type) == ("l-1", OrderStatus.ACCEPTED,
                                                                             OrderType.LIMIT)
    fake.set_price("EUR_USD", "1.09500")  # not yet: the ask is 1.09505
    assert venue.fetch_order("l-1", "EUR/USD").status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    fake.set_price("EUR_USD", "1.08990")
    done = venue.fetch_order("l-1", "EUR/USD")
    assert done is not None and (done.status, done.filled_quantity, done.avg_fill_price) == (
        OrderStatus.FILLED, Decimal(1000), Decimal("1.09000"))
    assert venue.open_orders() == [] and fake.position("EUR_USD") == 1000


def test_stop_orders_trigger_through_their_price(fake: FakeOanda, venue: OandaVenue) -> None:
    venue.place(market("s-0", "2000"))
    sell = venue.place(stop("s-1", "1.09000", "2000", Side.SELL))
    buy = venue.place(stop("s-2", "151.000", "500", Side.BUY, "USD_JPY"))
    assert (sell.status, sell.stop_price, sell.price) == (OrderStatus.ACCEPTED, Decimal("1.09000"), None)
    assert {o.client_order_id: o.order_type for o in venue.open_orders()} == {"s-1": OrderType.STOP,
                                                                               "s-2": OrderType.STOP}
    fake.set_price("EUR_USD", "1.08900")
    fake.set_price("USD_JPY", "151.200")
    sold = venue.fetch_order("s-1", "EUR/USD")
    bought = venue.fetch_order("s-2", "USD_JPY")
    assert sold is not None and (sold.status, sold.avg_fill_price) == (OrderStatus.FILLED, Decimal("1.08895"))
    assert bought is not None and (bought.status, bought.symbol, bought.avg_fill_price) == (
        OrderStatus.FILLED, "USD_JPY", Decimal("151.205"))
    assert (fake.position("EUR_USD"), fake.position("USD_JPY")) == (Decimal(0), Decimal(500))
    assert buy.venue_order_id == bought.venue_order_id


def test_take_profit_and_stop_loss_ride_on_the_entry(fake: FakeOanda, venue: OandaVenue) -> None:
    since = time.time_ns() - 1_000_000_000
    tp = Order("e-1-tp", "EUR/USD", Side.SELL, Decimal(1000), OrderType.LIMIT, price=Decimal("1.11000"),
               parent_id="e-1", oco_group="e-1")
    sl = Order("e-1-sl", "EUR/USD", Side.SELL, Decimal(1000), OrderType.STOP, stop_price=Decimal("1.09000"),
               parent_id="e-1", oco_group="e-1")
    entry = venue.place(market("e-1"), [tp, sl])
    assert entry.status is OrderStatus.FILLED
    legs = {o.client_order_id: o for o in venue.open_orders()}
    assert set(legs) == {"e-1-tp", "e-1-sl"}
    assert (legs["e-1-tp"].side, legs["e-1-tp"].quantity, legs["e-1-tp"].order_type, legs["e-1-tp"].price) == (
        Side.SELL, Decimal(1000), OrderType.LIMIT, Decimal("1.11000"))
    assert (legs["e-1-sl"].order_type, legs["e-1-sl"].stop_price, legs["e-1-sl"].symbol) == (
        OrderType.STOP, Decimal("1.09000"), "EUR/USD")
    fake.set_price("EUR_USD", "1.11010")  # the bid reaches the take-profit
    won = venue.fetch_order("e-1-tp", "EUR/USD")
    lost = venue.fetch_order("e-1-sl", "EUR/USD")
    assert won is not None
    assert (won.status, won.filled_quantity, won.side) == (OrderStatus.FILLED, Decimal(1000), Side.SELL)
    assert lost is not None and (lost.status, lost.reason) == (OrderStatus.CANCELED, "LINKED_TRADE_CLOSED")
    fills = venue.fills(since, ["EUR/USD"])
    assert [(f.client_order_id, f.side, f.price) for f in fills] == [
        ("e-1", Side.BUY, Decimal("1.10005")), ("e-1-tp", Side.SELL, Decimal("1.11000"))]
    assert fake.position("EUR_USD") == 0 and venue.positions() == []


@pytest.mark.parametrize("children", [
    [Order("c-tp", "EUR/USD", Side.SELL, Decimal(500), OrderType.LIMIT, price=Decimal("1.2"))],  # not the full qty
    [Order("c-tp", "EUR/USD", Side.BUY, Decimal(1000), OrderType.LIMIT, price=Decimal("1.2"))],  # same side
    [Order("c-x", "EUR/USD", Side.SELL, Decimal(1000), OrderType.STOP_LIMIT, price=Decimal("1.0"),
           stop_price=Decimal("1.01"))],
])
def test_children_oanda_cannot_attach_are_refused_before_sending(fake: FakeOanda, venue: OandaVenue,
                                                                 children: list[Order]) -> None:
    with pytest.raises(VenueError) as err:
        venue.place(market("c-1"), children)
    assert err.value.kind is RejectKind.UNSUPPORTED and not err.value.retryable
    assert fake.count("POST", ORDERS) == 0


def test_stop_limit_is_refused_with_zero_http_calls(fake: FakeOanda, venue: OandaVenue) -> None:
    before = len(fake.requests)
    order = Order("sl-1", "EUR/USD", Side.BUY, Decimal(1000), OrderType.STOP_LIMIT, price=Decimal("1.11"),
                  stop_price=Decimal("1.105"))
    with pytest.raises(VenueError, match="STOP_LIMIT") as err:
        venue.place(order)
    assert err.value.kind is RejectKind.UNSUPPORTED and not err.value.retryable
    assert len(fake.requests) == before and fake.order("sl-1") is None


def test_cancel_returns_the_order_as_the_venue_now_holds_it(fake: FakeOanda, venue: OandaVenue) -> None:
    venue.place(limit("x-1", "1.05000"))
    gone = venue.cancel("x-1", "EUR/USD")
    assert gone is not None and (gone.status, gone.reason, gone.filled_quantity) == (
        OrderStatus.CANCELED, "CLIENT_REQUEST", Decimal(0))
    held = fake.order("x-1")
    assert held is not None and held.state == "CANCELLED"
    again = venue.cancel("x-1", "EUR/USD")  # no longer pending: read back, not an error
    assert again is not None and again.status is OrderStatus.CANCELED
    venue.place(market("x-2"))
    filled = venue.cancel("x-2", "EUR/USD")
    assert filled is not None and filled.status is OrderStatus.FILLED
    assert venue.cancel("never-sent", "EUR/USD") is None
    assert fake.count("PUT", f"{ORDERS}/@x-1/cancel") == 2


def test_fetch_by_client_id_and_not_found_is_none(fake: FakeOanda, venue: OandaVenue) -> None:
    placed = venue.place(limit("f-1", "1.05000", "700", Side.BUY, "EUR/USD"))
    found = venue.fetch_order("f-1", "EUR/USD")
    assert found is not None and (found.venue_order_id, found.quantity, found.side) == (
        placed.venue_order_id, Decimal(700), Side.BUY)
    assert fake.count("GET", f"{ORDERS}/@f-1") == 1
    assert venue.fetch_order("f-404", "EUR/USD") is None


@pytest.mark.parametrize("fault", ["503", "hang", "drop", "404-not-found-page", "down"])
def test_a_failed_read_is_a_venue_error_never_none(fake: FakeOanda, fault: str) -> None:
    venue = connect(fake, timeout_s=0.5)
    venue.place(limit("r-1", "1.05000"))
    path = f"{ORDERS}/@r-1"
    if fault == "503":
        fake.fail_next(path, 503, method="GET")
    elif fault == "hang":
        fake.hang_next(path, 1.0, act=False, method="GET")
    elif fault == "drop":
        fake.drop_next(path, act=False, method="GET")
    elif fault == "404-not-found-page":  # a proxy's 404, not OANDA saying the order does not exist
        fake.fail_next(path, 404, method="GET", body={"errorMessage": "Not Found"})
    else:
        fake.stop()
    with pytest.raises(VenueError) as err:
        venue.fetch_order("r-1", "EUR/USD")
    if fault == "404-not-found-page":
        assert not err.value.retryable
    else:
        assert err.value.retryable and err.value.kind is RejectKind.VENUE_UNAVAILABLE
        assert not isinstance(err.value, SubmitTimeout)


def test_a_partial_fill_then_cancel_reports_what_filled(fake: FakeOanda, venue: OandaVenue) -> None:
    since = time.time_ns() - 1_000_000_000
    venue.place(limit("p-1", "1.09000", "1000"))
    fake.fill_order("p-1", 400)
    part = venue.fetch_order("p-1", "EUR/USD")
    assert part is not None and (part.status, part.filled_quantity, part.avg_fill_price, part.quantity) == (
        OrderStatus.PARTIALLY_FILLED, Decimal(400), Decimal("1.09000"), Decimal(1000))
    assert [(o.client_order_id, o.status) for o in venue.open_orders()] == [("p-1", OrderStatus.PARTIALLY_FILLED)]
    (fill,) = venue.fills(since, [])
    assert (fill.client_order_id, fill.quantity, fill.fee) == ("p-1", Decimal(400), Decimal("0.0200"))
    rest = venue.cancel("p-1", "EUR/USD")
    assert rest is not None and (rest.status, rest.filled_quantity) == (OrderStatus.CANCELED, Decimal(400))
    assert fake.position("EUR_USD") == 400


@pytest.mark.parametrize(("case", "kind"), [
    ("margin", RejectKind.INSUFFICIENT_FUNDS),
    ("halted", RejectKind.MARKET_CLOSED),
    ("units-precision", RejectKind.INVALID_SIZE),
    ("units-minimum", RejectKind.INVALID_SIZE),
    ("unknown-instrument", RejectKind.INVALID_SYMBOL),
    ("price-precision", RejectKind.INVALID_PRICE),
    ("bad-token", RejectKind.AUTHENTICATION_FAILED),
    ("other-account", RejectKind.PERMISSION_MISSING),
    ("locked", RejectKind.PERMISSION_MISSING),
])
def test_each_reject_is_typed_and_final(fake: FakeOanda, case: str, kind: RejectKind) -> None:
    venue = connect(fake, token="nope" if case == "bad-token" else TOKEN,
                    account="101-004-7654321-001" if case == "other-account" else ACCOUNT)
    order = {
        "margin": market("k-1", "10000000"),  # 10M EUR at 3.33%: ~366k USD of margin on a 100k account
        "units-precision": market("k-1", "0.5"),
        "units-minimum": market("k-1", "0.5", symbol="DE30_EUR"),
        "unknown-instrument": market("k-1", "10", symbol="ZZZ/USD"),
        "price-precision": limit("k-1", "1.090001"),
    }.get(case, market("k-1"))
    if case == "halted":
        fake.halt("EUR_USD")
    if case == "locked":
        fake.order_creation_locked = True
    with pytest.raises(VenueError) as err:
        venue.place(order)
    assert err.value.kind is kind and not err.value.retryable and not isinstance(err.value, SubmitTimeout)
    assert fake.position("EUR_USD") == 0
    held = fake.order("k-1")
    if case in ("margin", "halted"):  # OANDA answers 201: the order exists, cancelled at once
        assert held is not None and held.state == "CANCELLED"
        again = venue.fetch_order("k-1", "EUR/USD")
        assert again is not None and again.status is OrderStatus.REJECTED
        assert again.reason in ("INSUFFICIENT_MARGIN", "MARKET_HALTED")
    else:
        assert held is None


def test_reject_reasons_map_to_kinds() -> None:
    assert reject_kind("UNITS_MIMIMUM_NOT_MET") is RejectKind.INVALID_SIZE  # OANDA's spelling
    assert reject_kind("TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED") is RejectKind.INVALID_PRICE
    assert reject_kind("ACCOUNT_NEW_POSITIONS_LOCKED") is RejectKind.PERMISSION_MISSING
    assert reject_kind("SOMETHING_NEW") is RejectKind.OTHER


def test_a_reused_client_id_is_a_duplicate(fake: FakeOanda, venue: OandaVenue) -> None:
    venue.place(limit("d-1", "1.05000"))
    with pytest.raises(DuplicateOrder):
        venue.place(limit("d-1", "1.05000"))
    assert len(fake.pending()) == 1


@pytest.mark.parametrize("fault", ["hang-after-acting", "503-after-acting", "drop-after-acting", "hang-no-act"])
def test_a_lost_answer_while_placing_is_submit_timeout(fake: FakeOanda, fault: str) -> None:
    venue = connect(fake, timeout_s=0.5)
    if fault == "hang-after-acting":
        fake.hang_next(ORDERS, 1.0, act=True, method="POST")
    elif fault == "503-after-acting":
        fake.fail_next(ORDERS, 503, act=True, method="POST")
    elif fault == "drop-after-acting":
        fake.drop_next(ORDERS, act=True, method="POST")
    else:
        fake.hang_next(ORDERS, 1.0, act=False, method="POST")
    with pytest.raises(SubmitTimeout) as err:
        venue.place(market("t-1"))
    assert not err.value.retryable and err.value.kind is RejectKind.VENUE_UNAVAILABLE
    held = venue.fetch_order("t-1", "EUR/USD")  # what the kernel asks before any resend
    if fault == "hang-no-act":
        assert held is None and fake.order("t-1") is None
    else:
        assert held is not None and held.status is OrderStatus.FILLED and fake.position("EUR_USD") == 1000
    assert fake.faults == 1


def test_a_venue_that_is_down_did_not_act_and_comes_back_with_its_state(fake: FakeOanda) -> None:
    venue = connect(fake, timeout_s=0.5)
    venue.place(limit("u-1", "1.05000"))
    address = fake.base_url
    fake.stop()
    with pytest.raises(VenueError) as err:
        venue.place(market("u-2"))
    assert err.value.retryable and not isinstance(err.value, SubmitTimeout)  # never connected: safe to resend
    fake.start()
    assert fake.base_url == address
    assert [o.client_order_id for o in venue.open_orders()] == ["u-1"]
    assert venue.place(market("u-2")).status is OrderStatus.FILLED


def test_rate_limited_with_retry_after(fake: FakeOanda, venue: OandaVenue) -> None:
    fake.fail_next(ORDERS, 429, method="POST", retry_after=2)
    with pytest.raises(VenueError) as err:
        venue.place(market("rl-1"))
    assert err.value.kind is RejectKind.RATE_LIMITED and err.value.retryable and err.value.retry_after_s == 2.0
    assert fake.order("rl-1") is None
    fake.fail_next(f"/v3/accounts/{ACCOUNT}/summary", 429, retry_after=None)
    with pytest.raises(VenueError) as read:
        venue.balances()
    assert read.value.kind is RejectKind.RATE_LIMITED and read.value.retry_after_s is None
    assert venue.place(market("rl-1")).status is OrderStatus.FILLED


def test_foreign_orders_are_listed_with_an_empty_or_their_own_client_id(fake: FakeOanda, venue: OandaVenue) -> None:
    venue.place(limit("mine-1", "1.05000"))
    by_hand = fake.place_foreign("USD_JPY", -2500, "LIMIT", "155.000")
    fake.place_foreign("EUR_USD", 300, "STOP", "1.20000", client_id="other-bot-7")
    listed = {o.venue_order_id: o for o in venue.open_orders()}
    assert len(listed) == 3
    hand = listed[by_hand]
    assert (hand.client_order_id, hand.symbol, hand.side, hand.quantity, hand.price) == (
        "", "USD_JPY", Side.SELL, Decimal(2500), Decimal("155.000"))
    assert {o.client_order_id for o in listed.values()} == {"", "mine-1", "other-bot-7"}
    slashed = connect(fake, symbols=["EUR/USD"]).open_orders()  # an instrument it was not built with
    assert "USD/JPY" in {o.symbol for o in slashed}


def test_fills_are_read_across_pages(fake: FakeOanda) -> None:
    venue = connect(fake, page_size=2)
    since = time.time_ns() - 1_000_000_000
    for i in range(5):
        venue.place(market(f"pg-{i}", str(100 * (i + 1)), Side.BUY if i % 2 == 0 else Side.SELL))
    venue.place(market("pg-jpy", "100", symbol="USD_JPY"))
    pages_before = fake.count("GET", f"/v3/accounts/{ACCOUNT}/transactions/idrange")
    fills = venue.fills(since, ["EUR/USD"])
    assert [f.client_order_id for f in fills] == [f"pg-{i}" for i in range(5)]
    assert [f.quantity for f in fills] == [Decimal(100 * (i + 1)) for i in range(5)]
    assert fake.count("GET", f"/v3/accounts/{ACCOUNT}/transactions/idrange") - pages_before == 3  # 6 fills / 2
    assert len({f.fill_id for f in fills}) == 5
    assert [f.client_order_id for f in venue.fills(since, [])][-1] == "pg-jpy"
    assert venue.fills(time.time_ns() + 60_000_000_000, []) == []


def test_positions_are_net_and_signed_and_balances_pay_the_commission(fake: FakeOanda, venue: OandaVenue) -> None:
    venue.place(market("pos-1", "1000"))
    venue.place(market("pos-2", "300", Side.SELL))
    venue.place(market("pos-3", "2000", Side.SELL, "USD_JPY"))
    positions = {p.symbol: p for p in venue.positions()}
    assert positions["EUR/USD"].quantity == Decimal(700) and positions["EUR/USD"].avg_price == Decimal("1.10005")
    assert positions["USD_JPY"].quantity == Decimal(-2000)
    assert positions["USD_JPY"].avg_price == Decimal("149.995")
    # 3300 units at 0.00005 USD of commission, and 300 EUR closed at the bid: -0.03 USD of spread
    assert venue.balances() == {"USD": Decimal("100000") - Decimal("0.1650") - Decimal("0.0300")}


def test_chaos_faults_are_counted_and_reproducible(fake: FakeOanda) -> None:
    venue = connect(fake, timeout_s=0.3)
    fake.set_chaos(1.0, seed=7, hang_s=0.6)
    outcomes = []
    for i in range(4):
        try:
            venue.place(market(f"ch-{i}", "10"))
            outcomes.append("ok")
        except SubmitTimeout:
            outcomes.append("lost")
        except VenueError:
            outcomes.append("error")
    assert fake.faults == 4 and "ok" not in outcomes
    fake.set_chaos(0)
    acted = [i for i in range(4) if fake.order(f"ch-{i}") is not None]
    assert all(outcomes[i] == "lost" for i in acted)  # whatever the venue did was never reported as refused
    for i in range(4):
        held = venue.fetch_order(f"ch-{i}", "EUR/USD")
        assert (held is not None) == (i in acted)
