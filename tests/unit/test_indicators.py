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
    IndicatorCheckError,
    Param,
    StreamingIndicators,
    check_indicator,
    compute_batch,
    indicator_examples,
    known_indicators,
    parse_spec,
    register_indicator,
    unregister_indicator,
    warmup_bars,
)
from tests.conftest import shared_file

#: every registered kind's examples (built-in TA-Lib kinds, the Python kinds, anything registered at import)
ALL_SPECS = indicator_examples()
#: kinds comparing with a benchmark symbol (RS): checked with generated benchmark closes
BENCH_SPECS = indicator_examples(benchmark=True)
#: edge parameters (shortest allowed periods) must stay among them
EDGE_SPECS = ["SMA_1", "EMA_2", "ATR_1", "ADX_2", "MOM_1", "DONCHIAN_1", "MACD_2_3_1", "STOCH_1_1_1",
              "WT_2_1_1", "RSIMFI_1_1_-1", "RVOL_2_1", "TREND_3"]


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


#: the TA-Lib kinds, each streamed from TA-Lib's own state once its history is long enough
TALIB_SPECS = ["EMA_50", "WMA_10", "RSI_14", "ATR_14", "ADX_14", "CCI_20", "MOM_10", "ROC_12", "STDDEV_20",
               "MACD_12_26_9", "BBANDS_20_2.5", "DONCHIAN_20", "DONCHIAN_1", "STOCH_14_3_3", "EMA_200"]


def test_talib_kinds_stream_exactly_over_a_long_history_and_let_the_bars_go() -> None:
    """Bit-identical to the batch after 30k bars, and once every stream is open no bar is kept: a live
    strategy's cost per bar and its memory stay flat however long it runs."""
    a = to_arrays(generate_bars(30_000, seed=5, start_price=45_000.0))
    s = StreamingIndicators(TALIB_SPECS, capacity=16)
    longest = max(s.specs, key=lambda sp: sp.lookback).lookback
    got = {k: np.empty(len(a)) for k in s.outputs}
    for i in range(len(a)):
        values = s.update(a.open[i], a.high[i], a.low[i], a.close[i], a.volume[i])
        for k in got:
            got[k][i] = values[k]
        assert s.keeps_history == (i < longest)  # the stream with the longest warm-up opens last
    b = batch(TALIB_SPECS, a)
    for k in b:
        np.testing.assert_array_equal(got[k], b[k], err_msg=k)
    assert len(s) == len(a) and s._buf.size == 0


def test_extend_after_the_streams_opened_steps_them_through(gen: BarArrays) -> None:
    """A warm-up delta (hot replace, re-attach) arriving after the streams opened continues them."""
    s = StreamingIndicators([*TALIB_SPECS, "SMA_5", "WT_9_12_3"])
    for i in range(300):
        s.update(gen.open[i], gen.high[i], gen.low[i], gen.close[i], gen.volume[i])
    assert not s.keeps_history
    got = s.extend(gen.open[300:900], gen.high[300:900], gen.low[300:900], gen.close[300:900], gen.volume[300:900])
    b = batch([*TALIB_SPECS, "SMA_5", "WT_9_12_3"], gen)
    assert got == {k: float(b[k][899]) for k in got}
    nxt = s.update(gen.open[900], gen.high[900], gen.low[900], gen.close[900], gen.volume[900])
    assert nxt == {k: float(b[k][900]) for k in nxt}


# ------------------------------------------------------------------------- every registered kind


def test_registry_examples_cover_every_kind_and_edges() -> None:
    kinds = {parse_spec(s).kind for s in ALL_SPECS + BENCH_SPECS}
    assert kinds == set(known_indicators()) >= set(KNOWN_INDICATORS)
    assert set(EDGE_SPECS) <= set(ALL_SPECS)


@pytest.mark.parametrize("spec", ALL_SPECS + BENCH_SPECS)
def test_check_indicator_on_every_registered_kind(spec: str, btc: BarArrays) -> None:
    """The public check a user runs on their own kind, here on every registered one and real BTC bars."""
    check_indicator(spec, (btc.open, btc.high, btc.low, btc.close, btc.volume))


# --------------------------------------------------------------------------- market metrics


def test_realized_vol_against_pandas(btc: BarArrays) -> None:
    out = batch(["RVOL_30_525600"], btc)["RVOL_30_525600"]
    logret = np.log(pd.Series(btc.close)).diff()
    ref = (logret.rolling(30).std(ddof=1) * math.sqrt(525_600)).to_numpy()
    assert np.isnan(out[:30]).all() and np.isnan(ref[:30]).all()
    np.testing.assert_allclose(out[30:], ref[30:], rtol=1e-9)
    assert 0.05 < float(np.median(out[30:])) < 5.0  # annualised BTC vol from 1-minute bars: tens of percent


def test_realized_vol_scales_with_sqrt_of_periods_per_year(gen: BarArrays) -> None:
    b = batch(["RVOL_20_1", "RVOL_20_252"], gen)
    np.testing.assert_allclose(b["RVOL_20_252"][20:], b["RVOL_20_1"][20:] * math.sqrt(252), rtol=1e-12)


def test_trend_strength_against_numpy_polyfit(btc: BarArrays) -> None:
    n = 25
    out = batch([f"TREND_{n}"], btc)
    y = np.log(btc.close)
    x = np.arange(n, dtype=float)
    for t in range(n - 1, len(y), 97):
        w = y[t - n + 1: t + 1]
        slope, icept = np.polyfit(x, w, 1)
        resid = w - (slope * x + icept)
        r2 = 1 - (resid @ resid) / ((w - w.mean()) @ (w - w.mean()))
        assert out[f"TREND_{n}.slope"][t] == pytest.approx(slope, rel=1e-7, abs=1e-12)
        assert out[f"TREND_{n}.r2"][t] == pytest.approx(r2, rel=1e-7, abs=1e-9)
    np.testing.assert_array_equal(out[f"TREND_{n}"], out[f"TREND_{n}.r2"])


def test_trend_strength_on_a_clean_trend_and_a_flat_market() -> None:
    up = 100 * np.exp(0.01 * np.arange(40))
    out = compute_batch(["TREND_10"], up, up, up, up, up)
    np.testing.assert_allclose(out["TREND_10.r2"][9:], 1.0, rtol=1e-12)
    np.testing.assert_allclose(out["TREND_10.slope"][9:], 0.01, rtol=1e-9)
    flat = np.full(40, 5.0)
    out = compute_batch(["TREND_10", "RVOL_5_252"], flat, flat, flat, flat, flat)
    assert (out["TREND_10.r2"][9:] == 0).all() and (out["TREND_10.slope"][9:] == 0).all()
    assert (out["RVOL_5_252"][5:] == 0).all()


# ------------------------------------------------------------------------------ registration


class _RangeShare:
    """Where the close sits in the bar's range, averaged over n bars (a user's kind, streaming only)."""

    def __init__(self, period: int) -> None:
        self.window: list[float] = []
        self.period = period

    def update(self, high: float, low: float, close: float) -> float:
        self.window = [*self.window[-(self.period - 1):], (close - low) / (high - low) if high > low else 0.5]
        if len(self.window) < self.period:
            return math.nan
        total = 0.0
        for x in self.window:
            total += x
        return total / self.period


@pytest.fixture
def rangeshare() -> object:
    register_indicator("RANGESHARE", params=[Param("period", minimum=1)], inputs=("high", "low", "close"),
                       lookback=lambda period: period - 1, stream=_RangeShare)
    yield None
    unregister_indicator("RANGESHARE")


def test_user_kind_is_used_like_a_builtin(rangeshare: object, gen: BarArrays) -> None:
    assert "RANGESHARE" in known_indicators()
    out = batch(["rangeshare_5", "SMA_3"], gen)
    share = np.where(gen.high > gen.low, (gen.close - gen.low) / (gen.high - gen.low), 0.5)
    ref = pd.Series(share).rolling(5).mean().to_numpy()
    np.testing.assert_allclose(out["rangeshare_5"], ref, rtol=1e-12)
    assert warmup_bars(["RANGESHARE_9", "SMA_3"]) == 8
    check_indicator("RANGESHARE_7")
    with pytest.raises(ValidationError, match="RANGESHARE_0: period must be >= 1"):
        parse_spec("RANGESHARE_0")


def test_user_kind_with_batch_and_stream_and_several_outputs(gen: BarArrays) -> None:
    def batch_fn(high: np.ndarray, low: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        up = pd.Series(high).rolling(n).max().to_numpy()
        lo = pd.Series(low).rolling(n).min().to_numpy()
        return up, lo

    class Chan:
        def __init__(self, n: int) -> None:
            self.h: list[float] = []
            self.lo: list[float] = []
            self.n = n

        def update(self, high: float, low: float) -> tuple[float, float]:
            self.h = [*self.h, high][-self.n:]
            self.lo = [*self.lo, low][-self.n:]
            return (max(self.h), min(self.lo)) if len(self.h) == self.n else (math.nan, math.nan)

    register_indicator("CHAN", params=[Param("n", 1)], inputs=("high", "low"), outputs=("top", "bottom"),
                       primary=1, batch=batch_fn, stream=Chan, lookback=lambda n: n - 1)
    try:
        out = batch(["CHAN_4"], gen)
        assert list(out) == ["CHAN_4", "CHAN_4.top", "CHAN_4.bottom"]
        np.testing.assert_array_equal(out["CHAN_4"], out["CHAN_4.bottom"])
        check_indicator("CHAN_4")
        s = StreamingIndicators(["CHAN_4"])
        v = s.extend(gen.open, gen.high, gen.low, gen.close, gen.volume)
        assert v["CHAN_4"] == v["CHAN_4.bottom"] == out["CHAN_4.bottom"][-1]
    finally:
        unregister_indicator("CHAN")


def test_batch_only_kind_streams_by_recomputing(gen: BarArrays) -> None:
    register_indicator("HL2", params=[], inputs=("high", "low"), lookback=lambda: 0,
                       batch=lambda high, low: (high + low) / 2)
    try:
        check_indicator("HL2")
        assert parse_spec("HL2").params == ()
        s = StreamingIndicators(["HL2"])
        s.extend(gen.open[:50], gen.high[:50], gen.low[:50], gen.close[:50], gen.volume[:50])
        assert s.keeps_history  # no stream to open: the batch is recomputed over the kept bars
    finally:
        unregister_indicator("HL2")


def test_defaults_fill_trailing_parameters() -> None:
    assert parse_spec("WT_10_21").params == (10, 21, 4)
    assert parse_spec("RSIMFI_60").params == (60, 150.0, 2.5)
    assert parse_spec("WT_10_21").outputs == ("WT_10_21", "WT_10_21.wt1", "WT_10_21.wt2")
    with pytest.raises(ValidationError, match=r"WT_10: expected 2 to 3 parameter\(s\) \(WT_channellength"):
        parse_spec("WT_10")
    with pytest.raises(ValidationError, match="WT_1_21: channel length must be >= 2"):
        parse_spec("WT_1_21")
    with pytest.raises(ValidationError, match="RVOL_20: expected 2 parameter"):
        parse_spec("RVOL_20")
    with pytest.raises(ValidationError, match="periods per year must be > 0"):
        parse_spec("RVOL_20_0")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "SMA"}, "SMA is a built-in indicator"),
        ({"name": "wt"}, "WT is a built-in indicator"),
        ({"name": "MY_IND"}, "must be letters and digits"),
        ({"name": "X", "stream": None}, "give a batch function, a stream factory, or both"),
        ({"name": "X", "inputs": ("close", "adj")}, "inputs ['close', 'adj'] must be distinct names among open"),
        ({"name": "X", "inputs": ()}, "must be distinct names among"),
        ({"name": "X", "outputs": ("a",)}, "either none (one output) or at least two"),
        ({"name": "X", "outputs": ("a", "a")}, "must be distinct"),
        ({"name": "X", "outputs": ("a", "b"), "primary": 2}, "primary=2 is not an output index"),
        ({"name": "X", "stream": lambda: None}, "stream must accept (period) positionally"),
        ({"name": "X", "lookback": lambda: 0}, "lookback must accept (period) positionally"),
        ({"name": "X", "batch": lambda close: close}, "batch must accept (close, period) positionally"),
        ({"name": "X", "params": [("period", 1)]}, "params must be Param(...) objects"),
        ({"name": "X", "params": [Param("a", default=1), Param("b")]}, "'b' has no default but follows one"),
        ({"name": "X", "lookback": lambda period: -1}, "returned -1, expected an integer >= 0"),
        ({"name": "X", "stream": lambda period: object()}, "must return an object with an update(close) method"),
        ({"name": "X", "stream": lambda period: _RangeShare(period)}, "update must accept (close) positionally"),
        ({"name": "X", "batch": lambda close, period: (close, close)}, "batch returned 2 output(s), declared 1"),
        ({"name": "X", "batch": lambda close, period: close[1:]}, "shape (7,), expected (8,)"),
    ],
)
def test_bad_registrations_are_refused_clearly(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"params": [Param("period", 1)], "inputs": ("close",),
                               "lookback": lambda period: period - 1, "stream": _SmaStream}
    args.update(kwargs)
    name = args.pop("name")
    with pytest.raises(ValidationError) as info:
        register_indicator(name, **args)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert str(name).upper() not in known_indicators() or str(name).upper() in KNOWN_INDICATORS


class _SmaStream:
    def __init__(self, period: int) -> None:
        self.period = period
        self.window: list[float] = []

    def update(self, close: float) -> float:
        self.window = [*self.window, close][-self.period:]
        return sum(self.window) / self.period if len(self.window) == self.period else math.nan


def test_duplicate_registration_from_another_origin_is_refused(rangeshare: object) -> None:
    with pytest.raises(ValidationError,
                       match="RANGESHARE is already registered by tests.unit.test_indicators:_RangeShare"):
        register_indicator("RangeShare", params=[Param("period")], inputs=("close",), lookback=lambda period: 0,
                           stream=_SmaStream)
    # the same origin again (a strategy file imported a second time) replaces it quietly
    register_indicator("RANGESHARE", params=[Param("period", minimum=2)], inputs=("high", "low", "close"),
                       lookback=lambda period: period - 1, stream=_RangeShare)
    with pytest.raises(ValidationError, match="must be >= 2"):
        parse_spec("RANGESHARE_1")


def test_check_indicator_catches_a_stream_that_differs_from_its_batch() -> None:
    register_indicator("DRIFT", params=[Param("period", 2)], inputs=("close",), lookback=lambda period: period - 1,
                       batch=lambda close, period: pd.Series(close).rolling(period).mean().to_numpy() * 1.0000001,
                       stream=_SmaStream)
    try:
        with pytest.raises(IndicatorCheckError, match=r"DRIFT_5 on generated bars \(seed 21\): streaming gives"):
            check_indicator("DRIFT_5")
    finally:
        unregister_indicator("DRIFT")


def test_check_indicator_catches_look_ahead_and_a_wrong_lookback() -> None:
    register_indicator("PEEK", params=[], inputs=("close",), lookback=lambda: 0,
                       batch=lambda close: np.append(close[1:], close[-1]))
    register_indicator("LATE", params=[Param("period", 2)], inputs=("close",), lookback=lambda period: 0,
                       stream=_SmaStream)
    try:
        with pytest.raises(IndicatorCheckError, match="changed when only bars after 0 changed"):
            check_indicator("PEEK")
        with pytest.raises(IndicatorCheckError, match="declared lookback 0, but values are NaN up to bar 4"):
            check_indicator("LATE_5")
    finally:
        unregister_indicator("PEEK")
        unregister_indicator("LATE")


USER_STRATEGY = '''
import math
from mmats.indicators import Param, register_indicator
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy


class Gap:
    def __init__(self, period):
        self.prev = math.nan
        self.n = 0
        self.period = period

    def update(self, open, close):
        gap, self.prev = (open - self.prev if self.n else math.nan), close
        self.n += 1
        return gap if self.n > self.period else math.nan


register_indicator("GAP", params=[Param("period", 1)], inputs=("open", "close"),
                   lookback=lambda period: period, stream=Gap)


class GapFade(IStrategy):
    name = "gap_fade"
    default_params = {}
    seen = []

    def get_required_indicators(self):
        return ["GAP_1", "SMA_3"]

    def on_bar(self, context):
        GapFade.seen.append((context.indicators["GAP_1"], context.indicators["SMA_3"]))
        if context.indicators["GAP_1"] < 0:
            return TradeSignal(SignalAction.BUY, context.symbol, 1.0)
        return TradeSignal(SignalAction.CLOSE, context.symbol)
'''


def test_strategy_file_registering_at_import_runs_in_backtest_and_live(tmp_path: object, gen: BarArrays) -> None:
    """A strategy file registers its kind at import; loading it again (one instance per symbol, a hot
    replace) is fine, and the live host streams the same values the backtest computed."""
    from pathlib import Path

    from mmats.engine.strategy_host import StrategyHost
    from mmats.model import Environment, MarketType
    from mmats.registry import create_strategy

    path = Path(str(tmp_path)) / "gap_fade.py"
    path.write_text(USER_STRATEGY)
    ref = f"{path}:GapFade"
    try:
        strat = create_strategy(ref)
        create_strategy(ref)  # the file is imported again: same origin, no duplicate error
        assert "GAP" in known_indicators()
        b = compute_batch(strat.get_required_indicators(), gen.open, gen.high, gen.low, gen.close, gen.volume)
        ref_gap = np.append(np.nan, gen.open[1:] - gen.close[:-1])
        np.testing.assert_array_equal(b["GAP_1"], ref_gap)
        host = StrategyHost("g1", ref, {}, ["X"], MarketType.CRYPTO, Environment.PAPER)
        live_cls = type(host.strategies["X"])
        live_cls.seen.clear()  # type: ignore[attr-defined]
        bars = [("X", int(gen.ts_ns[i]), float(gen.open[i]), float(gen.high[i]), float(gen.low[i]),
                 float(gen.close[i]), float(gen.volume[i])) for i in range(300)]
        signals, _ = host.on_bars(bars)
        seen = live_cls.seen  # type: ignore[attr-defined]
        assert len(seen) == 300 - 2  # from bar 2 on (SMA_3's warm-up is the longer one)
        assert [g for g, _ in seen] == b["GAP_1"][2:300].tolist()
        assert [s for _, s in seen] == b["SMA_3"][2:300].tolist()
        assert signals and host.errors_total == 0
    finally:
        unregister_indicator("GAP")
