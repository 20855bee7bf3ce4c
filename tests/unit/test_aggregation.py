"""Live aggregation to a coarser timeframe gives the backtest's resampled bars, each as soon as it is known."""

from __future__ import annotations

import numpy as np
import pytest

from mmats.data import generate_bars, resample, to_arrays
from mmats.engine.bar_aggregation import BarAggregator
from mmats.engine.strategy_host import StrategyHost
from mmats.model import Environment, MarketType, Timeframe


def tuples(df, sym: str = "X") -> list[tuple[str, int, float, float, float, float, float]]:  # type: ignore[no-untyped-def]
    a = to_arrays(df)
    return [(sym, int(a.ts_ns[i]), float(a.open[i]), float(a.high[i]), float(a.low[i]), float(a.close[i]),
             float(a.volume[i])) for i in range(len(a.ts_ns))]


@pytest.mark.parametrize("tf", [Timeframe.M5, Timeframe.M15, Timeframe.H1])
def test_streamed_bins_equal_the_backtest_resample(tf: Timeframe) -> None:
    df = generate_bars(3_000, seed=3)
    df = df.drop(df.index[[7, 8, 9, 400, 401]])  # holes, one of them at the end of a bin
    agg = BarAggregator(tf)
    got = [bar for b in tuples(df) for bar, _ in agg.update(b)]
    want = tuples(resample(df, tf))
    # The last bin is only complete when its last source bar arrives; the final one may still be open.
    assert len(got) > 10 and 0 <= len(want) - len(got) <= 1
    for g, w in zip(got, want, strict=False):
        assert g[:6] == w[:6]  # time, open, high, low, close: exactly the backtest's
        assert g[6] == pytest.approx(w[6], rel=1e-12)  # volume: summed in another order


def test_a_bin_is_emitted_by_the_bar_that_ends_it_not_the_next_one() -> None:
    df = generate_bars(20, seed=1)
    agg = BarAggregator("5m")
    src = tuples(df)
    emitted_at: list[int] = []
    for i, b in enumerate(src):
        for _bar, known_ns in agg.update(b):
            assert known_ns == b[1]
            emitted_at.append(i)
    first = to_arrays(df).ts_ns[0]
    # generated bars start on a minute; the first bin ends at the 5-minute mark after them.
    step = 300 * 10**9
    ends = [i for i in range(len(src)) if (src[i][1] + 60 * 10**9) % step == 0 and i > 0]
    assert emitted_at[1:] == ends[1:] and first % 60_000_000_000 == 0


def test_out_of_order_and_coarser_input_are_refused_with_the_reason() -> None:
    agg = BarAggregator("5m")
    agg.update(("X", 600 * 10**9, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="timestamps must increase"):
        agg.update(("X", 540 * 10**9, 1, 1, 1, 1, 1))
    agg2 = BarAggregator("5m")
    agg2.update(("X", 0, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="coarser than the target"):
        agg2.update(("X", 3600 * 10**9, 1, 1, 1, 1, 1))


def test_host_on_a_coarser_timeframe_sees_the_resampled_bars() -> None:
    df = generate_bars(1_500, seed=9)
    host_5m = StrategyHost("s", "sma_cross", {"fast": 3, "slow": 8}, ["X"], MarketType.CRYPTO,
                           Environment.PAPER, timeframe="5m")
    host_ref = StrategyHost("s", "sma_cross", {"fast": 3, "slow": 8}, ["X"], MarketType.CRYPTO,
                            Environment.PAPER)
    src, ref = tuples(df), tuples(resample(df, Timeframe.M5))
    live, _ = host_5m.on_bars(src)
    expected, _ = host_ref.on_bars(ref)
    assert host_5m.bars_seen == len(ref) - 1 or host_5m.bars_seen == len(ref)
    assert len(live) > 3
    # Same decisions on the same bars; a live signal is stamped with the source bar that completed its bin.
    assert [(p.signal.action, p.price) for p in live] == [(p.signal.action, p.price) for p in expected][: len(live)]
    assert all(np.int64(p.ts_ns) % (300 * 10**9) == 240 * 10**9 for p in live)


def test_a_strategy_disabled_during_warm_up_is_not_called_for_the_rest_of_it() -> None:
    from pathlib import Path

    ref = f"{Path(__file__).resolve().parents[1] / 'fixtures' / 'faulty_strategies.py'}:AlwaysRaises"
    host = StrategyHost("boom", ref, {}, ["X"], MarketType.CRYPTO, Environment.PAPER, max_errors=5)
    host.warm_up(tuples(generate_bars(300, seed=3)))
    assert not host.enabled and host.errors_total == 5  # disabled at the fifth error, then left alone
