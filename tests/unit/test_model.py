from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from mmats.engine.external_signals import parse_external_signal
from mmats.errors import ValidationError
from mmats.model import (
    Bar,
    MarketType,
    Order,
    OrderType,
    Side,
    SignalAction,
    Timeframe,
    TradeSignal,
    datetime_to_ns,
    default_instrument,
    iso,
    ns_to_datetime,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_money_precision_per_market() -> None:
    assert default_instrument("BTC/USDT", MarketType.CRYPTO).round_money(1.123456789) == Decimal("1.12345679")
    assert default_instrument("EUR/USD", MarketType.FOREX).round_money(1.123456789) == Decimal("1.12346")
    assert default_instrument("AAPL", MarketType.STOCK).round_money(1.125) == Decimal("1.12")  # half-even
    assert default_instrument("USD/JPY", MarketType.FOREX).pip_size == Decimal("0.01")


def test_quantity_rounds_down_to_lot_never_up() -> None:
    stock = default_instrument("AAPL", MarketType.STOCK)
    assert stock.round_quantity(9.99) == Decimal(9)
    assert stock.round_quantity(Decimal("-9.99")) == Decimal(-9)
    btc = default_instrument("BTC/USDT", MarketType.CRYPTO)
    assert btc.round_quantity(0.1234567) == Decimal("0.123456")
    assert btc.meets_min_notional(Decimal("0.0001"), Decimal(30000)) is False


def test_bar_validation_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="naive"):
        Bar("X", datetime(2024, 1, 1), 1, 1, 1, 1)
    with pytest.raises(ValidationError, match="inconsistent OHLC"):
        Bar("X", T0, 10, 9, 8, 10)
    with pytest.raises(ValidationError, match="negative volume"):
        Bar("X", T0, 1, 1, 1, 1, -1)
    assert Bar("X", T0, 1, 2, 0.5, 1.5, 3).close == 1.5


def test_order_types_need_their_prices() -> None:
    with pytest.raises(ValidationError, match="LIMIT needs a positive price"):
        Order("c", "X", Side.BUY, Decimal(1), OrderType.LIMIT)
    with pytest.raises(ValidationError, match="stop_price"):
        Order("c", "X", Side.BUY, Decimal(1), OrderType.STOP_LIMIT, price=Decimal(1))
    with pytest.raises(ValidationError, match="quantity"):
        Order("c", "X", Side.BUY, Decimal(0))


def test_trade_signal_validation_and_target() -> None:
    assert TradeSignal(SignalAction.SELL, "X", 0.5).target_exposure == -0.5
    assert TradeSignal("close", "X").action is SignalAction.CLOSE  # type: ignore[arg-type]
    for kwargs, field in (({"position_size": 1.5}, "position_size"), ({"confidence": -0.1}, "confidence"),
                          ({"stop_loss": -1.0}, "stop_loss")):
        with pytest.raises(ValidationError, match=field):
            TradeSignal(SignalAction.BUY, "X", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="action"):
        TradeSignal("JUMP", "X")  # type: ignore[arg-type]


def test_external_signal_maps_to_the_internal_one() -> None:
    sig = parse_external_signal({"strategy_id": "ext", "symbol": "EUR/USD", "side": "SELL", "confidence": 0.7,
                                 "target_exposure": 0.4, "time_horizon": "SWING",
                                 "constraints": {"max_slippage_bps": 3, "max_notional": 5000}})
    assert sig.action is SignalAction.SELL and sig.target_exposure == -0.4
    assert sig.max_notional == 5000 and sig.max_slippage_bps == 3 and sig.strategy_id == "ext"
    flat = parse_external_signal({"strategy_id": "e", "symbol": "X", "side": "BUY", "confidence": 1,
                                  "target_exposure": 0})
    assert flat.action is SignalAction.CLOSE
    with pytest.raises(ValidationError, match="signal.constraints.max_notional"):
        parse_external_signal({"strategy_id": "e", "symbol": "X", "side": "BUY", "confidence": 1,
                               "target_exposure": 1, "constraints": {"max_notional": -1}})
    with pytest.raises(ValidationError, match="signal.side"):
        parse_external_signal({"strategy_id": "e", "symbol": "X", "side": "HOLD", "confidence": 1,
                               "target_exposure": 1})


def test_time_helpers_are_utc_and_round_trip() -> None:
    ns = datetime_to_ns(T0)
    assert ns_to_datetime(ns) == T0 and iso(ns) == "2024-01-01T00:00:00Z"
    assert Timeframe.parse("1H") is Timeframe.H1 and Timeframe.H4.seconds == 14400
    with pytest.raises(ValidationError, match="unknown timeframe"):
        Timeframe.parse("2m")
