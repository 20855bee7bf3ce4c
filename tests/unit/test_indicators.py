"""mmats.indicators: spec parsing, batch values, streaming == batch exactly, no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mmats.data import BarArrays, generate_bars, load_bars, to_arrays
from mmats.errors import ValidationError
from mmats.indicators import (
    KNOWN_INDICATORS,
    StreamingIndicators,
    compute_batch,
    parse_spec,
    warmup_bars,
)
from tests.conftest import shared_file

ALL_SPECS = [
    "SMA_20", "EMA_50", "WMA_10", "RSI_14", "ATR_14", "ADX_14", "CCI_20", "MOM_10", "ROC_12", "STDDEV_20",
    "MACD_12_26_9", "BBANDS_20_2", "BBANDS_10_2.5", "DONCHIAN_20", "STOCH_14_3_3",
    # edge parameters: shortest allowed periods
    "SMA_1", "EMA_2", "ATR_1", "ADX_2", "MOM_1", "DONCHIAN_1", "MACD_2_3_1", "STOCH_1_1_1",
]


def batch(specs: list[str], a: BarArrays) -> dict[str, np.ndarray]:
    return compute_batch(specs, a.open, a.high, a.low, a.close, a.volume)


def streamed(specs: list[str], a: BarArrays) -> dict[str, np.ndarray]:
    s = StreamingIndicators(specs, capacity=16)  # small capacity: exercises buffer growth
    out: dict[str, list[float]] = {k: [] for k in s.outputs}
    for i in range(len(a)):
        values = s.update(a.open[i], a.high[i], a.low[i], a.close[i], a.volume[i])
        assert list(values) == list(s.outputs)
        for k, v in values.items():
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def btc() -> BarArrays:
    df = load_bars(shared_file("crypto_BTCPERP_1m.parquet"))
    return to_arrays(df.iloc[:2000])


@pytest.fixture(scope="module")
def gen() -> BarArrays:
    return to_arrays(generate_bars(1200, seed=21, start_price=1.2345, timeframe="1h"))


def _assert_stream_equals_batch(a: BarArrays) -> None:
    b = batch(ALL_SPECS, a)
    s = streamed(ALL_SPECS, a)
    assert list(s) == list(b)
    for k in b:
        np.testing.assert_array_equal(s[k], b[k], err_msg=k)  # exact: NaN positions and bits


def test_streaming_equals_batch_on_real_btc(btc: BarArrays) -> None:
    _assert_stream_equals_batch(btc)


def test_streaming_equals_batch_on_generated(gen: BarArrays) -> None:
    _assert_stream_equals_batch(gen)


def test_extend_equals_updates(gen: BarArrays) -> None:
    s1 = StreamingIndicators(ALL_SPECS)
    last = s1.extend(gen.open[:700], gen.high[:700], gen.low[:700], gen.close[:700], gen.volume[:700])
    s2 = StreamingIndicators(ALL_SPECS)
    for i in range(700):
        ref = s2.update(gen.open[i], gen.high[i], gen.low[i], gen.close[i], gen.volume[i])
    np.testing.assert_array_equal(np.array(list(last.values())), np.array(list(ref.values())))
    nxt1 = s1.update(gen.open[700], gen.high[700], gen.low[700], gen.close[700], gen.volume[700])
    b = batch(ALL_SPECS, gen)
    assert all(v == b[k][700] for k, v in nxt1.items())
    assert len(s1) == 701


def test_streaming_rejects_non_finite_and_keeps_history(gen: BarArrays) -> None:
    s = StreamingIndicators(["SMA_3"])
    for i in range(5):
        s.update(gen.open[i], gen.high[i], gen.low[i], gen.close[i], gen.volume[i])
    before = s.current()
    with pytest.raises(ValidationError, match="non-finite"):
        s.update(1.0, 2.0, 0.5, math.nan, 1.0)
    assert len(s) == 5 and s.current() == before


def test_warmup_bars_match_nan_prefix(gen: BarArrays) -> None:
    b = batch(ALL_SPECS, gen)
    for text in ALL_SPECS:
        spec = parse_spec(text)
        for k in spec.outputs:
            first_valid = int(np.argmax(~np.isnan(b[k])))
            assert first_valid == spec.lookback, (k, first_valid, spec.lookback)
            assert not np.isnan(b[k][spec.lookback:]).any(), k
    assert warmup_bars(["SMA_20", "MACD_12_26_9", "ADX_14"]) == 33
    assert warmup_bars([]) == 0
    assert StreamingIndicators(["RSI_14", "SMA_5"]).warmup_bars == 14


@pytest.mark.parametrize("t", [0, 40, 333, 1000])
def test_no_look_ahead(gen: BarArrays, t: int) -> None:
    base = batch(ALL_SPECS, gen)
    rng = np.random.default_rng(t)
    for _ in range(3):
        cols = [x.copy() for x in (gen.open, gen.high, gen.low, gen.close, gen.volume)]
        m = len(cols[0]) - (t + 1)
        shock = np.exp(rng.normal(0, 0.05, m))
        for c in cols[:4]:
            c[t + 1:] *= shock * np.exp(rng.normal(0, 0.01, m))
        cols[1][t + 1:] = np.maximum.reduce(cols[:4])[t + 1:] * 1.01
        cols[2][t + 1:] = np.minimum.reduce(cols[:4])[t + 1:] * 0.99
        cols[4][t + 1:] = rng.random(m) * 100
        pert = compute_batch(ALL_SPECS, *cols)
        for k in base:
            np.testing.assert_array_equal(pert[k][: t + 1], base[k][: t + 1], err_msg=k)
            if np.ptp(base[k][t + 60:]) > 0:  # (MACD_2_3_1.hist is identically 0: signal period 1)
                assert not np.array_equal(pert[k][t + 60:], base[k][t + 60:]), f"{k}: perturbation had no effect"


def test_sma_by_hand() -> None:
    c = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 7.0])
    out = compute_batch(["SMA_3"], c, c, c, c, c)["SMA_3"]
    np.testing.assert_allclose(out, [np.nan, np.nan, 2.0, 3.0, 4.0, 16 / 3], rtol=1e-15)
    g = to_arrays(generate_bars(300, seed=1))
    sma = compute_batch(["SMA_20"], g.open, g.high, g.low, g.close, g.volume)["SMA_20"]
    hand = np.array([np.nan] * 19 + [g.close[i - 19: i + 1].sum() / 20 for i in range(19, 300)])
    np.testing.assert_allclose(sma, hand, rtol=1e-12)


def test_donchian_against_pandas_rolling(gen: BarArrays) -> None:
    out = batch(["DONCHIAN_20"], gen)
    hi = pd.Series(gen.high).rolling(20).max().to_numpy()
    lo = pd.Series(gen.low).rolling(20).min().to_numpy()
    np.testing.assert_array_equal(out["DONCHIAN_20.upper"], hi)  # includes the current bar
    np.testing.assert_array_equal(out["DONCHIAN_20.lower"], lo)
    np.testing.assert_array_equal(out["DONCHIAN_20.middle"], (hi + lo) / 2)
    np.testing.assert_array_equal(out["DONCHIAN_20"], out["DONCHIAN_20.middle"])
    assert (out["DONCHIAN_20.upper"][19:] >= gen.high[19:]).all()


def test_output_names(gen: BarArrays) -> None:
    out = batch(["MACD_12_26_9", "BBANDS_20_2", "STOCH_14_3_3", "rsi_14"], gen)
    assert list(out) == [
        "MACD_12_26_9", "MACD_12_26_9.signal", "MACD_12_26_9.hist",
        "BBANDS_20_2", "BBANDS_20_2.upper", "BBANDS_20_2.middle", "BBANDS_20_2.lower",
        "STOCH_14_3_3", "STOCH_14_3_3.k", "STOCH_14_3_3.d",
        "rsi_14",
    ]
    np.testing.assert_allclose(out["MACD_12_26_9.hist"], out["MACD_12_26_9"] - out["MACD_12_26_9.signal"],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(out["BBANDS_20_2"], out["BBANDS_20_2.middle"])
    np.testing.assert_allclose(out["BBANDS_20_2.middle"], batch(["SMA_20"], gen)["SMA_20"], rtol=1e-12)
    width = out["BBANDS_20_2.upper"] - out["BBANDS_20_2.middle"]
    np.testing.assert_allclose(width, 2 * batch(["STDDEV_20"], gen)["STDDEV_20"], rtol=1e-9)
    np.testing.assert_array_equal(out["STOCH_14_3_3"], out["STOCH_14_3_3.k"])
    assert parse_spec("BBANDS_20_2.5").params == (20, 2.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FOO_3", "unknown indicator 'FOO_3' (known: ADX, ATR, BBANDS"),
        ("", "empty indicator spec"),
        ("SMA_0", "SMA_0: period must be >= 1, got 0"),
        ("RSI_1", "RSI_1: period must be >= 2"),
        ("SMA_-5", "SMA_-5: period must be >= 1"),
        ("SMA_x", "SMA_x: period must be an integer, got 'x'"),
        ("SMA_2.5", "SMA_2.5: period must be an integer"),
        ("SMA", "SMA: expected 1 parameter(s) (SMA_period), got 0"),
        ("SMA_20_3", "SMA_20_3: expected 1 parameter(s)"),
        ("MACD_12_26", "MACD_12_26: expected 3 parameter(s) (MACD_fast_slow_signal"),
        ("MACD_26_12_9", "fast period (26) must be < slow period (12)"),
        ("BBANDS_20_0", "BBANDS_20_0: std multiplier must be > 0"),
        ("BBANDS_20_nan", "std multiplier must be a number"),
        ("SMA_1000000", "period must be <= 100000"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_spec(text)
    assert message in str(info.value)


def test_parse_ok_and_known() -> None:
    s = parse_spec(" ema_50 ")
    assert (s.text, s.kind, s.params, s.outputs, s.lookback) == ("ema_50", "EMA", (50,), ("ema_50",), 49)
    assert {"SMA", "EMA", "RSI", "MACD", "BBANDS", "DONCHIAN", "STOCH"} <= set(KNOWN_INDICATORS)
    with pytest.raises(ValidationError, match="unknown indicator"):
        compute_batch(["SMA_5", "NOPE_1"], *([np.ones(10)] * 5))


def test_compute_batch_input_checks() -> None:
    with pytest.raises(ValidationError, match="lengths differ"):
        compute_batch(["SMA_5"], np.ones(10), np.ones(10), np.ones(9), np.ones(10), np.ones(10))
    empty = compute_batch(["MACD_12_26_9"], *([np.empty(0)] * 5))
    assert all(len(v) == 0 for v in empty.values()) and len(empty) == 3
    short = compute_batch(["SMA_20"], *([np.ones(5)] * 5))
    assert np.isnan(short["SMA_20"]).all()
    assert compute_batch(["SMA_3", "SMA_3"], *([np.ones(5)] * 5)).keys() == {"SMA_3"}


def test_streaming_sma_is_bit_identical_over_a_long_history() -> None:
    """The O(1) running SMA must reproduce TA-Lib's floats exactly, not just closely, after 200k bars."""
    from mmats.data import generate_bars as gen

    bars = gen(200_000, seed=11, start_price=45_000.0)
    close = bars["close"].to_numpy()
    s = StreamingIndicators(["SMA_7", "SMA_200"])
    got = {k: np.empty(len(close)) for k in s.outputs}
    for i, c in enumerate(close.tolist()):
        values = s.update(c, c, c, c, 0.0)
        for k in got:
            got[k][i] = values[k]
    batch = compute_batch(["SMA_7", "SMA_200"], close, close, close, close, np.zeros(len(close)))
    for k in got:
        np.testing.assert_array_equal(got[k], batch[k])
