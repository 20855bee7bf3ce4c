from __future__ import annotations

from decimal import Decimal

import pytest

from mmats.errors import ValidationError
from mmats.execution.simulated import (
    ExecutionConfig,
    FixedBpsSlippage,
    PercentCommission,
    PerShareCommission,
    SimulatedBroker,
    SpreadCommission,
    VolatilitySlippage,
    VolumeSlippage,
    parse_bps,
)
from mmats.model import (
    Instrument,
    Liquidity,
    MarketType,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

INST = Instrument("BTC/USDT", MarketType.CRYPTO, "USDT", 2, 6, Decimal("0.000001"))
DAY = 86_400_000_000_000
MIN = 60_000_000_000


def order(cid: str = "o1", side: Side = Side.BUY, qty: str = "1", **kw: object) -> Order:
    return Order(cid, "BTC/USDT", side, Decimal(qty), created_ns=0, **kw)  # type: ignore[arg-type]


def bar(broker: SimulatedBroker, i: int, o: float, h: float, lo: float, c: float, v: float = 0.0,
        pos: float = 0.0, cash: float = 1e12, ts: int | None = None) -> list:  # type: ignore[type-arg]
    return broker.process_bar(i, i * MIN if ts is None else ts, o, h, lo, c, v, pos, cash)


def test_market_order_fills_at_next_open_never_same_bar() -> None:
    b = SimulatedBroker(INST)
    o = order()
    b.submit(o, 0, 0)
    assert bar(b, 0, 100, 101, 99, 100) == []
    fills = bar(b, 1, 105, 106, 104, 105)
    assert len(fills) == 1 and fills[0].price == Decimal("105.00") and fills[0].quantity == Decimal(1)
    assert o.status is OrderStatus.FILLED and not b.open_orders


def test_fixed_slippage_is_adverse_for_both_sides() -> None:
    b = SimulatedBroker(INST, FixedBpsSlippage(10))
    buy, sell = order("b"), order("s", Side.SELL)
    b.submit(buy, 0, 0)
    b.submit(sell, 0, 0)
    fills = {f.client_order_id: f for f in bar(b, 1, 100, 100, 100, 100)}
    assert fills["b"].price == Decimal("100.10")
    assert fills["s"].price == Decimal("99.90")


def test_limit_buy_fills_at_limit_when_touched_and_at_open_when_gapped() -> None:
    b = SimulatedBroker(INST)
    touched = order("t", order_type=OrderType.LIMIT, price=Decimal("95"))
    b.submit(touched, 0, 0)
    assert bar(b, 1, 100, 101, 96, 100) == []  # not touched
    f = bar(b, 2, 100, 101, 94, 99)
    assert f[0].price == Decimal("95.00") and f[0].liquidity is Liquidity.MAKER
    gapped = order("g", order_type=OrderType.LIMIT, price=Decimal("95"))
    b.submit(gapped, 2, 0)
    f = bar(b, 3, 90, 92, 89, 91)
    assert f[0].price == Decimal("90.00")  # gap through: the better open price


def test_stop_sell_triggers_at_stop_or_open_on_gap() -> None:
    b = SimulatedBroker(INST)
    s = order("s", Side.SELL, order_type=OrderType.STOP, stop_price=Decimal("95"))
    b.submit(s, 0, 0)
    assert bar(b, 1, 100, 101, 96, 97) == []
    assert bar(b, 2, 97, 98, 94, 95)[0].price == Decimal("95.00")
    g = order("g", Side.SELL, order_type=OrderType.STOP, stop_price=Decimal("95"))
    b.submit(g, 2, 0)
    assert bar(b, 3, 90, 91, 88, 89)[0].price == Decimal("90.00")


def test_stop_limit_triggers_then_rests_as_limit() -> None:
    b = SimulatedBroker(INST)
    sl = order("sl", Side.BUY, order_type=OrderType.STOP_LIMIT, stop_price=Decimal("105"), price=Decimal("106"))
    b.submit(sl, 0, 0)
    assert bar(b, 1, 100, 104, 99, 103) == []
    f = bar(b, 2, 104, 108, 103, 107)
    assert f[0].price == Decimal("105.00")
    gap = order("gap", Side.BUY, order_type=OrderType.STOP_LIMIT, stop_price=Decimal("105"), price=Decimal("106"))
    b.submit(gap, 2, 0)
    assert bar(b, 3, 110, 112, 109, 111) == []  # triggered above the limit: resting
    assert gap.triggered and gap.status is OrderStatus.ACCEPTED
    assert bar(b, 4, 108, 109, 105.5, 106)[0].price == Decimal("106.00")


def test_partial_fills_follow_volume_share_and_ignore_zero_volume() -> None:
    b = SimulatedBroker(INST, config=ExecutionConfig(max_volume_share=0.1))
    o = order(qty="10")
    b.submit(o, 0, 0)
    f1 = bar(b, 1, 100, 100, 100, 100, v=30)
    assert f1[0].quantity == Decimal(3) and o.status is OrderStatus.PARTIALLY_FILLED
    f2 = bar(b, 2, 100, 100, 100, 100, v=50)
    assert f2[0].quantity == Decimal(5)
    f3 = bar(b, 3, 100, 100, 100, 100, v=0)  # forex-like bar without volume: no cap
    assert f3[0].quantity == Decimal(2) and o.status is OrderStatus.FILLED
    assert o.filled_quantity == o.quantity


def test_ioc_cancels_the_rest_and_fok_fills_nothing() -> None:
    b = SimulatedBroker(INST, config=ExecutionConfig(max_volume_share=0.1))
    ioc = order("ioc", qty="10", time_in_force=TimeInForce.IOC)
    fok = order("fok", qty="10", time_in_force=TimeInForce.FOK)
    b.submit(ioc, 0, 0)
    b.submit(fok, 0, 0)
    fills = bar(b, 1, 100, 100, 100, 100, v=30)
    assert [f.client_order_id for f in fills] == ["ioc"] and fills[0].quantity == Decimal(3)
    assert ioc.status is OrderStatus.CANCELED and fok.status is OrderStatus.CANCELED
    assert fok.filled_quantity == 0 and not b.open_orders


def test_day_order_expires_at_utc_midnight() -> None:
    b = SimulatedBroker(INST)
    o = order(order_type=OrderType.LIMIT, price=Decimal("50"), time_in_force=TimeInForce.DAY)
    b.submit(o, 0, 0)
    bar(b, 1, 100, 101, 99, 100, ts=DAY - MIN)
    assert o.status is OrderStatus.ACCEPTED
    bar(b, 2, 100, 101, 99, 100, ts=DAY)
    assert o.status is OrderStatus.EXPIRED and not b.open_orders


def test_bracket_children_activate_after_entry_and_stop_wins_an_ambiguous_bar() -> None:
    b = SimulatedBroker(INST)
    entry = order("e", qty="2")
    sl = order("sl", Side.SELL, qty="2", order_type=OrderType.STOP, stop_price=Decimal("95"), parent_id="e",
               oco_group="e", reduce_only=True)
    tp = order("tp", Side.SELL, qty="2", order_type=OrderType.LIMIT, price=Decimal("110"), parent_id="e",
               oco_group="e", reduce_only=True)
    b.submit(entry, 0, 0, [sl, tp])
    assert sl.status is OrderStatus.NEW
    # Entry fills at the open; in the same bar both SL and TP are touched: the stop is assumed first.
    fills = bar(b, 1, 100, 111, 94, 100)
    assert [f.client_order_id for f in fills] == ["e", "sl"]
    assert sl.status is OrderStatus.FILLED and tp.status is OrderStatus.CANCELED
    assert not b.open_orders


def test_take_profit_fill_cancels_the_stop() -> None:
    b = SimulatedBroker(INST)
    entry = order("e")
    sl = order("sl", Side.SELL, order_type=OrderType.STOP, stop_price=Decimal("95"), parent_id="e", oco_group="e")
    tp = order("tp", Side.SELL, order_type=OrderType.LIMIT, price=Decimal("110"), parent_id="e", oco_group="e")
    b.submit(entry, 0, 0, [sl, tp])
    bar(b, 1, 100, 101, 99, 100)
    f = bar(b, 2, 105, 112, 104, 111)
    assert [x.client_order_id for x in f] == ["tp"] and f[0].price == Decimal("110.00")
    assert sl.status is OrderStatus.CANCELED


def test_cash_only_account_cannot_buy_more_than_cash_pays_for_fees_included() -> None:
    b = SimulatedBroker(INST, commission=PercentCommission(10))
    o = order(qty="2")
    b.submit(o, 0, 0)
    f = bar(b, 1, 100, 100, 100, 100, cash=150.0)
    cost = f[0].quantity * f[0].price + f[0].fee
    assert cost <= Decimal(150) and f[0].quantity > Decimal("1.49")
    margin = SimulatedBroker(INST, config=ExecutionConfig(cash_only=False))
    m = order(qty="2")
    margin.submit(m, 0, 0)
    assert bar(margin, 1, 100, 100, 100, 100, cash=150.0)[0].quantity == Decimal(2)


def test_the_venue_asks_for_cash_only_when_a_buy_could_spend_it() -> None:
    """``may_spend_cash``: the paper venue sums the account's cash for a bar only when some working order or
    waiting bracket child is a buy that is not reduce-only, on a cash-only account."""
    b = SimulatedBroker(INST)
    assert not b.may_spend_cash()
    b.submit(order("s", Side.SELL), 0, 0)
    b.submit(order("cover", reduce_only=True), 0, 0)
    assert not b.may_spend_cash()  # a sale and a reduce-only buy never read the cash
    short = order("short", Side.SELL)
    b.submit(short, 0, 0, [order("tp", parent_id="short", order_type=OrderType.LIMIT, price=Decimal("90"))])
    assert b.may_spend_cash()  # the short's take-profit is a plain buy: once active it may spend cash
    b.cancel(short, 0)
    assert not b.may_spend_cash()
    b.submit(order("buy"), 0, 0)
    assert b.may_spend_cash()
    margin = SimulatedBroker(INST, config=ExecutionConfig(cash_only=False))
    margin.submit(order("buy"), 0, 0)
    assert not margin.may_spend_cash()  # a margin account's buys are not cut to its cash


def test_commission_models() -> None:
    assert PercentCommission(10).fee(2, 100, Liquidity.TAKER) == pytest.approx(0.2)
    assert PercentCommission(10, 2).fee(2, 100, Liquidity.MAKER) == pytest.approx(0.04)
    per_share = PerShareCommission(0.005, 1.0, 0.01)
    assert per_share.fee(100, 50, Liquidity.TAKER) == pytest.approx(1.0)  # minimum applies
    assert per_share.fee(1000, 50, Liquidity.TAKER) == pytest.approx(5.0)
    assert per_share.fee(10, 1, Liquidity.TAKER) == pytest.approx(0.1)  # capped at 1% of notional
    assert SpreadCommission(1.0, 0.0001).fee(100_000, 1.1, Liquidity.TAKER) == pytest.approx(5.0)


def test_slippage_models() -> None:
    assert VolatilitySlippage(0.5).fraction(1, 100, 102, 98, 0) == pytest.approx(0.02)
    vol = VolumeSlippage(impact=0.1, base_bps=1)
    assert vol.fraction(4, 100, 0, 0, 400) == pytest.approx(1e-4 + 0.1 * 0.1)
    assert vol.fraction(4, 100, 0, 0, 0) == pytest.approx(1e-4)  # no volume: base only
    assert VolumeSlippage(0.1, 0, volume_in_quote=True).fraction(1, 100, 0, 0, 10_000) == pytest.approx(0.01)


def test_cost_parsing_and_bad_values() -> None:
    assert parse_bps("10bps", "fees") == 10
    assert parse_bps("0.1%", "fees") == pytest.approx(10)
    assert parse_bps("2.5", "fees") == 2.5
    with pytest.raises(ValidationError, match="--fees"):
        parse_bps("ten", "--fees")
    with pytest.raises(ValidationError, match="slippage bps"):
        FixedBpsSlippage(-1)
    with pytest.raises(ValidationError, match="max_volume_share"):
        ExecutionConfig(max_volume_share=0)


def test_a_huge_quantity_fills_exactly_its_remainder_despite_float_rounding() -> None:
    """1,070,603,082,086.219588 units do not survive a float round trip (it reads back ...2196): the
    fill must still be exactly the order's remainder, never an overfill."""
    from decimal import Decimal

    from mmats.execution.simulated import ExecutionConfig, SimulatedBroker
    from mmats.model import MarketType, Order, OrderStatus, OrderType, Side, default_instrument
    from mmats.orders import transition

    inst = default_instrument("MICRO/USDT", MarketType.CRYPTO)
    broker = SimulatedBroker(inst, config=ExecutionConfig(cash_only=False))
    qty = Decimal("1070603082086.219588")
    assert Decimal(repr(float(qty))) != qty
    order = Order("o1", "MICRO/USDT", Side.SELL, qty, OrderType.MARKET)
    transition(order, OrderStatus.SUBMITTED, 0)
    broker.submit(order, -1, 0)
    fills = broker.process_bar(0, 1, 0.05, 0.05, 0.05, 0.05, 0.0, float(qty), 1e6)
    assert [f.quantity for f in fills] == [qty] and order.status is OrderStatus.FILLED
