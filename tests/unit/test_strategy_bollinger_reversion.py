"""bollinger_reversion: entry on the close back inside the band, exit at the middle (or far) band; bad params."""

from __future__ import annotations

import numpy as np
import pytest

from mmats.errors import StrategyError
from mmats.indicators import compute_batch
from mmats.model import SignalAction
from mmats.registry import create_strategy
from mmats.research.runconfig import BacktestConfig, run_backtest
from tests.conftest import shared_file
from tests.unit.test_strategy_macd_trend import drive

SPEC = "BBANDS_20_2"


def stretch_and_recover() -> np.ndarray:
    """A calm oscillation, a three-bar plunge under the lower band (bars 60-62), back inside at bar 63, recovery."""
    calm = 100.0 + np.sin(np.arange(60) / 3.0)
    plunge = [95.0, 93.0, 92.0]
    back = [99.0]
    recovery = list(np.linspace(99.2, 101.5, 20))
    return np.concatenate([calm, plunge, back, recovery])


def bands(closes: np.ndarray) -> dict[str, np.ndarray]:
    return compute_batch([SPEC], closes, closes, closes, closes, np.ones_like(closes))


def test_buy_on_the_close_back_inside_and_exit_at_the_middle_band() -> None:
    closes = stretch_and_recover()
    b = bands(closes)
    lower, middle = b[f"{SPEC}.lower"], b[f"{SPEC}.middle"]
    assert all(closes[i] < lower[i] for i in (60, 61, 62)) and closes[63] >= lower[63]
    assert not any(closes[i] < lower[i] for i in range(19, 60))  # no earlier stretch to trade
    exit_bar = next(i for i in range(64, len(closes)) if closes[i] >= middle[i])
    signals = drive(create_strategy("bollinger_reversion"), closes)
    assert list(signals) == [63, exit_bar]
    assert [s.action for s in signals.values()] == [SignalAction.BUY, SignalAction.CLOSE]


def test_exit_at_the_opposite_band_waits_for_the_upper_band() -> None:
    closes = np.concatenate([stretch_and_recover(), np.linspace(101.5, 106.0, 10)])
    upper = bands(closes)[f"{SPEC}.upper"]
    exit_bar = next(i for i in range(64, len(closes)) if closes[i] >= upper[i])
    signals = drive(create_strategy("bollinger_reversion", {"exit": "opposite"}), closes)
    assert list(signals) == [63, exit_bar]
    assert exit_bar > list(drive(create_strategy("bollinger_reversion"), closes))[1]


def test_shorts_mirror_the_long_rule_only_when_allowed() -> None:
    closes = 200.0 - stretch_and_recover()  # a spike over the upper band, back under it at bar 63
    assert drive(create_strategy("bollinger_reversion"), closes) == {}
    signals = drive(create_strategy("bollinger_reversion", {"allow_short": True}), closes)
    assert next(iter(signals)) == 63
    assert [s.action for s in signals.values()] == [SignalAction.SELL, SignalAction.CLOSE]


def test_rsi_filter_requires_the_stretch_bar_to_be_oversold() -> None:
    closes = stretch_and_recover()
    rsi = compute_batch(["RSI_14"], closes, closes, closes, closes, np.ones_like(closes))["RSI_14"]
    assert rsi[62] < 30  # the plunge is oversold ...
    with_filter = drive(create_strategy("bollinger_reversion", {"rsi_period": 14, "rsi_oversold": 30}), closes)
    assert next(iter(with_filter)) == 63
    # ... but not below a level under its RSI: the same stretch is refused.
    strict = {"rsi_period": 14, "rsi_oversold": float(rsi[62]) - 1.0}
    assert drive(create_strategy("bollinger_reversion", strict), closes) == {}


@pytest.mark.parametrize("params,needle", [
    ({"period": 1}, "period=1"),
    ({"k": 0}, "k=0"),
    ({"exit": "upper"}, "exit='upper' must be one of middle, opposite"),
    ({"rsi_period": 1}, "rsi_period=1"),
    ({"rsi_oversold": 80}, "rsi_oversold (80.0) < rsi_overbought (70.0)"),
    ({"size": 0}, "size=0"),
    ({"k": "wide"}, "k='wide' is not a valid float"),
])
def test_bad_parameters_are_clear_errors(params: dict[str, object], needle: str) -> None:
    with pytest.raises(StrategyError, match="bollinger_reversion") as err:
        create_strategy("bollinger_reversion", params)
    assert needle in str(err.value)


@pytest.mark.parametrize("params", [{}, {"allow_short": True, "rsi_period": 14, "exit": "opposite"}])
def test_backtests_on_real_btc_hourly_bars(params: dict[str, object]) -> None:
    cfg = BacktestConfig(strategy="bollinger_reversion", params=params,
                         data=str(shared_file("crypto_BTCUSD_1h.parquet")),
                         commission={"model": "percent", "taker_bps": 10})
    res = run_backtest(cfg)
    assert res.summary["reconciled"], res.summary
    assert res.to_dict()["metrics"]["num_trades"] > 20
