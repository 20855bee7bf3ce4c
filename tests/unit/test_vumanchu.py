"""VuManChu Cipher: WaveTrend and RSI+MFI against an independent pandas implementation on real bars,
Cipher B's signals on hand-built series, and the strategy in a backtest and on the live host."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from mmats.data import BarArrays, load_bars, to_arrays
from mmats.engine.strategy_host import LiveBar, StrategyHost
from mmats.errors import StrategyError
from mmats.indicators import compute_batch, parse_spec
from mmats.model import AccountState, Environment, MarketType, SignalAction
from mmats.registry import create_strategy
from mmats.research.runconfig import BacktestConfig, run_backtest
from mmats.strategy import IndicatorDict, StrategyContext
from strategies.vumanchu_cipher import CipherB, VuManChuCipher, cipher_b_signals
from tests.conftest import shared_file

DATA = ["crypto_BTCUSD_1h.parquet", "forex_EURUSD_1h.parquet", "stock_SPY_1d.parquet"]


@pytest.fixture(scope="module", params=DATA)
def real(request: pytest.FixtureRequest) -> BarArrays:
    return to_arrays(load_bars(shared_file(request.param)))


def ema_seeded(x: pd.Series, n: int) -> pd.Series:
    """EMA with alpha 2 / (n + 1), seeded by the mean of its first n valid inputs, from the formula."""
    first = int(np.flatnonzero(x.notna().to_numpy())[0])
    seed_at = first + n - 1
    out = pd.Series(np.nan, index=x.index)
    tail = x.iloc[seed_at:].copy()
    tail.iloc[0] = x.iloc[first: seed_at + 1].mean()
    out.iloc[seed_at:] = tail.ewm(alpha=2 / (n + 1), adjust=False).mean().to_numpy()
    return out


def wavetrend_pandas(a: BarArrays, n1: int, n2: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    src = (pd.Series(a.high) + pd.Series(a.low) + pd.Series(a.close)) / 3
    esa = ema_seeded(src, n1)
    de = ema_seeded((src - esa).abs(), n1)
    ci = ((src - esa) / (0.015 * de)).where(de != 0, 0.0).where(de.notna())
    wt1 = ema_seeded(ci, n2)
    wt2 = wt1.rolling(m).mean()
    return wt1.where(wt2.notna()).to_numpy(), wt2.to_numpy()


def rsimfi_pandas(a: BarArrays, n: int, k: float, y: float) -> np.ndarray:
    rng = pd.Series(a.high - a.low)
    share = (pd.Series(a.close - a.open) / rng).where(rng != 0, 0.0)
    return ((share * k).rolling(n).mean() - y).to_numpy()


def _close(got: np.ndarray, ref: np.ndarray, start: int, scale: float) -> None:
    """1e-9 relative; values within 1e-9 of zero (an oscillator at a zero crossing) compared absolutely."""
    assert np.isnan(got[:start]).all() and not np.isnan(got[start:]).any()
    np.testing.assert_allclose(got[start:], ref[start:], rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize(("n1", "n2", "m"), [(9, 12, 3), (10, 21, 4)])
def test_wavetrend_against_pandas(real: BarArrays, n1: int, n2: int, m: int) -> None:
    spec = f"WT_{n1}_{n2}_{m}"
    out = compute_batch([spec], real.open, real.high, real.low, real.close, real.volume)
    wt1, wt2 = wavetrend_pandas(real, n1, n2, m)
    start = parse_spec(spec).lookback
    assert start == 2 * (n1 - 1) + n2 - 1 + m - 1
    _close(out[f"{spec}.wt1"], wt1, start, 1.0)
    _close(out[f"{spec}.wt2"], wt2, start, 1.0)
    assert 20 < np.nanpercentile(np.abs(out[f"{spec}.wt1"]), 90) < 150  # the oscillator's usual amplitude


def test_rsimfi_against_pandas(real: BarArrays) -> None:
    for spec, (n, k, y) in (("RSIMFI_60", (60, 150.0, 2.5)), ("RSIMFI_14_100_0", (14, 100.0, 0.0))):
        out = compute_batch([spec], real.open, real.high, real.low, real.close, real.volume)[spec]
        _close(out, rsimfi_pandas(real, n, k, y), n - 1, 1.0)


def test_wavetrend_on_a_flat_market_stays_defined() -> None:
    """No deviation at all (de = 0) gives ci = 0, not NaN that would stop the strategy for good."""
    flat = np.r_[np.full(60, 2.0), np.linspace(2.0, 2.2, 40)]
    out = compute_batch(["WT_9_12_3"], flat, flat, flat, flat, flat)
    lb = parse_spec("WT_9_12_3").lookback
    assert not np.isnan(out["WT_9_12_3.wt1"][lb:]).any()
    assert out["WT_9_12_3.wt2"][59] == 0.0 and out["WT_9_12_3.wt2"][-1] > 50


# ----------------------------------------------------------------------------- Cipher B, by hand


def test_cipher_b_buy_and_sell_on_hand_built_waves() -> None:
    #          0     1     2     3     4     5     6     7     8     9
    wt1 = [-70, -68, -58, -40, -20, 30, 60, 50, 20, -10]
    wt2 = [-60, -64, -62, -55, -40, 10, 50, 56, 40, 10]
    hi = lo = [100.0] * 10
    s = cipher_b_signals(wt1, wt2, hi, lo)
    # bar 2: wt1 -58 crosses above wt2 -62, and wt2 <= -53: buy. bar 7: wt1 50 crosses below wt2 56 >= 53: sell
    assert np.flatnonzero(s["buy"]).tolist() == [2]
    assert np.flatnonzero(s["sell"]).tolist() == [7]
    # the same crosses outside the zones are not signals
    s = cipher_b_signals([w + 20 for w in wt1], [w + 20 for w in wt2], hi, lo)
    assert not s["buy"].any()
    s = cipher_b_signals(wt1, wt2, hi, lo, overbought=60.0)
    assert not s["sell"].any()


def test_cipher_b_divergences_on_hand_built_fractals() -> None:
    #  bottom fractal of wt2 at bar 2 (-80, low 100), another at bar 7 (-70: higher) with a lower low (95):
    #  bullish divergence, known at bar 9 (two bars after the pivot)
    wt2 = [-60, -70, -80, -72, -66, -62, -66, -70, -64, -60, -50]
    low = [101, 101, 100, 101, 101, 101, 99, 95, 99, 99, 99]
    wt1 = [w + 1 for w in wt2]  # no crosses
    high = [x + 2 for x in low]
    s = cipher_b_signals(wt1, wt2, high, low)
    assert np.flatnonzero(s["bullish_divergence"]).tolist() == [9]
    assert not s["bearish_divergence"].any() and not s["buy"].any()
    # the second low not lower: no divergence; the second fractal above the -65 level: not a divergence fractal
    assert not cipher_b_signals(wt1, wt2, high, [*low[:7], 100.5, *low[8:]])["bullish_divergence"].any()
    s = cipher_b_signals(wt1, [*wt2[:6], -60, -62, -58, -55, -50], high, low)
    assert not s["bullish_divergence"].any()
    # mirror image: tops above +45, a lower wt2 top with a higher high is a bearish divergence
    s = cipher_b_signals([-w for w in wt1], [-w for w in wt2], [200 - x for x in low], [198 - x for x in low])
    assert np.flatnonzero(s["bearish_divergence"]).tolist() == [9]
    assert not s["bullish_divergence"].any()


def test_cipher_b_buy_and_sell_on_a_hand_built_price_series() -> None:
    """Quiet, then an accelerating 12-bar slide (bars 40-51), a 20-bar rally (52-71), a drop (72-81):
    WaveTrend goes deep oversold in the slide and WT1 crosses up on the first rally bar (buy); it is
    overbought at the top of the rally and crosses down on the first falling bar (sell)."""
    slide = 100 - np.cumsum(0.15 * np.arange(1, 13))
    rally = slide[-1] + np.arange(1, 21) * 1.0
    close = np.r_[np.full(40, 100.0) + np.sin(np.arange(40)) * 0.2, slide, rally, rally[-1] - np.arange(1, 11)]
    high, low = close + 0.3, close - 0.3
    out = compute_batch(["WT_9_12_3"], close, high, low, close, close)
    s = cipher_b_signals(out["WT_9_12_3.wt1"], out["WT_9_12_3.wt2"], high, low)
    assert np.flatnonzero(s["buy"]).tolist() == [52]
    assert np.flatnonzero(s["sell"]).tolist() == [72]
    assert out["WT_9_12_3.wt2"][52] <= -53 and out["WT_9_12_3.wt2"][72] >= 53


# ------------------------------------------------------------------------------------- strategy


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"channel_length": 1}, "channel_length=1 must be between 2 and 10000"),
        ({"average_length": 0}, "average_length=0 must be between 1"),
        ({"oversold": 10.0}, "need oversold (10.0) < 0 < overbought"),
        ({"div_overbought": -1.0}, "need div_oversold (-65.0) < 0 < div_overbought (-1.0)"),
        ({"rsimfi_multiplier": 0.0}, "rsimfi_multiplier=0.0 must be > 0"),
        ({"size": 1.5}, "size=1.5 must be in (0, 1]"),
        ({"ma_length": "x"}, "parameter ma_length='x' is not a valid int"),
        ({"wave": 3}, "unknown parameter 'wave'"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, object], message: str) -> None:
    with pytest.raises(StrategyError) as info:
        create_strategy("vumanchu_cipher", params)
    assert message in str(info.value)


def test_required_indicators_follow_the_parameters() -> None:
    s = create_strategy("vumanchu_cipher", {"channel_length": 10, "average_length": 21, "ma_length": 4,
                                            "rsimfi_shift": 0.00001})
    assert s.get_required_indicators() == ["WT_10_21_4", "RSIMFI_60_150_0.00001", "EMA_5", "EMA_11", "EMA_15",
                                           "EMA_18", "EMA_21", "EMA_25", "EMA_29", "EMA_33"]
    for spec in s.get_required_indicators():
        parse_spec(spec)


def _btc_cfg(**params: object) -> BacktestConfig:
    """BTCUSD hourly, 10 bps fees; as a perpetual swap (shortable) when the strategy may short."""
    extra = {"instrument": {"kind": "perpetual"}} if params.get("allow_short") else {}
    return BacktestConfig.model_validate({
        "strategy": "vumanchu_cipher", "params": params, "data": str(shared_file("crypto_BTCUSD_1h.parquet")),
        "commission": {"model": "percent", "taker_bps": 10.0}, **extra})


def test_backtest_on_shared_btc_trades_on_cipher_b_signals() -> None:
    res = run_backtest(_btc_cfg())
    assert not res.warnings or all("generated" not in w for w in res.warnings)
    assert len(res.trades) >= 10
    assert math.isfinite(res.metrics["total_return"])
    # every entry order is on a bar where Cipher B (recomputed here from the batch values) said buy
    a = to_arrays(load_bars(shared_file("crypto_BTCUSD_1h.parquet")))
    out = compute_batch(["WT_9_12_3"], a.open, a.high, a.low, a.close, a.volume)
    sig = cipher_b_signals(out["WT_9_12_3.wt1"], out["WT_9_12_3.wt2"], a.high, a.low)
    longs = set(a.ts_ns[sig["buy"] | sig["bullish_divergence"]].tolist())
    exits = set(a.ts_ns[sig["sell"] | sig["bearish_divergence"]].tolist())
    buys = [o.created_ns for o in res.orders if o.side.value == "BUY"]
    sells = [o.created_ns for o in res.orders if o.side.value == "SELL"]
    assert buys and set(buys) <= longs, sorted(set(buys) - longs)[:3]
    assert sells and set(sells) <= exits


def test_short_and_filters_change_what_is_traded() -> None:
    base = run_backtest(_btc_cfg())
    short = run_backtest(_btc_cfg(allow_short=True))
    assert any(t.side.lower() in ("short", "sell") for t in short.trades)
    assert not any(t.side.lower() in ("short", "sell") for t in base.trades)
    no_div = run_backtest(_btc_cfg(use_divergences=False))
    ribbon = run_backtest(_btc_cfg(ribbon_filter=True))
    mfi = run_backtest(_btc_cfg(mfi_filter=True))
    counts = {len(r.trades) for r in (base, no_div, ribbon, mfi)}
    assert len(counts) >= 3, counts
    assert len(ribbon.trades) < len(base.trades) and len(mfi.trades) < len(base.trades)


def test_live_host_emits_what_the_strategy_says_on_batch_values() -> None:
    """The strategy on the live host (streaming WT / RSIMFI / EMAs, bar by bar) emits exactly the signals
    the same strategy emits when it reads the backtest's batch values: same bars, same actions, and the
    same indicator floats in the signal's metadata."""
    a = to_arrays(load_bars(shared_file("crypto_BTCUSD_1h.parquet")))
    n = 3000
    bars = [("BTCUSD", int(a.ts_ns[i]), float(a.open[i]), float(a.high[i]), float(a.low[i]), float(a.close[i]),
             float(a.volume[i])) for i in range(n)]
    params = {"allow_short": True}
    host = StrategyHost("vmc", "vumanchu_cipher", dict(params), ["BTCUSD"], MarketType.CRYPTO, Environment.PAPER)
    signals, _ = host.on_bars(bars)
    assert host.errors_total == 0 and len(signals) >= 10
    live = [(p.ts_ns, p.signal.action, p.signal.metadata) for p in signals]

    strat = create_strategy("vumanchu_cipher", dict(params))
    specs = strat.get_required_indicators()
    b = compute_batch(specs, a.open[:n], a.high[:n], a.low[:n], a.close[:n], a.volume[:n])
    first = max(parse_spec(s).lookback for s in specs)
    account = AccountState(0, "USD", Decimal(0), Decimal(0))
    batch = []
    for i in range(first, n):
        ctx = StrategyContext(LiveBar(bars[i]), IndicatorDict({k: float(v[i]) for k, v in b.items()}),
                              Environment.BACKTEST, "BTCUSD", MarketType.CRYPTO, "vmc", lambda: account)
        sig = strat.on_bar(ctx)
        if sig is not None:
            batch.append((bars[i][1], sig.action, sig.metadata))
    assert live == batch
    assert {act for _, act, _ in live} == {SignalAction.BUY, SignalAction.SELL}


def test_cipher_b_state_is_per_instance() -> None:
    a, b = CipherB(), CipherB()
    a.update(-70, -60, 1, 1)
    assert a.update(-58, -62, 1, 1).buy and not b.update(-58, -62, 1, 1).buy
    assert VuManChuCipher().get_required_indicators()[0] == "WT_9_12_3"
