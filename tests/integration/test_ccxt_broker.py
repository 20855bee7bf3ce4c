"""The ccxt Broker adapter, driven through the real ccxt client against a fake Binance on 127.0.0.1.

What matters for real money: a retried or lost submit never makes a second order, every failure lands
in the right one of the submitter's outcomes, and what the venue reports (orders, fills, holdings, cash)
comes back as our domain objects with Decimal money.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest

from adapters.ccxt_broker import CcxtBroker, status_of, translate_error
from mmats.errors import ConfigError
from mmats.model import Environment, Liquidity, Order, OrderStatus, OrderType, Side
from mmats.routing import OrderSubmitter, RetryPolicy, SubmitOutcome, SubmitTimeout, VenueError, refuse_live_venue
from tests.fixtures.fake_binance import FakeBinance

KEY, SECRET = "mmats-test-key", "mmats-test-secret"
BTC = "BTC/USDT"
POST_ORDER = ("POST", "/api/v3/order")


@pytest.fixture()
def venue() -> Iterator[FakeBinance]:
    # duplicate_scope="open": Binance's documented rule (a client id is unique among OPEN orders only),
    # the one that makes a blind resend of a filled order trade twice.
    with FakeBinance(KEY, SECRET, balances={"USDT": "10000", "BTC": "0"}, prices={"BTCUSDT": "30000"},
                     duplicate_scope="open") as fake:
        yield fake


def broker_for(fake: FakeBinance, *, secret: str = SECRET, timeout_ms: int = 2_000,
               environment: Environment = Environment.LIVE) -> CcxtBroker:
    broker = CcxtBroker.connect("binance", api_key=KEY, secret=secret, environment=environment,
                                api_base=fake.base_url, timeout_ms=timeout_ms)
    broker.exchange.enableRateLimit = False
    return broker


def order(cid: str, qty: str = "0.01", side: Side = Side.BUY, kind: OrderType = OrderType.MARKET,
          price: str | None = None) -> Order:
    return Order(cid, BTC, side, Decimal(qty), kind, Decimal(price) if price else None, strategy_id="s1")


def no_sleep(_: float) -> None:
    return None


def test_instruments_come_from_the_venue_and_unknown_symbols_are_named(venue: FakeBinance) -> None:
    inst = broker_for(venue).instruments([BTC, "ETH/USDT"])[BTC]
    assert (inst.lot_size, inst.quantity_precision, inst.price_precision, inst.min_notional) == (
        Decimal("0.00001"), 5, 2, Decimal(5))
    assert inst.quote_currency == "USDT"
    with pytest.raises(VenueError, match="no market DOGE/USDT") as err:
        broker_for(venue).instruments([BTC, "DOGE/USDT"])
    assert not err.value.retryable


def test_market_buy_fills_and_the_venue_reports_it_back(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    o = order("s1-entry-0001")
    assert broker.send(o) is True
    assert o.status is OrderStatus.FILLED and o.filled_quantity == Decimal("0.01")
    assert o.avg_fill_price == Decimal(30000) and o.venue_order_id
    assert venue.orders["s1-entry-0001"].status == "FILLED"
    report = broker.reconcile(0)
    (fill,) = report.fills
    assert (fill.client_order_id, fill.side, fill.quantity, fill.price) == ("s1-entry-0001", Side.BUY,
                                                                            Decimal("0.01"), Decimal(30000))
    assert fill.fee == Decimal("0.3") and fill.liquidity is Liquidity.TAKER and fill.strategy_id == "s1"
    assert fill.fill_id.startswith("binance:")
    assert [(p.symbol, p.quantity) for p in report.positions] == [(BTC, Decimal("0.01"))]
    assert report.cash["USDT"] == Decimal("9699.7")  # 10,000 - 300 - 0.3 fee
    assert broker.fills(0) == list(report.fills), "the same trade, the same fill id: booked once downstream"


def test_a_venue_duplicate_answer_returns_the_order_the_venue_holds(venue: FakeBinance) -> None:
    assert broker_for(venue).send(order("s1-entry-0002", kind=OrderType.LIMIT, price="29000")) is True
    again = order("s1-entry-0002", kind=OrderType.LIMIT, price="29000")  # another process, same signal
    fresh = broker_for(venue)
    assert fresh.send(again) is False and fresh.duplicates == 1
    assert again.status is OrderStatus.ACCEPTED and again.venue_order_id == str(venue.orders["s1-entry-0002"].order_id)
    assert len(venue.open_orders()) == 1


def test_retryable_errors_are_retried_with_one_order_at_the_venue(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    venue.fail_next("/api/v3/order", "POST", 429, count=2)
    submitter = OrderSubmitter(RetryPolicy(max_attempts=4), sleep=no_sleep)
    o = order("s1-entry-0003")
    result = submitter.submit(o, lambda: broker.send(o), 1)
    assert result.outcome is SubmitOutcome.ACCEPTED and result.attempts == 3
    assert "DDoSProtection" in result.errors[0]
    assert o.status is OrderStatus.FILLED
    assert venue.count(*POST_ORDER) == 3 and len(venue.trades) == 1


def test_a_timeout_on_submit_is_a_lost_answer_and_reconciliation_finds_the_order(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    venue.hang_next("/api/v3/order", "POST", 1.0, act=True)  # the venue takes it, the answer never comes
    broker.exchange.timeout = 300
    submitter = OrderSubmitter(RetryPolicy(max_attempts=4), sleep=no_sleep)
    o = order("s1-entry-0004")
    result = submitter.submit(o, lambda: broker.send(o), 1)
    assert result.outcome is SubmitOutcome.UNKNOWN and o.status is OrderStatus.UNKNOWN
    assert venue.count(*POST_ORDER) == 1, "a lost answer is never resent"
    broker.exchange.timeout = 2_000
    changed = submitter.reconcile(broker.order_status, 2)
    assert changed == [o] and o.status is OrderStatus.FILLED and o.filled_quantity == Decimal("0.01")
    assert len(venue.trades) == 1 and not submitter.unknown


def test_an_unknown_that_never_reached_the_venue_is_rejected_by_reconciliation(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    venue.fail_next("/api/v3/order", "POST", 503, body={"code": -1001, "msg": "Internal error; unable to process "
                                                                             "your request. Please try again."})
    submitter = OrderSubmitter(RetryPolicy(max_attempts=4), sleep=no_sleep)
    o = order("s1-entry-0005")
    result = submitter.submit(o, lambda: broker.send(o), 1)
    assert result.outcome is SubmitOutcome.UNKNOWN, "Binance: a 5xx outcome is unknown, not a failure"
    submitter.reconcile(broker.order_status, 2)
    assert o.status is OrderStatus.REJECTED and "not found at the venue" in o.reject_reason
    assert not venue.trades


def test_a_resend_after_an_uncertain_failure_asks_the_venue_first(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    venue.hang_next("/api/v3/order", "POST", 1.0, act=True)
    broker.exchange.timeout = 300
    o = order("s1-entry-0006")
    with pytest.raises(SubmitTimeout):
        broker.send(o)
    broker.exchange.timeout = 2_000
    # the venue filled it, so the id is free again at Binance: a blind resend would buy a second time
    assert broker.send(o) is False and broker.duplicates == 1
    assert o.status is OrderStatus.FILLED
    assert venue.count(*POST_ORDER) == 1 and len(venue.trades) == 1


def test_final_rejections_carry_the_venue_reason_and_are_not_retried(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    submitter = OrderSubmitter(RetryPolicy(max_attempts=4), sleep=no_sleep)
    big = order("s1-entry-0007", qty="1")  # 30,000 USDT with 10,000
    result = submitter.submit(big, lambda: broker.send(big), 1)
    assert result.outcome is SubmitOutcome.REJECTED and big.status is OrderStatus.REJECTED
    assert "InsufficientFunds" in big.reject_reason and "insufficient balance" in big.reject_reason
    assert venue.count(*POST_ORDER) == 1
    off_lot = order("s1-entry-0008", qty="0.000015")
    with pytest.raises(VenueError, match=r"not a positive whole number of the venue's lot size 0\.00001") as err:
        broker.send(off_lot)
    assert not err.value.retryable and venue.count(*POST_ORDER) == 1, "refused before it left"
    stop = Order("s1-entry-0009", BTC, Side.SELL, Decimal("0.01"), OrderType.STOP, stop_price=Decimal(25000))
    with pytest.raises(VenueError, match="STOP orders are not sent"):
        broker.send(stop)


def test_bad_credentials_are_final(venue: FakeBinance) -> None:
    broker = broker_for(venue, secret="not-the-secret")
    o = order("s1-entry-0010")
    with pytest.raises(VenueError, match="AuthenticationError") as err:
        broker.send(o)
    assert not err.value.retryable


def test_limit_order_rests_fills_on_the_venue_and_cancels(venue: FakeBinance) -> None:
    broker = broker_for(venue)
    resting = order("s1-entry-0011", kind=OrderType.LIMIT, price="29000")
    assert broker.send(resting) and resting.status is OrderStatus.ACCEPTED
    assert [o.client_order_id for o in broker.open_orders()] == ["s1-entry-0011"]
    venue.set_price("BTCUSDT", "28999")
    broker.refresh(resting)
    assert resting.status is OrderStatus.FILLED and resting.avg_fill_price == Decimal(29000)
    (maker,) = [f for f in broker.fills(0) if f.client_order_id == "s1-entry-0011"]
    assert maker.liquidity is Liquidity.MAKER
    other = order("s1-exit-0012", side=Side.SELL, kind=OrderType.LIMIT, price="35000", qty="0.005")
    assert broker.send(other) and other.status is OrderStatus.ACCEPTED
    assert broker.cancel("s1-exit-0012") is True and other.status is OrderStatus.CANCELED
    assert broker.cancel("s1-exit-0012") is False, "already canceled"
    assert broker.cancel("s1-entry-0011") is False, "already filled"
    assert broker.open_orders() == []


def test_orders_placed_elsewhere_show_up_in_open_orders(venue: FakeBinance) -> None:
    mine = broker_for(venue)
    assert mine.send(order("by-hand-1", kind=OrderType.LIMIT, price="20000"))
    fresh = broker_for(venue)  # a restarted process that never sent it
    (found,) = fresh.open_orders()
    assert (found.client_order_id, found.side, found.quantity, found.price, found.status) == (
        "by-hand-1", Side.BUY, Decimal("0.01"), Decimal(20000), OrderStatus.ACCEPTED)


def test_a_paper_system_refuses_a_live_ccxt_venue(venue: FakeBinance) -> None:
    with pytest.raises(ConfigError, match="is a LIVE venue"):
        refuse_live_venue(Environment.PAPER, broker_for(venue), "binance")
    refuse_live_venue(Environment.PAPER, broker_for(venue, environment=Environment.PAPER), "binance-testnet")
    with pytest.raises(ValueError, match="never BACKTEST"):
        broker_for(venue, environment=Environment.BACKTEST)


@pytest.mark.parametrize(("exc", "submitting", "kind", "retryable"), [
    (ccxt.RequestTimeout("t"), True, SubmitTimeout, False),
    (ccxt.RequestTimeout("t"), False, VenueError, True),
    (ccxt.ExchangeNotAvailable("503"), True, SubmitTimeout, False),
    (ccxt.ExchangeNotAvailable("503"), False, VenueError, True),
    (ccxt.OperationFailed("-1001"), True, SubmitTimeout, False),
    (ccxt.DDoSProtection("429"), True, VenueError, True),
    (ccxt.InvalidNonce("-1021"), True, VenueError, True),
    (ccxt.NetworkError("[Errno 111] Connection refused"), True, VenueError, True),
    (ccxt.NetworkError("connection reset by peer"), True, SubmitTimeout, False),
    (ccxt.InsufficientFunds("-2010"), True, VenueError, False),
    (ccxt.InvalidOrder("-1013"), False, VenueError, False),
    (ccxt.AuthenticationError("-1022"), True, VenueError, False),
    (ccxt.ExchangeError("something new"), True, SubmitTimeout, False),
    (ccxt.ExchangeError("something new"), False, VenueError, False),
])
def test_translate_error(exc: Exception, submitting: bool, kind: type[VenueError], retryable: bool) -> None:
    out = translate_error(exc, submitting=submitting)
    assert type(out) is kind and out.retryable is retryable and type(exc).__name__ in str(out)


def test_status_of_ccxt_orders() -> None:
    assert status_of({"status": "open", "filled": 0}) is OrderStatus.ACCEPTED
    assert status_of({"status": "open", "filled": 0.5}) is OrderStatus.PARTIALLY_FILLED
    assert status_of({"status": "closed", "filled": 1}) is OrderStatus.FILLED
    assert status_of({"status": "canceled"}) is OrderStatus.CANCELED
    assert status_of({"status": None}) is OrderStatus.UNKNOWN
