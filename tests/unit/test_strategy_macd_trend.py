"""macd_trend: the signal lands on the bar where MACD crosses its signal line, never before; bad parameters."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from mmats.engine.strategy_host import LiveBar
from mmats.errors import StrategyError
from mmats.indicators import compute_batch
from mmats.model import AccountState, Environment, MarketType, SignalAction, TradeSignal
from mmats.registry import create_strategy
from mmats.research.runconfig import BacktestConfig, run_backtest
from mmats.strategy import IndicatorDict, IStrategy, StrategyContext
from tests.conftest import shared_file

T0, MINUTE = 1_704_067_200_000_000_000, 60_000_000_000


def drive(strategy: IStrategy, closes: np.ndarray) -> dict[int, TradeSignal]:
    """Feed bars one by one as the engines do (from the first bar with every indicator valid)."""
    highs, lows = closes * 1.001, closes * 0.999
    ind = compute_batch(strategy.get_required_indicators(), closes, highs, lows, closes, np.ones_like(closes))
    account = AccountState(T0, "USDT", Decimal(10_000), Decimal(10_000))
    out: dict[int, TradeSignal] = {}
    for i, c in enumerate(closes):
        values = {k: float(v[i]) for k, v in ind.items()}
        if any(np.isnan(v) for v in values.values()):
            continue
        bar = LiveBar(("T/USDT", T0 + i * MINUTE, float(c), float(highs[i]), float(lows[i]), float(c), 1.0))
        ctx = StrategyContext(bar, IndicatorDict(values), Environment.BACKTEST, "T/USDT", MarketType.CRYPTO,
                              "t", lambda: account)
        sig = strategy.on_bar(ctx)
        if sig is not None:
            out[i] = sig
    return out


def accelerating(start: float, end: float, n: int) -> np.ndarray:
    """n closes from start towards end, each step larger than the last: MACD keeps moving away from its signal
    line (a straight line would let the two converge and cross on rounding noise)."""
    return start + (end - start) * (np.arange(1, n + 1) / n) ** 2


def v_shape(down: int = 80, up: int = 80) -> np.ndarray:
    """An accelerating fall then an accelerating rise: the turn is at bar ``down - 1``."""
    return np.concatenate([accelerating(200.0, 120.0, down), accelerating(120.0, 200.0, up)])


def first_cross_up(closes: np.ndarray, spec: str = "MACD_12_26_9") -> int:
    ind = compute_batch([spec], closes, closes, closes, closes, np.ones_like(closes))
    macd, sig = ind[spec], ind[f"{spec}.signal"]
    above = macd > sig
    valid = ~np.isnan(macd) & ~np.isnan(sig)
    idx = [i for i in range(1, len(closes)) if valid[i - 1] and not above[i - 1] and above[i]]
    return idx[0]


def test_buy_exactly_on_the_cross_after_the_turn_and_not_before() -> None:
    closes = v_shape()
    cross = first_cross_up(closes)
    assert 80 <= cross < 100, cross  # a cross, shortly after the turn at bar 79 (EMA lag), not during the fall
    signals = drive(create_strategy("macd_trend"), closes)
    assert list(signals) == [cross]
    assert signals[cross].action is SignalAction.BUY and signals[cross].position_size == 1.0


def test_opposite_cross_exits_long_only_and_reverses_when_shorts_are_allowed() -> None:
    closes = np.concatenate([v_shape(), accelerating(200.0, 120.0, 80)])  # fall, rise, fall again
    long_only = drive(create_strategy("macd_trend"), closes)
    assert [s.action for s in long_only.values()] == [SignalAction.BUY, SignalAction.CLOSE]
    exit_bar = list(long_only)[1]
    assert 160 <= exit_bar < 180  # after the second turn at bar 160
    both = drive(create_strategy("macd_trend", {"allow_short": True}), closes)
    assert list(both) == list(long_only)
    assert [s.action for s in both.values()] == [SignalAction.BUY, SignalAction.SELL]


def test_trend_filter_refuses_entries_against_the_long_ema() -> None:
    # The V's rebound stays below the 200-bar EMA of a long decline: the filter refuses the long.
    closes = np.concatenate([accelerating(300.0, 120.0, 300), accelerating(120.0, 150.0, 40)])
    plain = drive(create_strategy("macd_trend"), closes)
    assert [s.action for s in plain.values()] == [SignalAction.BUY]
    filtered = drive(create_strategy("macd_trend", {"trend_filter": 200}), closes)
    assert filtered == {}
    # Same rebound above the long EMA (a dip in a long rise): the filter lets it through at the same bar.
    rising = np.concatenate([accelerating(100.0, 300.0, 280), accelerating(300.0, 280.0, 20),
                             accelerating(280.0, 300.0, 40)])
    plain_r = drive(create_strategy("macd_trend"), rising)
    filtered_r = drive(create_strategy("macd_trend", {"trend_filter": 200}), rising)
    buys = [i for i, s in plain_r.items() if s.action is SignalAction.BUY]
    assert buys and [i for i, s in filtered_r.items() if s.action is SignalAction.BUY] == buys


@pytest.mark.parametrize("params,needle", [
    ({"fast": 26, "slow": 12}, "fast=26 must be smaller than slow=12"),
    ({"fast": 1}, "fast=1"),
    ({"signal": 0}, "signal=0"),
    ({"trend_filter": 1}, "trend_filter=1"),
    ({"trend_filter": -5}, "trend_filter=-5"),
    ({"size": 1.5}, "size=1.5"),
    ({"fast": "abc"}, "fast='abc' is not a valid int"),
    ({"speed": 3}, "unknown parameter 'speed'"),
])
def test_bad_parameters_are_clear_errors(params: dict[str, object], needle: str) -> None:
    with pytest.raises(StrategyError, match="macd_trend") as err:
        create_strategy("macd_trend", params)
    assert needle in str(err.value)


@pytest.mark.parametrize("params", [{}, {"trend_filter": 200, "allow_short": True}])
def test_backtests_on_real_spy_daily_bars(params: dict[str, object]) -> None:
    cfg = BacktestConfig(strategy="macd_trend", params=params, data=str(shared_file("stock_SPY_1d.parquet")),
                         commission={"model": "percent", "taker_bps": 5})
    res = run_backtest(cfg)
    assert res.summary["reconciled"], res.summary
    assert res.to_dict()["metrics"]["num_trades"] > 20
