"""The Alpaca venue adapter through the real alpaca-py TradingClient against a fake Alpaca on 127.0.0.1 (no Ray).

Each test drives the adapter call by call and checks what the kernel's safety rules rely on: our client id on
every order, None only for Alpaca's own "order not found", a lost answer as SubmitTimeout while the venue holds
the order, typed rejections, every page of fills, and the venue's own view of hours, positions and cash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.alpaca_broker import AlpacaVenue
from mmats.execution.venue import DuplicateOrder, RejectKind, SubmitTimeout, VenueError, VenueOrder
from mmats.model import Environment, MarketType, Order, OrderStatus, OrderType, Side, TimeInForce
from tests.fixtures.fake_alpaca import NOT_CANCELABLE, FakeAlpaca

KEY, SECRET = "alpaca-test-key", "alpaca-test-secret"
D = Decimal


@pytest.fixture()
def fake() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(KEY, SECRET, {"AAPL": "190.00", "MSFT": "410.00", "BRK.A": "600000.00"}) as venue:
        yield venue


def connect(fake: FakeAlpaca, *, secret: str = SECRET, timeout_s: float = 1.0, **kw: object) -> AlpacaVenue:
    venue = AlpacaVenue.connect(key_id=KEY, secret_key=secret, environment=Environment.PAPER,
                                symbols=["AAPL", "MSFT"], api_base=fake.base_url, timeout_s=timeout_s)
    for name, value in kw.items():
        setattr(venue, name, value)
    return venue


def market(cid: str, qty: str, side: Side = Side.BUY, symbol: str = "AAPL",
           tif: TimeInForce = TimeInForce.DAY) -> Order:
    return Order(cid, symbol, side, Decimal(qty), OrderType.MARKET, time_in_force=tif)


def limit(cid: str, qty: str, price: str, side: Side = Side.BUY, tif: TimeInForce = TimeInForce.GTC) -> Order:
    return Order(cid, "AAPL", side, Decimal(qty), OrderType.LIMIT, Decimal(price), time_in_force=tif)


def posts(fake: FakeAlpaca) -> int:
    return fake.count("POST", "/v2/orders")


# --------------------------------------------------------------------------------------- instruments


def test_instruments_fractionable_or_whole_shares_and_unknown_symbols_named(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    got = venue.instruments(["AAPL", "BRK.A"])
    aapl, berkshire = got["AAPL"], got["BRK.A"]
    assert (aapl.market, aapl.quote_currency, aapl.lot_size, aapl.tick_size, aapl.quantity_precision) == (
        MarketType.STOCK, "USD", Decimal("0.000000001"), Decimal("0.01"), 9)
    assert (berkshire.lot_size, berkshire.min_quantity, berkshire.quantity_precision) == (D(1), D(1), 0), "whole"
    del fake.assets["MSFT"]["min_trade_increment"]
    assert venue.instruments(["MSFT"])["MSFT"].lot_size == Decimal("1E-9"), "fractionable without an increment"
    with pytest.raises(VenueError, match="no asset ZZZZ") as unknown:
        venue.instruments(["AAPL", "ZZZZ"])
    assert (unknown.value.kind, unknown.value.retryable) == (RejectKind.INVALID_SYMBOL, False)
    fake.assets["MSFT"]["tradable"] = False
    with pytest.raises(VenueError, match="MSFT is not tradable") as untradable:
        venue.instruments(["MSFT"])
    assert untradable.value.kind is RejectKind.INVALID_SYMBOL
    caps = venue.capabilities()
    assert caps.order_types == {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}
    assert caps.native_brackets and caps.fractional


# ------------------------------------------------------------------------------------------ orders


def test_market_order_with_our_client_id_fills_and_books_fill_position_and_cash(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    answer = venue.place(market("mm-1", "2.5"))
    assert fake.bodies[-1]["client_order_id"] == "mm-1" and fake.bodies[-1]["time_in_force"] == "day"
    assert (answer.client_order_id, answer.status, answer.filled_quantity) == ("mm-1", OrderStatus.ACCEPTED, D(0))
    held = venue.fetch_order("mm-1", "AAPL")
    assert held is not None and held.venue_order_id == answer.venue_order_id
    assert (held.status, held.filled_quantity, held.avg_fill_price) == (OrderStatus.FILLED, D("2.5"), D(190))
    (fill,) = venue.fills(0, ["AAPL"])
    assert fill.fill_id == fake.activities[0]["id"] and fill.venue_order_id == answer.venue_order_id
    assert (fill.client_order_id, fill.side, fill.quantity, fill.price) == ("", Side.BUY, D("2.5"), D(190))
    assert (fill.fee, fill.fee_currency) == (D(0), "USD"), "no commission on US stocks"
    assert venue.fills(0, ["MSFT"]) == [], "filtered by symbol"
    (position,) = venue.positions()
    assert (position.symbol, position.quantity, position.avg_price) == ("AAPL", D("2.5"), D(190))
    assert venue.balances() == {"USD": Decimal("99525")}
    venue.place(market("mm-2", "0.5", tif=TimeInForce.GTC))
    assert fake.bodies[-1]["time_in_force"] == "day", "a fractional market order goes as DAY (Alpaca's rule)"


def test_limit_stop_and_stop_limit_rest_and_trigger_on_price_moves(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    venue.place(market("own", "10"))
    stop = venue.place(Order("stop", "AAPL", Side.SELL, Decimal(5), OrderType.STOP, stop_price=Decimal("180"),
                             time_in_force=TimeInForce.GTC))
    stop_limit = venue.place(Order("stoplim", "AAPL", Side.SELL, Decimal(5), OrderType.STOP_LIMIT,
                                   Decimal("180.50"), Decimal("181"), time_in_force=TimeInForce.GTC))
    bid = venue.place(limit("bid", "1", "185"))
    assert [b["type"] for b in fake.bodies[-3:]] == ["stop", "stop_limit", "limit"]
    assert (fake.bodies[-2]["stop_price"], fake.bodies[-2]["limit_price"]) == (181.0, 180.5)
    assert (stop.order_type, stop.stop_price, stop_limit.price) == (OrderType.STOP, D(180), D("180.5"))
    assert {o.client_order_id for o in venue.open_orders()} == {"bid", "stop", "stoplim"}
    assert bid.status is OrderStatus.ACCEPTED
    fake.set_price("AAPL", "184.00")
    assert venue.fetch_order("bid", "AAPL").status is OrderStatus.FILLED  # type: ignore[union-attr]
    fake.set_price("AAPL", "180.90")
    assert venue.fetch_order("stoplim", "AAPL").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert venue.fetch_order("stop", "AAPL").status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    fake.set_price("AAPL", "179.50")
    held = venue.fetch_order("stop", "AAPL")
    assert held is not None and (held.status, held.avg_fill_price) == (OrderStatus.FILLED, Decimal("179.5"))
    assert venue.open_orders() == []
    assert venue.positions()[0].quantity == 1


def test_bracket_sends_native_exits_and_one_exit_cancels_the_other(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    take = Order("br-tp", "AAPL", Side.SELL, Decimal(10), OrderType.LIMIT, Decimal("200"))
    loss = Order("br-sl", "AAPL", Side.SELL, Decimal(10), OrderType.STOP, stop_price=Decimal("180"))
    entry = venue.place(market("br", "10", tif=TimeInForce.GTC), [take, loss])
    body = fake.bodies[-1]
    assert (body["order_class"], body["take_profit"], body["stop_loss"]) == (
        "bracket", {"limit_price": 200.0}, {"stop_price": 180.0})
    assert entry.client_order_id == "br"
    exits = venue.open_orders()
    assert len(exits) == 2 and all(o.client_order_id not in ("br-tp", "br-sl") for o in exits), \
        "Alpaca names the exits itself"
    assert {(o.order_type, o.side) for o in exits} == {(OrderType.LIMIT, Side.SELL), (OrderType.STOP, Side.SELL)}
    fake.set_price("AAPL", "201.00")
    assert venue.open_orders() == [], "the take-profit filled, the stop-loss was canceled"
    assert venue.positions() == []
    venue.place(limit("oto", "1", "150"), [Order("oto-sl", "AAPL", Side.SELL, Decimal(1), OrderType.STOP,
                                                 stop_price=Decimal("140"))])
    assert fake.bodies[-1]["order_class"] == "oto" and "take_profit" not in fake.bodies[-1]
    sent = posts(fake)
    with pytest.raises(VenueError, match="opposite side") as wrong:
        venue.place(market("bad", "1"), [Order("bad-tp", "AAPL", Side.BUY, Decimal(1), OrderType.LIMIT,
                                               Decimal("200"))])
    assert (wrong.value.kind, wrong.value.retryable, posts(fake)) == (RejectKind.UNSUPPORTED, False, sent)


def test_alpaca_refuses_exits_sent_one_by_one_but_holds_them_as_a_native_bracket(fake: FakeAlpaca) -> None:
    """Why the exits must go as one bracket: sent as two orders after the entry fills, the second is refused
    (the first already holds the shares), and a new entry against a resting exit is a potential wash trade."""
    venue = connect(fake)
    venue.place(market("entry", "10"))
    venue.place(limit("exit-tp", "10", "200", Side.SELL))
    with pytest.raises(VenueError, match="insufficient qty available") as second_exit:
        venue.place(Order("exit-sl", "AAPL", Side.SELL, Decimal(10), OrderType.STOP, stop_price=Decimal("180")))
    assert second_exit.value.kind is RejectKind.INSUFFICIENT_FUNDS
    with pytest.raises(VenueError, match="wash trade") as wash:
        venue.place(market("add", "1"))
    assert (wash.value.kind, wash.value.retryable) == (RejectKind.OTHER, False)
    venue.cancel("exit-tp", "AAPL")
    venue.place(market("entry-2", "5"), [
        Order("tp-2", "AAPL", Side.SELL, Decimal(5), OrderType.LIMIT, Decimal("200")),
        Order("sl-2", "AAPL", Side.SELL, Decimal(5), OrderType.STOP, stop_price=Decimal("180"))])
    assert len(venue.open_orders()) == 2, "both exits of the native bracket work at once"


def test_cancel_by_client_id_returns_the_order_as_it_is(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    venue.place(limit("rest", "1", "150"))
    canceled = venue.cancel("rest", "AAPL")
    assert canceled is not None and canceled.status is OrderStatus.CANCELED
    deletes = fake.count("DELETE", "/v2/orders/")
    assert venue.cancel("rest", "AAPL").status is OrderStatus.CANCELED  # type: ignore[union-attr]
    assert fake.count("DELETE", "/v2/orders/") == deletes, "a closed order is not canceled again"
    venue.place(market("done", "1"))
    assert venue.cancel("done", "AAPL").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert venue.cancel("never-sent", "AAPL") is None
    # filled between our lookup and the DELETE: Alpaca's 422 "order is not cancelable" is not an error
    venue.place(limit("race", "1", "150"))
    fake.fail_next("/v2/orders/", 422, body=NOT_CANCELABLE, method="DELETE")
    assert venue.cancel("race", "AAPL").status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    fake.fail_next("/v2/orders/", 503, method="DELETE")
    with pytest.raises(VenueError) as failed:
        venue.cancel("race", "AAPL")
    assert (failed.value.retryable, failed.value.kind) == (True, RejectKind.VENUE_UNAVAILABLE)


def test_fetch_order_is_none_only_when_alpaca_says_not_found(fake: FakeAlpaca) -> None:
    venue = connect(fake, timeout_s=0.3)
    assert venue.fetch_order("nobody", "AAPL") is None
    venue.place(limit("known", "1", "150"))
    failures: list[tuple[str, Callable[[], None]]] = [
        ("503", lambda: fake.fail_next("/v2/orders:by_client_order_id", 503)),
        ("500", lambda: fake.fail_next("/v2/orders:by_client_order_id", 500)),
        ("a gateway's 404", lambda: fake.fail_next("/v2/orders:by_client_order_id", 404, body={"error": "no route"})),
        ("timeout", lambda: fake.hang_next("/v2/orders:by_client_order_id", 1.0)),
        ("dropped", lambda: fake.drop_next("/v2/orders:by_client_order_id")),
    ]
    for label, arm in failures:
        for cid in ("nobody", "known"):
            arm()
            with pytest.raises(VenueError) as failed:
                venue.fetch_order(cid, "AAPL")
            assert (failed.value.retryable, failed.value.kind) == (True, RejectKind.VENUE_UNAVAILABLE), label
            assert not isinstance(failed.value, SubmitTimeout)
    assert venue.fetch_order("known", "AAPL") is not None


def test_partial_fill_leaves_the_rest_working(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    fake.partial_fill_next("4")
    venue.place(market("part", "10"))
    held = venue.fetch_order("part", "AAPL")
    assert held is not None and (held.status, held.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, D(4))
    assert [o.client_order_id for o in venue.open_orders()] == ["part"]
    fake.fill_order("part", price="191.00")
    done = venue.fetch_order("part", "AAPL")
    assert done is not None and (done.status, done.filled_quantity, done.avg_fill_price) == (
        OrderStatus.FILLED, D(10), D("190.6"))
    fills = venue.fills(0, ["AAPL"])
    assert [(f.quantity, f.price) for f in fills] == [(D(4), D(190)), (D(6), D(191))]
    assert {f.venue_order_id for f in fills} == {held.venue_order_id} and len({f.fill_id for f in fills}) == 2


# ------------------------------------------------------------------------------------------- rejections


def test_each_refusal_is_typed_and_final(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    venue.place(market("taken", "1"))
    cases: list[tuple[str, Order, RejectKind]] = [
        ("insufficient buying power", market("big", "1", symbol="BRK.A"), RejectKind.INSUFFICIENT_FUNDS),
        ("insufficient qty available", market("short", "5", Side.SELL), RejectKind.INSUFFICIENT_FUNDS),
        ("not fractionable", market("frac", "0.5", symbol="BRK.A"), RejectKind.INVALID_SIZE),
        ('asset "ZZZZ" not found', market("typo", "1", symbol="ZZZZ"), RejectKind.INVALID_SYMBOL),
        ("sub-penny", limit("penny", "1", "150.001"), RejectKind.INVALID_PRICE),
    ]
    for words, order, kind in cases:
        with pytest.raises(VenueError, match=words) as refused:
            venue.place(order)
        assert (refused.value.kind, refused.value.retryable) == (kind, False), words
        assert fake.order(order.client_order_id) is None
    sent = posts(fake)
    with pytest.raises(VenueError, match="fractional") as local:
        venue.place(Order("fstop", "AAPL", Side.BUY, Decimal("0.5"), OrderType.STOP, stop_price=Decimal("200"),
                          time_in_force=TimeInForce.DAY))
    assert (local.value.kind, posts(fake)) == (RejectKind.INVALID_SIZE, sent), "refused before sending"
    with pytest.raises(DuplicateOrder, match="client_order_id must be unique"):
        venue.place(market("taken", "1"))
    with pytest.raises(VenueError, match="HTTP 401") as unauthenticated:
        connect(fake, secret="wrong").place(market("nokey", "1"))
    assert (unauthenticated.value.kind, unauthenticated.value.retryable) == (RejectKind.AUTHENTICATION_FAILED, False)
    fake.trading_blocked = True
    with pytest.raises(VenueError, match="HTTP 403") as blocked:
        venue.place(market("blocked", "1"))
    assert (blocked.value.kind, blocked.value.retryable) == (RejectKind.PERMISSION_MISSING, False)


def test_a_lost_answer_is_submit_timeout_and_the_venue_holds_the_order(fake: FakeAlpaca) -> None:
    venue = connect(fake, timeout_s=0.3)
    arms: dict[str, Callable[[], None]] = {
        "hang after acting": lambda: fake.hang_next("/v2/orders", 1.0, method="POST", act=True),
        "503 after acting": lambda: fake.fail_next("/v2/orders", 503, method="POST", act=True),
        "dropped after acting": lambda: fake.drop_next("/v2/orders", method="POST", act=True),
    }
    for n, (label, arm) in enumerate(arms.items()):
        arm()
        cid = f"lost-{n}"
        t0 = time.monotonic()
        with pytest.raises(SubmitTimeout):
            venue.place(market(cid, "1"))
        assert time.monotonic() - t0 < 0.9, label
        assert fake.order(cid) is not None, label
        held = venue.fetch_order(cid, "AAPL")
        assert held is not None and held.status is OrderStatus.FILLED, label
        with pytest.raises(DuplicateOrder):  # a resend can never make a second order
            venue.place(market(cid, "1"))
    fake.fail_next("/v2/orders", 502, method="POST")  # a proxy's 5xx: Alpaca may or may not have it
    with pytest.raises(SubmitTimeout):
        venue.place(market("maybe", "1"))
    assert venue.fetch_order("maybe", "AAPL") is None, "this one never reached the venue: the kernel asks first"
    fake.hang_next("/v2/orders", 1.0, method="POST", act=False)
    with pytest.raises(SubmitTimeout):
        venue.place(market("swallowed", "1"))
    assert fake.order("swallowed") is None


def test_rate_limit_is_retryable_with_retry_after_and_never_waits_out_alpaca_py(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    fake.fail_next("/v2/orders", 429, method="POST", retry_after=2)
    t0 = time.monotonic()
    with pytest.raises(VenueError, match="HTTP 429") as limited:
        venue.place(market("rl", "1"))
    assert time.monotonic() - t0 < 0.5, "alpaca-py's own 3 s retry sleeps are off"
    assert (limited.value.kind, limited.value.retryable, limited.value.retry_after_s) == (
        RejectKind.RATE_LIMITED, True, 2.0)
    assert fake.order("rl") is None and venue.place(market("rl", "1")).client_order_id == "rl"
    fake.fail_next("/v2/positions", 429, retry_after=None)  # no Retry-After: Alpaca's X-RateLimit-Reset
    with pytest.raises(VenueError) as read_limited:
        venue.positions()
    assert read_limited.value.kind is RejectKind.RATE_LIMITED
    assert read_limited.value.retry_after_s is not None and 0 <= read_limited.value.retry_after_s <= 2


def test_orders_placed_elsewhere_are_listed_with_their_own_client_ids(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    venue.place(limit("ours", "1", "150"))
    dashboard = fake.place_foreign("AAPL", "buy", "2", limit_price="140")
    other_bot = fake.place_foreign("MSFT", "buy", "1", limit_price="300", client_order_id="other-bot-7")
    listed = {o.venue_order_id: o for o in venue.open_orders()}
    assert set(listed) == {fake.order("ours").id, dashboard.id, other_bot.id}  # type: ignore[union-attr]
    assert listed[dashboard.id].client_order_id == dashboard.client_order_id  # Alpaca's UUID, not ours
    assert listed[other_bot.id].client_order_id == "other-bot-7"
    assert listed[dashboard.id].quantity == 2 and listed[dashboard.id].price == 140
    fake.fill_order(dashboard.id)
    foreign_fill = venue.fills(0, ["AAPL"])[0]
    assert (foreign_fill.venue_order_id, foreign_fill.client_order_id) == (dashboard.id, "")


def test_fills_are_read_across_every_page(fake: FakeAlpaca) -> None:
    venue = connect(fake, fills_page_size=2)
    start_ns = time.time_ns() - 1_000_000_000
    for n in range(5):
        venue.place(market(f"p{n}", "1"))
    before = fake.count("GET", "/v2/account/activities")
    fills = venue.fills(start_ns, ["AAPL"])
    reads = [params for method, path, params in fake.requests
             if method == "GET" and path.startswith("/v2/account/activities")][before:]
    assert len(fills) == 5 and len({f.fill_id for f in fills}) == 5
    assert [f.fill_id for f in fills] == [a["id"] for a in fake.activities], "oldest first"
    assert len(reads) == 3, "2 + 2 + 1"
    assert [r.get("page_token") for r in reads] == [None, fake.activities[1]["id"], fake.activities[3]["id"]]
    assert all(r["direction"] == "asc" and r["page_size"] == "2" for r in reads)
    later = venue.fills(fills[2].ts_ns, ["AAPL"])
    assert {f.fill_id for f in later} <= {f.fill_id for f in fills[2:]}, "only after since_ns"


def test_positions_are_signed_and_balances_are_cash(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    fake.shorting_enabled = True
    venue.place(market("short", "3", Side.SELL, symbol="MSFT"))
    venue.place(market("long", "2"))
    assert {(p.symbol, p.quantity, p.avg_price) for p in venue.positions()} == {
        ("MSFT", Decimal(-3), Decimal(410)), ("AAPL", Decimal(2), Decimal(190))}
    assert venue.balances() == {"USD": Decimal(100000) + 3 * 410 - 2 * 190}


def test_account_check(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    ok = venue.account_check()
    assert (ok.authenticated, ok.can_trade, ok.can_withdraw, ok.problems) == (True, True, False, [])
    fake.trading_blocked = True
    blocked = venue.account_check()
    assert not blocked.can_trade and "trading_blocked" in blocked.detail and blocked.problems
    fake.trading_blocked, fake.account_status = False, "ACCOUNT_CLOSED"
    assert not venue.account_check().can_trade
    wrong = connect(fake, secret="wrong").account_check()
    assert (wrong.authenticated, wrong.can_trade) == (False, False) and "401" in wrong.detail
    fake.fail_next("/v2/account", 403, body={"code": 40310000, "message": "forbidden"})
    assert not venue.account_check().authenticated
    fake.fail_next("/v2/account", 503)
    with pytest.raises(VenueError) as down:
        venue.account_check()
    assert down.value.retryable, "an outage is not a failed check"


# -------------------------------------------------------------------------------------------- hours


def test_the_market_clock_and_an_order_queued_outside_hours(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    assert venue.market_open("AAPL") is True
    fake.market_open = False
    assert venue.market_open("AAPL") is True, "cached a few seconds"
    assert fake.count("GET", "/v2/clock") == 1
    night = connect(fake)
    assert night.market_open("AAPL") is False
    assert night.next_open() > datetime.now(UTC)
    queued = night.place(market("queued", "1"))
    assert queued.status is OrderStatus.ACCEPTED and fake.order("queued").status == "accepted"  # type: ignore[union-attr]
    assert night.fills(0, ["AAPL"]) == [] and [o.client_order_id for o in night.open_orders()] == ["queued"]
    fake.market_open = True  # the open: the queued DAY order trades
    assert night.fetch_order("queued", "AAPL").status is OrderStatus.FILLED  # type: ignore[union-attr]
    night.place(limit("day-bid", "1", "150", tif=TimeInForce.DAY))
    fake.market_open = False  # the close: a DAY order still working expires
    expired = night.fetch_order("day-bid", "AAPL")
    assert expired is not None and expired.status is OrderStatus.EXPIRED


def test_the_calendar_skips_holidays_and_keeps_early_closes(fake: FakeAlpaca) -> None:
    venue = connect(fake)
    fake.holidays.add(date(2030, 12, 25))
    fake.early_closes[date(2030, 12, 24)] = "13:00"
    sessions = venue.calendar(date(2030, 12, 23), date(2030, 12, 27))
    assert [s.day for s in sessions] == [date(2030, 12, 23), date(2030, 12, 24), date(2030, 12, 26),
                                         date(2030, 12, 27)]
    eve = sessions[1]
    assert (eve.open, eve.close) == (datetime(2030, 12, 24, 14, 30, tzinfo=UTC), datetime(2030, 12, 24, 18, 0,
                                                                                          tzinfo=UTC))
    assert sessions[0].close - sessions[0].open == timedelta(hours=6, minutes=30)


# ----------------------------------------------------------------------------------------- outages


def test_a_stopped_venue_refuses_and_comes_back_on_the_same_port_with_its_orders(fake: FakeAlpaca) -> None:
    venue = connect(fake, timeout_s=0.5)
    venue.place(limit("before", "1", "150"))
    url = fake.base_url
    fake.stop()
    with pytest.raises(VenueError) as down:
        venue.fetch_order("before", "AAPL")
    assert (down.value.retryable, down.value.kind) == (True, RejectKind.VENUE_UNAVAILABLE)
    with pytest.raises(VenueError) as refused:
        venue.place(market("while-down", "1"))
    assert refused.value.retryable and not isinstance(refused.value, SubmitTimeout), "refused: nothing was sent"
    fake.start()
    assert fake.base_url == url
    back = venue.fetch_order("before", "AAPL")
    assert back is not None and back.status is OrderStatus.ACCEPTED
    assert venue.fetch_order("while-down", "AAPL") is None


def test_under_chaos_every_outcome_is_one_the_kernel_can_reason_about(fake: FakeAlpaca) -> None:
    """Random 503s (before and after acting), hangs past the timeout and dropped connections: an answer means
    the venue acted, a SubmitTimeout may mean either (both happen), a failed read is retryable, never None."""
    venue = connect(fake, timeout_s=0.25)
    fake.set_chaos(0.5, seed=7, hang_s=0.5)
    outcomes: dict[str, VenueOrder | VenueError] = {}
    read_failures = 0
    for n in range(16):
        cid = f"chaos-{n}"
        try:
            outcomes[cid] = venue.place(market(cid, "1"))
        except VenueError as exc:
            outcomes[cid] = exc
        try:
            assert venue.fetch_order(cid, "AAPL") is not None or fake.order(cid) is None
        except VenueError as exc:
            assert exc.retryable and exc.kind is RejectKind.VENUE_UNAVAILABLE
            read_failures += 1
    fake.clear_faults()
    assert fake.faults >= 8 and read_failures >= 2
    lost_but_held = lost_and_absent = 0
    for cid, outcome in outcomes.items():
        held = venue.fetch_order(cid, "AAPL")
        if isinstance(outcome, VenueOrder):
            assert held is not None and held.venue_order_id == outcome.venue_order_id
        else:
            assert isinstance(outcome, SubmitTimeout), f"{cid}: only a refused connection is retryable: {outcome}"
            lost_but_held += held is not None
            lost_and_absent += held is None
    assert lost_but_held and lost_and_absent, "chaos acts on some requests and not on others"
    assert len(venue.fills(0, ["AAPL"])) == sum(1 for o in fake.orders.values() if o.status == "filled")
